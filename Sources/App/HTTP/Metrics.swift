import Persistence
import Synchronization
import Transport

/// Request counters and a latency histogram, updated by `MyelinApp.respond` on every
/// request with relaxed atomics (no lock, no allocation). Served in Prometheus' text format
/// at `metrics.path` when `metrics.enabled` is true, and read by the operators' runtime
/// endpoint (`/_myelin/admin/api/runtime`, `Admin/AdminRuntime.swift`).
final class Metrics: Sendable {
    private let requests = Atomic<Int>(0)
    private let inFlight = Atomic<Int>(0)
    private let latencyMicros = Atomic<Int>(0)
    // Responses by status class.
    private let c1 = Atomic<Int>(0), c2 = Atomic<Int>(0), c3 = Atomic<Int>(0), c4 = Atomic<Int>(0), c5 = Atomic<Int>(0)
    /// Requests by handler time: bucket `i` counts times up to `bucketBounds[i]` µs; the last
    /// one counts the rest.
    private let buckets = InlineArray<24, Atomic<Int>> { _ in Atomic(0) }

    /// Upper bounds of the latency buckets in microseconds: 1-2-5 steps from 50 µs to 10 s
    /// (a p99 read from them is exact to within one step).
    static let bucketBounds: [Int] = [
        50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
        500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 30_000_000,
        60_000_000, 120_000_000, 300_000_000, 600_000_000,
    ]

    func begin() { inFlight.wrappingAdd(1, ordering: .relaxed) }

    func end(status: Int, micros: Int) {
        inFlight.wrappingSubtract(1, ordering: .relaxed)
        requests.wrappingAdd(1, ordering: .relaxed)
        latencyMicros.wrappingAdd(micros, ordering: .relaxed)
        buckets[Self.bucket(forMicros: micros)].wrappingAdd(1, ordering: .relaxed)
        switch status / 100 {
        case 1: c1.wrappingAdd(1, ordering: .relaxed)
        case 2: c2.wrappingAdd(1, ordering: .relaxed)
        case 3: c3.wrappingAdd(1, ordering: .relaxed)
        case 4: c4.wrappingAdd(1, ordering: .relaxed)
        default: c5.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// The bucket of a handler time (binary search over 23 bounds).
    static func bucket(forMicros micros: Int) -> Int {
        var low = 0, high = bucketBounds.count
        while low < high {
            let mid = (low + high) / 2
            if micros <= bucketBounds[mid] { high = mid } else { low = mid + 1 }
        }
        return low
    }

    /// A consistent-enough copy of the counters (each read is relaxed; the page and the
    /// runtime endpoint compute rates from two of these).
    struct Snapshot: Sendable {
        var requests: Int
        var inFlight: Int
        var latencyMicros: Int
        var buckets: [Int]

        /// The bound of the bucket holding the `quantile` of the requests counted in
        /// `buckets` (µs); nil with no request. Past the last bound: the last bound.
        static func quantile(_ quantile: Double, of buckets: [Int]) -> Int? {
            let total = buckets.reduce(0, +)
            guard total > 0 else { return nil }
            let rank = max(1, Int((Double(total) * quantile).rounded(.up)))
            var seen = 0
            for (index, count) in buckets.enumerated() {
                seen += count
                if seen >= rank { return Metrics.bucketBounds[min(index, Metrics.bucketBounds.count - 1)] }
            }
            return Metrics.bucketBounds.last
        }
    }

    func snapshot() -> Snapshot {
        var counts: [Int] = []
        counts.reserveCapacity(Self.bucketBounds.count + 1)
        for index in 0...Self.bucketBounds.count { counts.append(buckets[index].load(ordering: .relaxed)) }
        return Snapshot(requests: requests.load(ordering: .relaxed), inFlight: inFlight.load(ordering: .relaxed),
                        latencyMicros: latencyMicros.load(ordering: .relaxed), buckets: counts)
    }

    /// The Prometheus page; `runtime` adds the actor pools and long-polls (`AdminRuntime`).
    func render(openConnections: Int, runtime: String = "") -> String {
        var out = ""
        out += "# HELP myelin_http_requests_total Requests answered.\n# TYPE myelin_http_requests_total counter\n"
        out += "myelin_http_requests_total \(requests.load(ordering: .relaxed))\n"
        out += "# HELP myelin_http_responses_total Responses by status class.\n# TYPE myelin_http_responses_total counter\n"
        let classes = [("1xx", c1.load(ordering: .relaxed)), ("2xx", c2.load(ordering: .relaxed)), ("3xx", c3.load(ordering: .relaxed)),
                       ("4xx", c4.load(ordering: .relaxed)), ("5xx", c5.load(ordering: .relaxed))]
        for (label, count) in classes {
            out += "myelin_http_responses_total{class=\"\(label)\"} \(count)\n"
        }
        out += "# HELP myelin_http_requests_in_flight Requests being handled.\n# TYPE myelin_http_requests_in_flight gauge\n"
        out += "myelin_http_requests_in_flight \(inFlight.load(ordering: .relaxed))\n"
        out += "# HELP myelin_http_request_duration_microseconds_total Handler time, summed.\n# TYPE myelin_http_request_duration_microseconds_total counter\n"
        out += "myelin_http_request_duration_microseconds_total \(latencyMicros.load(ordering: .relaxed))\n"
        // The same histogram in seconds, cumulative as Prometheus wants it.
        let snap = snapshot()
        out += "# HELP myelin_http_request_duration_seconds Handler time.\n# TYPE myelin_http_request_duration_seconds histogram\n"
        var cumulative = 0
        for (index, bound) in Self.bucketBounds.enumerated() {
            cumulative += snap.buckets[index]
            out += "myelin_http_request_duration_seconds_bucket{le=\"\(StoreHistogram.seconds(micros: bound))\"} \(cumulative)\n"
        }
        cumulative += snap.buckets[Self.bucketBounds.count]
        out += "myelin_http_request_duration_seconds_bucket{le=\"+Inf\"} \(cumulative)\n"
        out += "myelin_http_request_duration_seconds_sum \(StoreHistogram.seconds(micros: snap.latencyMicros))\n"
        out += "myelin_http_request_duration_seconds_count \(cumulative)\n"
        out += "# HELP myelin_http_open_connections Open client connections.\n# TYPE myelin_http_open_connections gauge\n"
        out += "myelin_http_open_connections \(openConnections)\n"
        out += runtime
        return out
    }
}
