import ArgumentParser
import Foundation
import Histogram
import Synchronization

/// `fanout`: U users long-poll /sync, S senders post into R rooms at a fixed or maximal rate
/// for D seconds; measures acknowledged sends/s, deliveries/s, per-delivery latency (send
/// start → the receiver's sync response carrying it) and lost deliveries.
struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Long-polling receivers, senders at a fixed or maximal rate; delivery latency and losses.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Users started per second when the long-polls open (0 = all at once).")
    var ramp: Double = 500

    @Flag(help: "Every user sets an HTTP pusher to a local push gateway the harness runs (counts its requests).")
    var pushers = false

    func run() async throws {
        let (prefix, http, api, tally, setup) = try await common.startRun()
        defer { http.stop() }
        var users = try await setup.registerUsers(count: common.users, sharedSecret: common.sharedSecret)
        let rooms = try await setup.createRooms(max(1, common.rooms), members: common.members, users: users)
        let filter = Setup.syncFilter(timelineLimit: common.timelineLimit, ephemeral: false)
        users = try await setup.initialSyncs(users, filter: filter)
        var gateway: CountingPushGateway?
        if pushers {
            let started = try CountingPushGateway()
            started.start()
            gateway = started
            let registered = users
            try await setup.forEach("setting pushers", count: registered.count) { i, conn in
                let body: [String: Any] = ["app_id": "bench", "pushkey": "key-\(i)", "kind": "http", "app_display_name": "bench",
                                           "device_display_name": "bench", "lang": "en", "data": ["url": started.url]]
                return await api.call(conn, "POST", "\(MatrixAPI.v3)/pushers/set", token: registered[i].token, body: body,
                                      label: "pushers").map { _ in () }
            }
            printErr("[run] \(users.count) pushers to \(started.url)")
        }

        let ledger = DeliveryLedger()
        let sync = SyncDriver(api: api, tally: tally, ledger: ledger, prefix: prefix, filter: filter, timeout: common.syncTimeout)
        let syncTask = Task { await sync.run(users, ramp: ramp) }
        // Wait until every receiver has its long-poll out before sending.
        let rampDeadline = monotonicNanos() + UInt64((Double(users.count) / max(ramp, 1) + 30) * 1e9)
        while sync.connected.load(ordering: .relaxed) < users.count && monotonicNanos() < rampDeadline {
            try await Task.sleep(for: .milliseconds(200))
        }
        try await Task.sleep(for: .seconds(1))
        printErr("[run] \(users.count) receivers long-polling; \(common.senders) senders for \(fmt(common.duration, 0)) s")

        let result = try await measure(api: api, users: users, rooms: rooms, ledger: ledger, sync: sync,
                                       tally: tally, prefix: prefix, gateway: gateway)
        sync.stop()
        http.stop()
        syncTask.cancel()

        var report = Report(scenario: "fanout")
        common.describe(into: &report, prefix: prefix)
        report.json["rooms"] = rooms.count
        report.json["members"] = rooms.first?.members.count ?? 0
        report.json["senders"] = common.senders
        report.json["rate_per_sender"] = common.rate
        report.row("shape", "\(users.count) users, \(rooms.count) rooms × \(rooms.first?.members.count ?? 0) members, \(common.senders) senders at \(common.rate == 0 ? "max (closed loop)" : fmt(common.rate, 2) + "/s each"), \(fmt(common.duration, 0)) s + \(fmt(common.grace, 0)) s grace")
        result.fill(&report, duration: common.duration, rate: common.rate, senders: common.senders)
        if let pushes = result.pushes {
            // Each acknowledged send notifies every other member once (the default rules notify messages).
            report.row("push gateway", "\(pushes.total) requests of \(pushes.expected) expected · \(fmt(pushes.perSecondInSends, 1))/s during sends · \(fmt(Double(pushes.total) / result.seconds, 1))/s over the run with grace")
            report.json["push_gateway"] = ["requests": pushes.total, "expected": pushes.expected,
                                           "per_s_during_sends": round3(pushes.perSecondInSends),
                                           "per_s_overall": round3(Double(pushes.total) / result.seconds)]
        }
        report.closedLoop = common.rate == 0
        report.addErrors(tally)
        report.addResources(servers: result.servers, harnessCPU: result.harnessCPU, seconds: result.seconds,
                            perSend: result.counters.acked, perDelivery: result.counters.deliveries,
                            requests: result.requests)
        common.finish(&report, table: result.table)
    }

    func measure(api: MatrixAPI, users: [BenchUser], rooms: [BenchRoom], ledger: DeliveryLedger, sync: SyncDriver,
                 tally: Tally, prefix: String, gateway: CountingPushGateway? = nil) async throws -> DeliveryResult {
        let pushes0 = gateway?.requests.load(ordering: .relaxed) ?? 0
        let scraper = try common.makeScraper()
        let sampler = ServerSampler(pids: common.serverPids)
        sampler.start()
        let cpu0 = HarnessCPU.seconds()
        let req0 = completedRequests.load(ordering: .relaxed)
        let t0 = monotonicNanos()
        let table = RunningTable(ledger: ledger, sync: sync, tally: tally, sampler: sampler, interval: common.interval,
                                 scraper: scraper)
        let tableTask = Task { await table.run() }
        let end = t0 + UInt64(common.duration * 1e9)
        let senders = SenderPool(api: api, users: users, rooms: rooms, ledger: ledger, tally: tally, prefix: prefix,
                                 count: common.senders, rate: common.rate)
        await senders.run(until: end)
        let sendPhase = Double(monotonicNanos() - t0) / 1e9
        let deliveriesAtEnd = ledger.total.deliveries
        let pushesAtEnd = (gateway?.requests.load(ordering: .relaxed) ?? 0) - pushes0
        // Grace: wait until every expected delivery (and push) arrived, or the grace ran out.
        let graceEnd = monotonicNanos() + UInt64(common.grace * 1e9)
        func pushesPending() -> Bool {
            guard let gateway else { return false }
            return gateway.requests.load(ordering: .relaxed) - pushes0 < ledger.total.expected
        }
        while (ledger.total.pending > 0 || pushesPending()) && monotonicNanos() < graceEnd {
            try await Task.sleep(for: .milliseconds(200))
        }
        sync.stop()
        table.stop()
        tableTask.cancel()
        let seconds = Double(monotonicNanos() - t0) / 1e9
        var result = DeliveryResult(counters: ledger.total, deliveriesInSendPhase: deliveriesAtEnd, sendPhase: sendPhase,
                                    seconds: seconds, delivery: ledger.deliveryLatency.total, send: ledger.sendLatency.total,
                                    servers: sampler.stop(), harnessCPU: HarnessCPU.seconds() - cpu0,
                                    requests: completedRequests.load(ordering: .relaxed) - req0)
        result.table = table
        if let gateway {
            result.pushes = .init(total: gateway.requests.load(ordering: .relaxed) - pushes0, expected: ledger.total.expected,
                                  perSecondInSends: Double(pushesAtEnd) / sendPhase)
        }
        return result
    }
}

/// The figures of a run that sends and delivers (fanout, mixed).
struct DeliveryResult {
    var counters: DeliveryLedger.Counters
    var deliveriesInSendPhase: Int
    var sendPhase: Double
    var seconds: Double
    var delivery: Histogram<UInt64>
    var send: Histogram<UInt64>
    var servers: [ServerFigures]
    var harnessCPU: Double
    var requests: Int
    /// Requests the local push gateway answered (`fanout --pushers`).
    var pushes: Pushes? = nil
    /// The running table, whose interval samples go into the JSON line and the HTML report.
    var table: RunningTable? = nil

    struct Pushes {
        var total: Int
        var expected: Int
        var perSecondInSends: Double
    }

    func fill(_ report: inout Report, duration: Double, rate: Double, senders: Int) {
        let c = counters
        let offered = rate > 0 ? rate * Double(senders) : nil
        let achieved = Double(c.acked) / sendPhase
        report.row("sends", "offered \(offered.map { fmt($0, 1) + "/s" } ?? "max") · achieved \(fmt(achieved, 1))/s acknowledged (\(c.acked) of \(c.attempted) started\(c.skipped > 0 ? ", \(c.skipped) ticks skipped: sender backlogged" : ""))")
        report.row("send latency ms", "p50 \(send.ms(50))  p90 \(send.ms(90))  p99 \(send.ms(99))  max \(send.maxMs)")
        let offeredDeliveries = Double(c.expected) / sendPhase
        report.row("deliveries", "\(c.deliveries) seen · \(fmt(Double(deliveriesInSendPhase) / sendPhase, 1))/s during sends (acknowledged sends imply \(fmt(offeredDeliveries, 1))/s)")
        report.row("delivery latency ms", "p50 \(delivery.ms(50))  p90 \(delivery.ms(90))  p99 \(delivery.ms(99))  max \(delivery.maxMs)")
        let lostPct = c.expected > 0 ? 100 * Double(c.pending) / Double(c.expected) : 0
        report.row("lost deliveries", "\(c.pending) of \(c.expected) expected (\(fmt(lostPct, 2))%)\(c.limitedTimelines > 0 ? ", \(c.limitedTimelines) limited timelines" : "")\(c.duplicates > 0 ? ", \(c.duplicates) duplicates" : "")")
        report.json["sends"] = ["offered_per_s": offered.map { round3($0) } as Any, "achieved_per_s": round3(achieved),
                                "acked": c.acked, "attempted": c.attempted, "skipped_ticks": c.skipped,
                                "latency_ms": send.jsonMs]
        report.json["deliveries"] = ["seen": c.deliveries, "per_s": round3(Double(deliveriesInSendPhase) / sendPhase),
                                     "implied_per_s": round3(offeredDeliveries), "expected": c.expected,
                                     "lost": c.pending, "limited_timelines": c.limitedTimelines,
                                     "duplicates": c.duplicates, "latency_ms": delivery.jsonMs]
        report.json["measured_s"] = round3(seconds)
        if let offered, achieved < 0.9 * offered {
            report.verdict.append("achieved \(fmt(achieved, 1)) sends/s of \(fmt(offered, 1)) offered")
        }
        if delivery.totalCount > 0 && delivery.valueAtPercentile(99) > 5_000_000 {
            report.verdict.append("delivery p99 \(delivery.ms(99)) ms (queueing)")
        }
        if lostPct > 0.1 {
            report.verdict.append("\(fmt(lostPct, 1))% of deliveries lost within the grace")
        }
    }
}

/// The senders of a run: sender k posts into room k % R as one of its members. At a fixed rate
/// each tick takes a free connection of the sender (up to 8 in flight) or is counted skipped;
/// at rate 0 each sender has one send in flight at all times.
struct SenderPool {
    let api: MatrixAPI
    let users: [BenchUser]
    let rooms: [BenchRoom]
    let ledger: DeliveryLedger
    let tally: Tally
    let prefix: String
    let count: Int
    let rate: Double

    func run(until end: UInt64) async {
        await withTaskGroup(of: Void.self) { group in
            for k in 0..<count {
                let room = rooms[k % rooms.count]
                let member = room.members[(k / rooms.count) % room.members.count]
                let sender = users[member]
                group.addTask {
                    await sendLoop(k: k, sender: sender, room: room, until: end)
                }
            }
        }
    }

    private func sendLoop(k: Int, sender: BenchUser, room: BenchRoom, until end: UInt64) async {
        let expected = room.members.count - 1
        var seq: Int64 = 0
        let path = "\(MatrixAPI.v3)/rooms/\(percentEncode(room.roomID))/send/m.room.message/"
        if rate == 0 {
            let conn = api.http.makeConnection()
            while monotonicNanos() < end {
                seq += 1
                await sendOne(conn: conn, id: Int64(k) * 1_000_000_000 + seq, sender: sender, path: path, expected: expected)
            }
            return
        }
        let free = Locked<[ClientConnection]>((0..<8).map { _ in api.http.makeConnection() })
        let interval = 1.0 / rate
        // Spread senders' first ticks evenly over one interval so they do not fire together.
        var next = monotonicNanos() + UInt64(interval * 1e9 * Double(k) / Double(max(1, count)))
        await withTaskGroup(of: Void.self) { group in
            while next < end {
                let now = monotonicNanos()
                if next > now { try? await Task.sleep(for: .nanoseconds(Int64(next - now))) }
                next += UInt64(interval * 1e9)
                guard let conn = free.withLock({ $0.popLast() }) else {
                    ledger.skipped()
                    continue
                }
                seq += 1
                let id = Int64(k) * 1_000_000_000 + seq
                group.addTask {
                    await sendOne(conn: conn, id: id, sender: sender, path: path, expected: expected)
                    free.withLock { $0.append(conn) }
                }
            }
        }
    }

    private func sendOne(conn: ClientConnection, id: Int64, sender: BenchUser, path: String, expected: Int) async {
        let t0 = monotonicNanos()
        ledger.sending(id, expected: expected)
        let body: [String: Any] = ["msgtype": "m.text", "body": "bench \(id)", "bench_run": prefix,
                                   "bench_id": id, "bench_t0": t0]
        let r = await api.call(conn, "PUT", path + "\(prefix)-\(id)", token: sender.token, body: body, label: "send")
        switch r {
        case .success: ledger.acked(id, nanos: monotonicNanos() - t0)
        case .failure(let f): tally.add(f)
        }
    }
}

/// Prints one row every `interval` seconds while a run measures: sends and deliveries per
/// second, delivery latency over the interval, long-polls in flight, errors, CPU, and with
/// `--metrics-url` the server's actor activations/s, evictions/s and resident rooms. Keeps
/// every row (`samples`) for the JSON line and the HTML report.
final class RunningTable: Sendable {
    let ledger: DeliveryLedger?
    let sync: SyncDriver?
    let tally: Tally
    let sampler: ServerSampler
    let interval: Double
    let scraper: MetricsScraper?
    private let stopped = Atomic<Bool>(false)
    private let rows = Mutex<[IntervalSample]>([])

    init(ledger: DeliveryLedger?, sync: SyncDriver?, tally: Tally, sampler: ServerSampler, interval: Double,
         scraper: MetricsScraper? = nil) {
        self.ledger = ledger
        self.sync = sync
        self.tally = tally
        self.sampler = sampler
        self.interval = interval
        self.scraper = scraper
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    var samples: [IntervalSample] { rows.withLock { $0 } }

    func run() async {
        let start = monotonicNanos()
        var lastCPU = HarnessCPU.seconds()
        var lastServer = 0.0
        var last = start
        var lastScrape = await scraper?.scrape()
        printOut("    t   sent/s  acked/s  deliv/s  deliv p50 ms  p99 ms  polls  errors  server CPU%  harness CPU%"
                 + (scraper == nil ? "" : "  activ/s  evict/s  rooms"))
        while !stopped.load(ordering: .relaxed) {
            try? await Task.sleep(for: .seconds(interval))
            if stopped.load(ordering: .relaxed) { break }
            let scrape = await scraper?.scrape()
            let now = monotonicNanos()
            let dt = max(Double(now - last) / 1e9, 0.001)
            last = now
            let cpu = HarnessCPU.seconds()
            let server = sampler.currentCPU()
            let c = ledger?.takeInterval() ?? DeliveryLedger.Counters()
            let h = ledger?.deliveryLatency.takeInterval()
            var sample = IntervalSample(
                t: Double(now - start) / 1e9, sentPerS: Double(c.attempted) / dt, ackedPerS: Double(c.acked) / dt,
                deliveriesPerS: Double(c.deliveries) / dt,
                deliveryP50Ms: h.flatMap { $0.totalCount > 0 ? Double($0.valueAtPercentile(50)) / 1000 : nil },
                deliveryP90Ms: h.flatMap { $0.totalCount > 0 ? Double($0.valueAtPercentile(90)) / 1000 : nil },
                deliveryP99Ms: h.flatMap { $0.totalCount > 0 ? Double($0.valueAtPercentile(99)) / 1000 : nil },
                polls: sync?.inFlight.load(ordering: .relaxed) ?? 0, errors: tally.total,
                serverCPUPct: sampler.pids.isEmpty ? nil : 100 * (server - lastServer) / dt,
                serverRSSMiB: sampler.pids.isEmpty ? nil : Double(sampler.currentRSS()) / 1_048_576,
                harnessCPUPct: 100 * (cpu - lastCPU) / dt)
            if let earlier = lastScrape, let scrape {
                sample.server = MetricsScraper.figures(from: earlier, to: scrape)
            }
            if scrape != nil { lastScrape = scrape }
            rows.withLock { $0.append(sample) }
            var cols = [
                fmt(sample.t, 0).leftPad(5),
                fmt(sample.sentPerS, 1).leftPad(8),
                fmt(sample.ackedPerS, 1).leftPad(8),
                fmt(sample.deliveriesPerS, 1).leftPad(8),
                (h?.ms(50) ?? "-").leftPad(13),
                (h?.ms(99) ?? "-").leftPad(7),
                String(sample.polls).leftPad(6),
                String(sample.errors).leftPad(7),
                (sample.serverCPUPct.map { fmt($0, 0) } ?? "-").leftPad(12),
                fmt(sample.harnessCPUPct, 0).leftPad(13),
            ]
            if scraper != nil {
                cols.append((sample.server["rooms_activations_per_s"].map { fmt($0, 1) } ?? "-").leftPad(8))
                cols.append((sample.server["rooms_evictions_per_s"].map { fmt($0, 1) } ?? "-").leftPad(8))
                cols.append((sample.server["rooms_resident"].map { fmt($0, 0) } ?? "-").leftPad(6))
            }
            printOut(cols.joined(separator: " "))
            lastCPU = cpu
            lastServer = server
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
