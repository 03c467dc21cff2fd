import ArgumentParser
import Foundation

/// `initial`: initial sync time for one user in N rooms (`--rooms`) with M events each
/// (`--events`), repeated `--repeat` times after set-up.
struct Initial: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Initial sync time for a user in N rooms with M events each.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Messages sent into each room during set-up.")
    var events: Int = 20

    @Option(help: "Initial syncs to time.")
    var `repeat`: Int = 5

    func run() async throws {
        let (prefix, http, api, tally, setup) = try await common.startRun()
        defer { http.stop() }
        let users = try await setup.registerUsers(count: 1, sharedSecret: common.sharedSecret)
        let rooms = try await setup.createRooms(max(1, common.rooms), members: 1, users: users)
        let user = users[0]
        let perRoom = events
        try await setup.forEach("sending room history", count: rooms.count * perRoom) { i, conn in
            let room = rooms[i % rooms.count]
            let r = await api.call(conn, "PUT", "\(MatrixAPI.v3)/rooms/\(percentEncode(room.roomID))/send/m.room.message/\(prefix)-h\(i)",
                                   token: user.token, body: ["msgtype": "m.text", "body": "history \(i)"], label: "send")
            return r.map { _ in () }
        }
        let filter = Setup.syncFilter(timelineLimit: common.timelineLimit, ephemeral: false)
        let query = "filter=\(percentEncode(filter))&timeout=0"
        let conn = http.makeConnection()
        let sampler = ServerSampler(pids: common.serverPids)
        sampler.start()
        let cpu0 = HarnessCPU.seconds()
        let req0 = completedRequests.load(ordering: .relaxed)
        let t0 = monotonicNanos()
        let latency = LatencyRecorder()
        var bytes = 0
        var roomsSeen = 0
        for n in 0..<max(1, self.repeat) {
            let s = monotonicNanos()
            let r = await api.raw(conn, "GET", "\(MatrixAPI.v3)/sync?\(query)", token: user.token, timeout: 600)
            let e = monotonicNanos()
            switch r {
            case .failure(let t): tally.add("sync \(t.key)")
            case .success(let resp) where resp.status != 200: tally.add("sync \(resp.status)")
            case .success(let resp):
                latency.record(nanos: e - s)
                bytes = resp.body.count
                let json = (try? JSONSerialization.jsonObject(with: Data(resp.body))) as? [String: Any]
                roomsSeen = (((json?["rooms"] as? [String: Any])?["join"] as? [String: Any])?.count) ?? 0
                printErr("[run] initial sync \(n + 1): \(fmt(Double(e - s) / 1e6, 1)) ms, \(bytes) bytes, \(roomsSeen) rooms")
            }
        }
        let seconds = Double(monotonicNanos() - t0) / 1e9
        let harnessCPU = HarnessCPU.seconds() - cpu0
        let requests = completedRequests.load(ordering: .relaxed) - req0
        let servers = sampler.stop()
        var report = Report(scenario: "initial")
        common.describe(into: &report, prefix: prefix)
        let h = latency.total
        report.row("shape", "1 user in \(rooms.count) rooms × \(perRoom) messages, timeline limit \(common.timelineLimit), \(self.repeat) initial syncs")
        report.row("initial sync ms", "p50 \(h.ms(50))  max \(h.maxMs)  min \(h.totalCount > 0 ? fmt(Double(h.min) / 1000, 1) : "-")")
        report.row("response", "\(bytes) bytes, \(roomsSeen) rooms")
        report.json["rooms"] = rooms.count
        report.json["events_per_room"] = perRoom
        report.json["initial_sync_ms"] = h.jsonMs
        report.json["response_bytes"] = bytes
        report.json["rooms_in_response"] = roomsSeen
        if roomsSeen != rooms.count { report.verdict.append("initial sync returned \(roomsSeen) of \(rooms.count) rooms") }
        report.addErrors(tally)
        // One request at a time: the server is busy while it answers, which is not overload.
        report.addResources(servers: servers, harnessCPU: harnessCPU, seconds: seconds, judgeServerCPU: false,
                            requests: requests)
        report.print(jsonPath: common.json)
    }
}
