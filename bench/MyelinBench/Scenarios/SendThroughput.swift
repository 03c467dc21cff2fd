import ArgumentParser
import Foundation

/// `send`: send throughput. S senders post into R rooms (`--rooms 1`: all into one room,
/// which a server serialises; `--rooms S`: one room each) with no receivers syncing.
struct SendThroughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send throughput into one room (--rooms 1) or across many (--rooms N).")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let (prefix, http, api, tally, setup) = try await common.startRun()
        defer { http.stop() }
        let senders = max(1, common.senders)
        let users = try await setup.registerUsers(count: senders, sharedSecret: common.sharedSecret)
        let roomCount = max(1, min(common.rooms, senders))
        let rooms = try await setup.createRooms(roomCount, members: (senders + roomCount - 1) / roomCount, users: users)
        printErr("[run] \(senders) senders into \(rooms.count) rooms for \(fmt(common.duration, 0)) s")

        let ledger = DeliveryLedger()
        let scraper = try common.makeScraper()
        let sampler = ServerSampler(pids: common.serverPids)
        sampler.start()
        let cpu0 = HarnessCPU.seconds()
        let req0 = completedRequests.load(ordering: .relaxed)
        let t0 = monotonicNanos()
        let table = RunningTable(ledger: ledger, sync: nil, tally: tally, sampler: sampler, interval: common.interval, scraper: scraper)
        let tableTask = Task { await table.run() }
        let pool = SenderPool(api: api, users: users, rooms: rooms, ledger: ledger, tally: tally, prefix: prefix,
                              count: senders, rate: common.rate)
        await pool.run(until: t0 + UInt64(common.duration * 1e9))
        let seconds = Double(monotonicNanos() - t0) / 1e9
        let harnessCPU = HarnessCPU.seconds() - cpu0
        let requests = completedRequests.load(ordering: .relaxed) - req0
        table.stop()
        tableTask.cancel()
        let servers = sampler.stop()

        let c = ledger.total
        let send = ledger.sendLatency.total
        var report = Report(scenario: "send")
        common.describe(into: &report, prefix: prefix)
        let offered = common.rate > 0 ? common.rate * Double(senders) : nil
        let achieved = Double(c.acked) / seconds
        report.row("shape", "\(senders) senders into \(rooms.count) room\(rooms.count == 1 ? "" : "s"), \(common.rate == 0 ? "max rate (one in flight each)" : fmt(common.rate, 2) + "/s each"), \(fmt(common.duration, 0)) s")
        report.row("sends", "offered \(offered.map { fmt($0, 1) + "/s" } ?? "max") · achieved \(fmt(achieved, 1))/s acknowledged (\(c.acked) of \(c.attempted) started\(c.skipped > 0 ? ", \(c.skipped) ticks skipped" : ""))")
        report.row("send latency ms", "p50 \(send.ms(50))  p90 \(send.ms(90))  p99 \(send.ms(99))  max \(send.maxMs)")
        report.json["rooms"] = rooms.count
        report.json["senders"] = senders
        report.json["sends"] = ["offered_per_s": offered.map { round3($0) } as Any, "achieved_per_s": round3(achieved),
                                "acked": c.acked, "attempted": c.attempted, "skipped_ticks": c.skipped, "latency_ms": send.jsonMs]
        report.json["measured_s"] = round3(seconds)
        if let offered, achieved < 0.9 * offered {
            report.verdict.append("achieved \(fmt(achieved, 1)) sends/s of \(fmt(offered, 1)) offered")
        }
        report.closedLoop = common.rate == 0
        report.addErrors(tally)
        report.addResources(servers: servers, harnessCPU: harnessCPU, seconds: seconds, perSend: c.acked,
                            requests: requests)
        common.finish(&report, table: table)
    }
}
