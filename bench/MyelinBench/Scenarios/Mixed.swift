import ArgumentParser
import Foundation
import Histogram

/// `mixed`: every user long-polls /sync (receipts and typing included); S active users each
/// perform `--rate` operations per second drawn by weight from send, read receipt, typing and
/// `/messages`. Reports each operation's rate and latency, and deliveries as in `fanout`.
/// With `--skew zipf:S` each operation picks its room by a Zipf-like law (a few hot rooms,
/// most cold) and acts as one of that room's members, so the server's room actors are
/// activated and evicted as in a real deployment; `--sync-users` limits the long-pollers
/// (20,000 users need more sockets than one process may open).
struct Mixed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A realistic mix of sync, send, read receipts, typing and /messages.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Operation weights, e.g. send=4,receipt=3,typing=2,messages=1.")
    var weights: String = "send=4,receipt=3,typing=2,messages=1"

    @Option(help: "Events per /messages page (dir=b from the room's end).")
    var messagesLimit: Int = 20

    @Option(help: "Users started per second when the long-polls open (0 = all at once).")
    var ramp: Double = 500

    @Option(help: "Activity skew: none (active user k acts in room k % rooms) or zipf:S (each operation's room drawn with weight 1/rank^S, S > 0).")
    var skew: String = "none"

    @Option(name: .customLong("sync-users"), help: "Users that long-poll /sync (the first N; default all). The others only act.")
    var syncUsers: Int?

    enum Op: String, CaseIterable { case send, receipt, typing, messages }

    func validate() throws {
        guard Zipf.parseSkew(skew) != nil else { throw ValidationError("--skew must be none or zipf:S with 0 < S <= 10, got \(skew)") }
        if let syncUsers, syncUsers < 0 { throw ValidationError("--sync-users must be 0 or more") }
    }

    func parseWeights() throws -> [(Op, Double)] {
        var out: [(Op, Double)] = []
        for part in weights.split(separator: ",") {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let op = Op(rawValue: String(kv[0])), let w = Double(kv[1]), w >= 0 else {
                throw ValidationError("bad --weights entry \(part) (use send=,receipt=,typing=,messages=)")
            }
            out.append((op, w))
        }
        guard out.contains(where: { $0.1 > 0 }) else { throw ValidationError("--weights are all zero") }
        return out
    }

    func run() async throws {
        let weights = try parseWeights()
        let total = weights.map(\.1).reduce(0, +)
        let (prefix, http, api, tally, setup) = try await common.startRun()
        defer { http.stop() }
        let setupStart = monotonicNanos()
        let registered = try await setup.registerUsers(count: common.users, sharedSecret: common.sharedSecret)
        let rooms = try await setup.createRooms(max(1, common.rooms), members: common.members, users: registered)
        let filter = Setup.syncFilter(timelineLimit: common.timelineLimit, ephemeral: true)
        let syncing = min(syncUsers ?? registered.count, registered.count)
        let users = try await setup.initialSyncs(Array(registered[0..<syncing]), filter: filter) + registered[syncing...]
        let setupSeconds = Double(monotonicNanos() - setupStart) / 1e9
        printErr("[run] set-up took \(fmt(setupSeconds, 1)) s")
        // Deliveries a send into each room implies: its other members that long-poll.
        let receivers = rooms.map { room in room.members.filter { $0 < syncing }.count }
        let zipf = (Zipf.parseSkew(skew) ?? nil).map { Zipf(count: rooms.count, exponent: $0) }

        let ledger = DeliveryLedger()
        let sync = SyncDriver(api: api, tally: tally, ledger: ledger, prefix: prefix, filter: filter, timeout: common.syncTimeout)
        let syncTask = Task { await sync.run(Array(users[0..<syncing]), ramp: ramp) }
        while sync.connected.load(ordering: .relaxed) < syncing {
            try await Task.sleep(for: .milliseconds(200))
        }
        let scraper = try common.makeScraper()
        let sampler = ServerSampler(pids: common.serverPids)
        sampler.start()
        let cpu0 = HarnessCPU.seconds()
        let req0 = completedRequests.load(ordering: .relaxed)
        let t0 = monotonicNanos()
        let end = t0 + UInt64(common.duration * 1e9)
        let table = RunningTable(ledger: ledger, sync: sync, tally: tally, sampler: sampler, interval: common.interval, scraper: scraper)
        let tableTask = Task { await table.run() }
        let latencies = Dictionary(uniqueKeysWithValues: Op.allCases.map { ($0, LatencyRecorder()) })
        let lastEvent = Locked<[String: String]>([:])
        let rate = common.rate > 0 ? common.rate : 1
        let actives = max(1, common.senders)
        await withTaskGroup(of: Void.self) { group in
            for k in 0..<actives {
                let fixedRoom = k % rooms.count
                group.addTask {
                    let conn = api.http.makeConnection()
                    var rng = SystemRandomNumberGenerator()
                    var seq: Int64 = 0
                    var next = monotonicNanos() + UInt64(1e9 / rate * Double(k) / Double(actives))
                    let step = UInt64(1e9 / rate)
                    while next < end && monotonicNanos() < end {
                        let now = monotonicNanos()
                        if next > now {
                            try? await Task.sleep(for: .nanoseconds(Int64(next - now)))
                        } else if now - next > step {
                            // This user is behind its schedule (its last operation was slow):
                            // count the missed ticks rather than firing them late in a burst.
                            for _ in 0..<((now - next) / step) { ledger.skipped() }
                            next = now
                        }
                        next += step
                        // The room: fixed per active user, or drawn by the skew; the user: the
                        // fixed one, or any member of the drawn room.
                        let roomIndex = zipf.map { min($0.draw(using: &rng), rooms.count - 1) } ?? fixedRoom
                        let room = rooms[roomIndex]
                        guard !room.members.isEmpty else { continue }
                        let memberIndex = zipf == nil ? (k / rooms.count) % room.members.count
                            : Int.random(in: 0..<room.members.count, using: &rng)
                        let user = users[room.members[memberIndex]]
                        let roomPath = "\(MatrixAPI.v3)/rooms/\(percentEncode(room.roomID))"
                        var pick = Double.random(in: 0..<total, using: &rng)
                        var op = Op.send
                        for (o, w) in weights { if pick < w { op = o; break }; pick -= w }
                        let eventID = lastEvent.withLock { $0[room.roomID] }
                        if op == .receipt && eventID == nil { op = .send }
                        let s = monotonicNanos()
                        let r: Result<[String: Any], CallFailure>
                        switch op {
                        case .send:
                            seq += 1
                            let id = Int64(k) * 1_000_000_000 + seq
                            ledger.sending(id, expected: receivers[roomIndex] - (room.members[memberIndex] < syncing ? 1 : 0))
                            r = await api.call(conn, "PUT", "\(roomPath)/send/m.room.message/\(prefix)-m\(id)", token: user.token,
                                               body: ["msgtype": "m.text", "body": "mixed \(id)", "bench_run": prefix,
                                                      "bench_id": id, "bench_t0": s], label: "send")
                            if case .success(let json) = r {
                                ledger.acked(id, nanos: monotonicNanos() - s)
                                if let e = json["event_id"] as? String { lastEvent.withLock { $0[room.roomID] = e } }
                            }
                        case .receipt:
                            r = await api.call(conn, "POST", "\(roomPath)/receipt/m.read/\(percentEncode(eventID ?? ""))",
                                               token: user.token, body: [:], label: "receipt")
                        case .typing:
                            r = await api.call(conn, "PUT", "\(roomPath)/typing/\(percentEncode(user.userID))", token: user.token,
                                               body: ["typing": true, "timeout": 5000], label: "typing")
                        case .messages:
                            r = await api.call(conn, "GET", "\(roomPath)/messages", query: "dir=b&limit=\(messagesLimit)",
                                               token: user.token, label: "messages")
                        }
                        switch r {
                        case .success: latencies[op]!.record(nanos: monotonicNanos() - s)
                        case .failure(let f): tally.add(f)
                        }
                    }
                }
            }
        }
        let sendPhase = Double(monotonicNanos() - t0) / 1e9
        let deliveriesAtEnd = ledger.total.deliveries
        let graceEnd = monotonicNanos() + UInt64(common.grace * 1e9)
        while ledger.total.pending > 0 && monotonicNanos() < graceEnd {
            try await Task.sleep(for: .milliseconds(200))
        }
        let seconds = Double(monotonicNanos() - t0) / 1e9
        let harnessCPU = HarnessCPU.seconds() - cpu0
        let requests = completedRequests.load(ordering: .relaxed) - req0
        let servers = sampler.stop()
        table.stop()
        sync.stop()
        http.stop()
        tableTask.cancel()
        syncTask.cancel()

        var report = Report(scenario: "mixed")
        common.describe(into: &report, prefix: prefix)
        report.row("shape", "\(users.count) users (\(syncing) syncing), \(rooms.count) rooms × \(rooms.first?.members.count ?? 0), \(actives) active users at \(fmt(rate, 2)) ops/s each, weights \(weights.map { "\($0.0.rawValue)=\(fmt($0.1, 0))" }.joined(separator: ",")), skew \(skew)")
        report.row("set-up", "\(fmt(setupSeconds, 1)) s (register, create and join, initial syncs; --concurrency \(common.concurrency))")
        report.json["setup_s"] = round3(setupSeconds)
        report.json["skew"] = skew
        report.json["rooms"] = rooms.count
        report.json["members"] = rooms.first?.members.count ?? 0
        report.json["sync_users"] = syncing
        var opsJSON: [String: Any] = [:]
        var opsTotal = 0
        for op in Op.allCases {
            let h = latencies[op]!.total
            opsTotal += Int(h.totalCount)
            report.row("\(op.rawValue) ms", "\(fmt(Double(h.totalCount) / sendPhase, 1))/s  p50 \(h.ms(50))  p99 \(h.ms(99))  max \(h.maxMs)")
            opsJSON[op.rawValue] = ["per_s": round3(Double(h.totalCount) / sendPhase), "latency_ms": h.jsonMs]
        }
        report.json["ops"] = opsJSON
        report.json["offered_ops_per_s"] = round3(rate * Double(actives))
        let achieved = Double(opsTotal) / sendPhase
        let skipped = ledger.total.skipped
        report.row("operations", "offered \(fmt(rate * Double(actives), 1))/s · achieved \(fmt(achieved, 1))/s\(skipped > 0 ? " (\(skipped) ticks skipped: user still waiting on its previous operation)" : "")")
        if achieved < 0.9 * rate * Double(actives) {
            report.verdict.append("achieved \(fmt(achieved, 1)) ops/s of \(fmt(rate * Double(actives), 1)) offered")
        }
        let result = DeliveryResult(counters: ledger.total, deliveriesInSendPhase: deliveriesAtEnd, sendPhase: sendPhase,
                                    seconds: seconds, delivery: ledger.deliveryLatency.total, send: ledger.sendLatency.total,
                                    servers: servers, harnessCPU: harnessCPU, requests: requests)
        result.fill(&report, duration: common.duration, rate: 0, senders: actives)
        report.addErrors(tally)
        report.addResources(servers: servers, harnessCPU: harnessCPU, seconds: seconds,
                            perSend: ledger.total.acked, perDelivery: ledger.total.deliveries, requests: requests)
        common.finish(&report, table: table)
    }
}
