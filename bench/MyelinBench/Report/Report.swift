import Foundation
import Histogram
import Synchronization

/// Latencies in microseconds, recorded from any task (HdrHistogram, 3 significant digits,
/// up to 10 minutes). Keeps a whole-run histogram and one for the current table interval.
final class LatencyRecorder: Sendable {
    private let state = Mutex<(total: Histogram<UInt64>, interval: Histogram<UInt64>)>(
        (Histogram(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three),
         Histogram(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)))

    func record(nanos: UInt64) {
        let us = min(max(nanos / 1000, 1), 600_000_000)
        state.withLock {
            _ = $0.total.record(us)
            _ = $0.interval.record(us)
        }
    }

    var total: Histogram<UInt64> { state.withLock { $0.total } }

    /// The interval histogram, reset for the next interval.
    func takeInterval() -> Histogram<UInt64> {
        state.withLock { s in
            let h = s.interval
            s.interval.reset()
            return h
        }
    }
}

extension Histogram where Count == UInt64 {
    /// Milliseconds at a percentile ("-" when empty).
    func ms(_ p: Double) -> String {
        totalCount == 0 ? "-" : fmt(Double(valueAtPercentile(p)) / 1000, 1)
    }

    var maxMs: String { totalCount == 0 ? "-" : fmt(Double(max) / 1000, 1) }

    /// {"count","p50","p90","p99","max","mean"} in milliseconds for the JSON line.
    var jsonMs: [String: Any] {
        guard totalCount > 0 else { return ["count": 0] }
        return ["count": totalCount,
                "p50": Double(valueAtPercentile(50)) / 1000, "p90": Double(valueAtPercentile(90)) / 1000,
                "p99": Double(valueAtPercentile(99)) / 1000, "max": Double(max) / 1000,
                "mean": (mean / 1000 * 10).rounded() / 10]
    }
}

/// The end-of-run report: a human table on stdout and, with `--json FILE`, one JSON line
/// appended to FILE. Scenarios fill `rows` (label, value) and `json`.
struct Report {
    var scenario: String
    var rows: [(String, String)] = []
    var json: [String: Any] = [:]
    var verdict: [String] = []  // reasons the run was overloaded or client-bound
    /// Senders ran closed-loop (`--rate 0`): the achieved rate is a capacity, not a load test.
    var closedLoop = false

    init(scenario: String) {
        self.scenario = scenario
        json["scenario"] = scenario
        json["date"] = ISO8601DateFormatter().string(from: Date())
    }

    mutating func row(_ label: String, _ value: String) { rows.append((label, value)) }

    var verdictText: String {
        !verdict.isEmpty ? "OVERLOADED: " + verdict.joined(separator: "; ")
            : closedLoop ? "CAPACITY: closed loop (one request in flight per sender), the achieved rate is what the server sustains"
            : "OK: not saturated"
    }

    /// The scraped server figures over the whole run (`--metrics-url`): a row per pool that
    /// moved, a row per `*_seconds` histogram, and `server_metrics` in the JSON line.
    mutating func addServerMetrics(_ figures: [String: Double], failures: Int) {
        json["server_metrics"] = figures.mapValues { round3($0) }
        for pool in MetricsScraper.pools {
            let a = figures["\(pool)_activations_per_s"], e = figures["\(pool)_evictions_per_s"]
            let r = figures["\(pool)_resident_max"]
            guard (a ?? 0) > 0 || (e ?? 0) > 0 || (r ?? 0) > 0 else { continue }
            row("server \(pool)", "activations \(fmt(a ?? 0, 2))/s · evictions \(fmt(e ?? 0, 2))/s · resident max \(fmt(r ?? 0, 0)), at end \(fmt(figures["\(pool)_resident"] ?? 0, 0))")
        }
        for key in figures.keys.filter({ $0.hasSuffix(" p99_ms") }).sorted() {
            let h = String(key.dropLast(" p99_ms".count))
            row("server \(h)", "p50 \(fmt(figures[h + " p50_ms"] ?? .nan, 2)) ms  p99 \(fmt(figures[key] ?? .nan, 2)) ms  (\(fmt(figures[h + " per_s"] ?? 0, 1))/s)")
        }
        if failures > 0 { row("metrics scrapes failed", "\(failures)") }
    }

    /// Server and harness figures common to every scenario, and the verdict.
    mutating func addResources(servers: [ServerFigures], harnessCPU: Double, seconds: Double,
                               perSend: Int? = nil, perDelivery: Int? = nil, perUser: Int? = nil,
                               judgeServerCPU: Bool = true, requests: Int = 0) {
        var serverJSON: [[String: Any]] = []
        for s in servers {
            var j: [String: Any] = ["pid": s.pid, "cpu_s": round3(s.cpuSeconds),
                                    "cpu_pct_of_core": round3(100 * s.cpuSeconds / max(seconds, 0.001)),
                                    "peak_rss_mib": round3(Double(s.peakRSSBytes) / 1_048_576),
                                    "baseline_rss_mib": round3(Double(s.baselineRSSBytes) / 1_048_576),
                                    "vm_hwm_mib": round3(Double(s.hwmBytes) / 1_048_576),
                                    "processes": s.processes, "alive": s.alive]
            var line = "\(fmt(s.cpuSeconds, 1)) s CPU (\(fmt(100 * s.cpuSeconds / max(seconds, 0.001), 0))% of a core)"
            if let n = perSend, n > 0 {
                j["cpu_ms_per_send"] = round3(1000 * s.cpuSeconds / Double(n))
                line += ", \(fmt(1000 * s.cpuSeconds / Double(n), 2)) ms/send"
            }
            if let n = perDelivery, n > 0 {
                j["cpu_ms_per_delivery"] = round3(1000 * s.cpuSeconds / Double(n))
                line += ", \(fmt(1000 * s.cpuSeconds / Double(n), 2)) ms/delivery"
            }
            line += "; RSS peak \(fmt(Double(s.peakRSSBytes) / 1_048_576, 1)) MiB (before \(fmt(Double(s.baselineRSSBytes) / 1_048_576, 1)))"
            if let n = perUser, n > 0 {
                let perUserKiB = (Double(s.peakRSSBytes) - Double(s.baselineRSSBytes)) / 1024 / Double(n)
                j["rss_kib_per_user"] = round3(perUserKiB)
                line += ", \(fmt(perUserKiB, 1)) KiB/user"
            }
            if s.processes > 1 { line += " [\(s.processes) processes]" }
            if !s.alive { line += " [EXITED]"; verdict.append("server pid \(s.pid) exited during the run") }
            row("server pid \(s.pid)", line)
            serverJSON.append(j)
            if judgeServerCPU && s.cpuSeconds / max(seconds, 0.001) >= 0.9 {
                verdict.append("server pid \(s.pid) used \(fmt(100 * s.cpuSeconds / seconds, 0))% of a core")
            }
        }
        json["server"] = serverJSON
        let pct = 100 * harnessCPU / max(seconds, 0.001)
        let perRequest = requests > 0 ? 1e6 * harnessCPU / Double(requests) : 0
        row("harness CPU", "\(fmt(harnessCPU, 1)) s (\(fmt(pct, 0))% of a core), \(requests) requests (\(fmt(perRequest, 0)) µs CPU each), max RSS \(fmt(Double(HarnessCPU.maxRSSBytes()) / 1_048_576, 0)) MiB")
        json["harness"] = ["cpu_s": round3(harnessCPU), "cpu_pct_of_core": round3(pct), "requests": requests,
                           "cpu_us_per_request": round3(perRequest),
                           "max_rss_mib": round3(Double(HarnessCPU.maxRSSBytes()) / 1_048_576)]
        if pct >= 80 {
            verdict.append("CLIENT-BOUND: the harness itself used \(fmt(pct, 0))% of a core")
        }
    }

    mutating func addErrors(_ tally: Tally) {
        let errors = tally.snapshot
        json["errors"] = errors
        if errors.isEmpty {
            row("errors", "none")
        } else {
            row("errors", errors.sorted { $0.value > $1.value }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        }
    }

    func print(jsonPath: String?) {
        let width = (rows.map(\.0.count).max() ?? 10) + 2
        printOut("")
        printOut("== myelin-bench \(scenario) ==")
        for (label, value) in rows {
            printOut(label.padding(toLength: width, withPad: " ", startingAt: 0) + value)
        }
        printOut("verdict".padding(toLength: width, withPad: " ", startingAt: 0) + verdictText)
        var j = json
        j["verdict"] = !verdict.isEmpty ? "overloaded" : closedLoop ? "capacity" : "ok"
        j["verdict_reasons"] = verdict
        if let jsonPath,
           let data = try? JSONSerialization.data(withJSONObject: j, options: [.sortedKeys]) {
            var line = data
            line.append(10)
            if let handle = FileHandle(forWritingAtPath: jsonPath) {
                handle.seekToEndOfFile()
                handle.write(line)
                try? handle.close()
            } else {
                _ = FileManager.default.createFile(atPath: jsonPath, contents: line)
            }
        }
    }
}

func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
