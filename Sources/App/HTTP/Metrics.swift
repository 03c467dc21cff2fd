import Synchronization
import Transport

/// Request counters served in Prometheus' text format at `metrics.path` when
/// `metrics.enabled` is true. Updated by `MyelinApp.respond` on every request.
final class Metrics: Sendable {
    private let requests = Atomic<Int>(0)
    private let inFlight = Atomic<Int>(0)
    private let latencyMicros = Atomic<Int>(0)
    // Responses by status class.
    private let c1 = Atomic<Int>(0), c2 = Atomic<Int>(0), c3 = Atomic<Int>(0), c4 = Atomic<Int>(0), c5 = Atomic<Int>(0)

    func begin() { inFlight.wrappingAdd(1, ordering: .relaxed) }

    func end(status: Int, micros: Int) {
        inFlight.wrappingSubtract(1, ordering: .relaxed)
        requests.wrappingAdd(1, ordering: .relaxed)
        latencyMicros.wrappingAdd(micros, ordering: .relaxed)
        switch status / 100 {
        case 1: c1.wrappingAdd(1, ordering: .relaxed)
        case 2: c2.wrappingAdd(1, ordering: .relaxed)
        case 3: c3.wrappingAdd(1, ordering: .relaxed)
        case 4: c4.wrappingAdd(1, ordering: .relaxed)
        default: c5.wrappingAdd(1, ordering: .relaxed)
        }
    }

    func render(openConnections: Int) -> String {
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
        out += "# HELP myelin_http_open_connections Open client connections.\n# TYPE myelin_http_open_connections gauge\n"
        out += "myelin_http_open_connections \(openConnections)\n"
        return out
    }
}
