import ArgumentParser
import Foundation

/// `idle`: U users long-polling /sync with nothing to deliver, held for D seconds; measures the
/// server's memory per connected user (peak RSS during the hold minus RSS before it) and what
/// holding the connections costs the server and the harness in CPU.
struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Idle long-polling users held open; server memory per connected user.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Users started per second when the long-polls open (0 = all at once).")
    var ramp: Double = 500

    func run() async throws {
        let (prefix, http, api, tally, setup) = try await common.startRun()
        defer { http.stop() }
        var users = try await setup.registerUsers(count: common.users, sharedSecret: common.sharedSecret)
        let filter = Setup.syncFilter(timelineLimit: common.timelineLimit, ephemeral: false)
        users = try await setup.initialSyncs(users, filter: filter)

        // Let the server settle after set-up, then take the baseline.
        try await Task.sleep(for: .seconds(2))
        let scraper = try common.makeScraper()
        let sampler = ServerSampler(pids: common.serverPids)
        sampler.start()
        let cpu0 = HarnessCPU.seconds()
        let req0 = completedRequests.load(ordering: .relaxed)
        let t0 = monotonicNanos()
        let sync = SyncDriver(api: api, tally: tally, ledger: nil, prefix: prefix, filter: filter, timeout: common.syncTimeout)
        let table = RunningTable(ledger: nil, sync: sync, tally: tally, sampler: sampler, interval: common.interval, scraper: scraper)
        let tableTask = Task { await table.run() }
        let syncTask = Task { await sync.run(users, ramp: ramp) }
        let rampSeconds = ramp > 0 ? Double(users.count) / ramp : 0
        printErr("[run] opening \(users.count) long-polls (~\(fmt(rampSeconds, 0)) s ramp), then holding them \(fmt(common.duration, 0)) s")
        let end = t0 + UInt64((rampSeconds + common.duration) * 1e9)
        var minHeld = Int.max
        var maxHeld = 0
        let holdStart = t0 + UInt64(rampSeconds * 1e9)
        while monotonicNanos() < end {
            try await Task.sleep(for: .milliseconds(500))
            if monotonicNanos() >= holdStart {
                let held = sync.inFlight.load(ordering: .relaxed)
                minHeld = min(minHeld, held)
                maxHeld = max(maxHeld, held)
            }
        }
        let harnessCPU = HarnessCPU.seconds() - cpu0
        let requests = completedRequests.load(ordering: .relaxed) - req0
        let seconds = Double(monotonicNanos() - t0) / 1e9
        let servers = sampler.stop()
        table.stop()
        sync.stop()
        http.stop()
        tableTask.cancel()
        syncTask.cancel()

        var report = Report(scenario: "idle")
        common.describe(into: &report, prefix: prefix)
        report.row("shape", "\(users.count) idle users long-polling (timeout \(fmt(common.syncTimeout, 0)) s), ramp \(fmt(rampSeconds, 0)) s + hold \(fmt(common.duration, 0)) s")
        if minHeld == Int.max { minHeld = 0 }
        report.row("long-polls held", "\(minHeld)–\(maxHeld) in flight during the hold; \(sync.responses.load(ordering: .relaxed)) sync responses")
        let h = sync.syncLatency.total
        report.row("long-poll return ms", "p50 \(h.ms(50))  p99 \(h.ms(99))  max \(h.maxMs)  (≈ the timeout when idle)")
        report.json["held_min"] = minHeld
        report.json["held_max"] = maxHeld
        report.json["sync_responses"] = sync.responses.load(ordering: .relaxed)
        report.json["sync_return_ms"] = h.jsonMs
        report.json["measured_s"] = round3(seconds)
        if maxHeld < users.count * 95 / 100 {
            report.verdict.append("only \(maxHeld) of \(users.count) long-polls held at once")
        }
        report.addErrors(tally)
        report.addResources(servers: servers, harnessCPU: harnessCPU, seconds: seconds, perUser: users.count,
                            requests: requests)
        common.finish(&report, table: table)
    }
}
