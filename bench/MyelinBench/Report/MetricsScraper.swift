import Synchronization

/// Scrapes a Prometheus text page (`--metrics-url`, e.g. Myelin's `metrics.path`, which needs
/// no token) once per table interval and turns two consecutive scrapes into that interval's
/// server-side figures: actor activations/s and evictions/s and resident actors per pool, and
/// the interval p50/p99 of every `*_seconds` histogram (from bucket differences), so a new
/// histogram on the server shows up in the report without harness changes.
final class MetricsScraper: Sendable {
    let url: String
    private let path: String
    private let http: HTTPClient
    private let connection: ClientConnection
    private let state = Mutex<(first: Scrape?, last: Scrape?, failures: Int, residentMax: [String: Double])>((nil, nil, 0, [:]))

    struct Scrape: Sendable {
        var nanos: UInt64
        var page: PrometheusText
    }

    init(url: String) throws {
        let (host, port) = try parseServerURL(url)
        let address = try SocketAddress.resolve(host: host, port: port)
        var rest = url.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[slash...] } else { rest = "/" }
        path = String(rest)
        self.url = url
        http = HTTPClient(address: address, loops: 1)
        connection = http.makeConnection()
    }

    func stop() { http.stop() }

    /// One GET; nil (and a failure counted) when the page does not answer 200.
    func scrape() async -> Scrape? {
        let bytes = http.requestBytes(method: "GET", path: path, token: nil, body: nil)
        let result = await connection.execute(bytes, timeout: 10)
        guard case .success(let response) = result, response.status == 200 else {
            state.withLock { $0.failures += 1 }
            return nil
        }
        let scrape = Scrape(nanos: monotonicNanos(), page: PrometheusText(parsing: String(decoding: response.body, as: UTF8.self)))
        state.withLock { s in
            if s.first == nil { s.first = scrape }
            s.last = scrape
            for (k, v) in Self.resident(scrape.page) { s.residentMax[k] = max(s.residentMax[k] ?? 0, v) }
        }
        return scrape
    }

    static let pools = ["rooms", "sessions", "notifiers", "pushers", "federation_destinations", "media_uploads"]

    static func resident(_ page: PrometheusText) -> [String: Double] {
        var out: [String: Double] = [:]
        for pool in pools {
            if let v = page.value("myelin_actors_resident", ["kind": pool]) { out["\(pool)_resident"] = v }
        }
        return out
    }

    /// The figures between two scrapes: `<pool>_activations_per_s`, `<pool>_evictions_per_s`,
    /// `<pool>_resident` (at the later scrape), `long_polls`, and `<histogram> p50_ms` /
    /// `p99_ms` / `per_s` for every `*_seconds` histogram that counted something in between.
    static func figures(from earlier: Scrape, to later: Scrape) -> [String: Double] {
        let dt = Double(later.nanos &- earlier.nanos) / 1e9
        guard dt > 0 else { return [:] }
        var out = resident(later.page)
        for pool in pools {
            for (counter, key) in [("myelin_actor_activations_total", "activations_per_s"),
                                   ("myelin_actor_evictions_total", "evictions_per_s"),
                                   ("myelin_actor_deactivations_total", "deactivations_per_s"),
                                   ("myelin_actor_idle_deactivations_total", "idle_deactivations_per_s")] {
                if let b = later.page.value(counter, ["kind": pool]) {
                    let a = earlier.page.value(counter, ["kind": pool]) ?? 0
                    out["\(pool)_\(key)"] = max(0, b - a) / dt
                }
            }
        }
        if let polls = later.page.value("myelin_sync_long_polls") { out["long_polls"] = polls }
        let before = earlier.page.secondsHistograms()
        for (key, h) in later.page.secondsHistograms() {
            let d = h.minus(before[key])
            out["\(key) per_s"] = d.count / dt
            if let p50 = d.quantile(0.5), let p99 = d.quantile(0.99) {
                out["\(key) p50_ms"] = p50 * 1000
                out["\(key) p99_ms"] = p99 * 1000
            }
        }
        return out.filter { $0.value.isFinite }
    }

    /// The whole run: the first scrape to the last, with each pool's highest resident count.
    func summary() -> (figures: [String: Double], failures: Int)? {
        state.withLock { s in
            guard let first = s.first, let last = s.last else { return s.failures > 0 ? ([:], s.failures) : nil }
            var f = Self.figures(from: first, to: last)
            for (k, v) in s.residentMax { f[k + "_max"] = v }
            return (f, s.failures)
        }
    }
}

/// One row of the running table, kept for the JSON line and the HTML report.
struct IntervalSample: Sendable {
    var t: Double                 // seconds since the measured phase began
    var sentPerS: Double
    var ackedPerS: Double
    var deliveriesPerS: Double
    var deliveryP50Ms: Double?
    var deliveryP90Ms: Double?
    var deliveryP99Ms: Double?
    var polls: Int
    var errors: Int
    var serverCPUPct: Double?
    var serverRSSMiB: Double?
    var harnessCPUPct: Double
    var server: [String: Double] = [:]   // scraped (`--metrics-url`)

    var json: [String: Any] {
        var j: [String: Any] = ["t": round3(t), "sent_per_s": round3(sentPerS), "acked_per_s": round3(ackedPerS),
                                "deliveries_per_s": round3(deliveriesPerS), "polls": polls, "errors": errors,
                                "harness_cpu_pct": round3(harnessCPUPct)]
        if let deliveryP50Ms { j["delivery_p50_ms"] = deliveryP50Ms }
        if let deliveryP90Ms { j["delivery_p90_ms"] = deliveryP90Ms }
        if let deliveryP99Ms { j["delivery_p99_ms"] = deliveryP99Ms }
        if let serverCPUPct { j["server_cpu_pct"] = round3(serverCPUPct) }
        if let serverRSSMiB { j["server_rss_mib"] = round3(serverRSSMiB) }
        if !server.isEmpty { j["server_metrics"] = server.mapValues { round3($0) } }
        return j
    }
}
