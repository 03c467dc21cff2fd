import ArgumentParser
import Foundation

/// `myelin-bench`: the sync load-test harness. It speaks only the standard client-server API,
/// so the same run measures Myelin, Synapse or any other homeserver. Each subcommand is one
/// scenario; `selftest` checks the harness's own HTTP parser, `probe` which endpoints a server
/// serves.
@main
struct MyelinBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myelin-bench",
        abstract: "Load-test a Matrix homeserver's sync over the client-server API.",
        subcommands: [Fanout.self, Idle.self, Initial.self, SendThroughput.self, Mixed.self,
                      Probe.self, SweepReport.self, SelfTest.self])
}

/// Flags every scenario shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Server base URL, plain HTTP (e.g. http://127.0.0.1:8008).")
    var url: String

    @Option(help: "Users to register (each long-polls /sync where the scenario syncs).")
    var users: Int = 100

    @Option(help: "Rooms to create.")
    var rooms: Int = 1

    @Option(help: "Members per room (consecutive users, wrapping).")
    var members: Int = 100

    @Option(help: "Sending users.")
    var senders: Int = 1

    @Option(help: "Sends per sender per second; 0 = as fast as acknowledged (one in flight per sender).")
    var rate: Double = 1

    @Option(help: "Measured phase, seconds.")
    var duration: Double = 60

    @Option(help: "Extra seconds after the send phase for deliveries to arrive before they count as lost.")
    var grace: Double = 30

    @Option(name: .customLong("server-pid"), help: "Server process to measure from /proc, with its descendants (repeatable: the server and its PostgreSQL).")
    var serverPids: [Int] = []

    @Option(help: "Append one JSON line with the results to this file.")
    var json: String?

    @Option(help: "Prefix of every user and room name of the run (default: derived from the time), so runs never collide.")
    var prefix: String?

    @Option(name: .customLong("sync-timeout"), help: "Long-poll timeout of /sync, seconds.")
    var syncTimeout: Double = 30

    @Option(name: .customLong("timeline-limit"), help: "Timeline limit in the sync filter.")
    var timelineLimit: Int = 100

    @Option(help: "Concurrent requests during set-up.")
    var concurrency: Int = 8

    @Option(help: "Client event loops (threads) of the harness.")
    var loops: Int = 2

    @Option(help: "Seconds between rows of the running table.")
    var interval: Double = 5

    @Option(name: .customLong("metrics-url"), help: "Prometheus text page to scrape each interval (e.g. http://127.0.0.1:8008/_myelin/metrics with metrics.enabled): actor activations/s, evictions/s, resident rooms, *_seconds histograms.")
    var metricsURL: String?

    @Option(help: "Write a self-contained HTML report (index.html with SVG charts) of the run into this directory.")
    var report: String?

    @Option(help: "Tag the run's JSON line with a setting, key=value (repeatable), for `myelin-bench report --sweep-key`.")
    var label: [String] = []

    @Option(name: .customLong("shared-secret"), help: "Register through Synapse's shared-secret admin API instead of the UIA dummy flow.")
    var sharedSecret: String?

    var runPrefix: String {
        if let prefix { return prefix.lowercased() }
        let t = Int(Date().timeIntervalSince1970) % 10_000_000
        return "b" + String(t, radix: 36)
    }

    func validate() throws {
        if users < 1 { throw ValidationError("--users must be at least 1") }
        if duration <= 0 { throw ValidationError("--duration must be positive") }
        if rate < 0 { throw ValidationError("--rate must be 0 or more") }
        _ = try parseServerURL(url)
        if let metricsURL { _ = try parseServerURL(metricsURL) }
        _ = try labels()
    }

    /// `--label key=value` flags as a dictionary.
    func labels() throws -> [String: String] {
        var out: [String: String] = [:]
        for l in label {
            guard let eq = l.firstIndex(of: "="), eq != l.startIndex else {
                throw ValidationError("--label must be key=value, got \(l)")
            }
            out[String(l[..<eq])] = String(l[l.index(after: eq)...])
        }
        return out
    }

    /// The `--metrics-url` scraper, if asked for.
    func makeScraper() throws -> MetricsScraper? {
        try metricsURL.map { try MetricsScraper(url: $0) }
    }

    /// Ends a run: labels, the table's interval samples and the scraped server figures go into
    /// the report; prints it, appends the JSON line, writes the HTML page with `--report`.
    func finish(_ report: inout Report, table: RunningTable?) {
        report.json["labels"] = (try? labels()) ?? [:]
        let samples = table?.samples ?? []
        report.json["intervals"] = samples.map(\.json)
        report.json["interval_s"] = interval
        if let scraper = table?.scraper {
            if let summary = scraper.summary() { report.addServerMetrics(summary.figures, failures: summary.failures) }
            scraper.stop()
        }
        report.print(jsonPath: json)
        if let dir = self.report {
            do {
                let path = try HTMLReport.write(HTMLReport.run(report, samples: samples), to: dir)
                printErr("[report] \(path)")
            } catch {
                printErr("[report] could not write \(dir): \(error)")
            }
        }
    }

    /// The run's HTTP client, after raising the file limit for thousands of sockets.
    func makeClient() throws -> (HTTPClient, MatrixAPI) {
        let limit = raiseFileLimit()
        if limit < UInt64(users * 2 + 100) {
            printErr("warning: file descriptor limit \(limit) is low for \(users) users (raise `ulimit -n`)")
        }
        let (host, port) = try parseServerURL(url)
        let address = try SocketAddress.resolve(host: host, port: port)
        let http = HTTPClient(address: address, loops: loops)
        return (http, MatrixAPI(http: http))
    }

    /// What every scenario starts with: the run prefix, the client, a tally, the set-up helper,
    /// and a probe that the server answers `/versions`. The caller stops `http` when done.
    func startRun() async throws -> (prefix: String, http: HTTPClient, api: MatrixAPI, tally: Tally, setup: Setup) {
        let prefix = runPrefix
        let (http, api) = try makeClient()
        let tally = Tally()
        let setup = Setup(api: api, prefix: prefix, concurrency: concurrency, tally: tally)
        do {
            try await setup.probeVersions()
        } catch {
            http.stop()
            throw error
        }
        return (prefix, http, api, tally, setup)
    }

    /// The common header of every report.
    func describe(into report: inout Report, prefix: String) {
        report.row("server", url)
        report.row("run prefix", prefix)
        report.json["url"] = url
        report.json["prefix"] = prefix
        report.json["users"] = users
        report.json["duration_s"] = duration
    }
}
