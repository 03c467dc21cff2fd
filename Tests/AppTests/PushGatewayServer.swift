import Matrix
import Synchronization
import Transport
@testable import App

/// A push gateway for tests: answers `POST /_matrix/push/v1/notify` on 127.0.0.1, keeping
/// each notification it accepted; it can fail requests (as a gateway that is down) or reject
/// push keys (the push gateway API's `rejected`).
final class PushGatewayResponder: HTTPResponder {
    struct Behaviour {
        /// Requests answered 503 before the gateway starts accepting.
        var failNext = 0
        var rejected: [String] = []
    }

    let behaviour = Mutex(Behaviour())
    /// The `notification` objects accepted, in arrival order.
    let received = Mutex<[JSON]>([])
    let requests = Atomic<Int>(0)

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        guard request.method == .post, request.head.path == "/_matrix/push/v1/notify" else {
            return HTTPResponse(status: 404, contentType: "application/json", bytes: Array("{}".utf8))
        }
        requests.add(1, ordering: .relaxed)
        let body = (try? await request.body.collect()) ?? []
        let fail = behaviour.withLock { behaviour -> Bool in
            guard behaviour.failNext > 0 else { return false }
            behaviour.failNext -= 1
            return true
        }
        if fail { return HTTPResponse(status: 503, contentType: "application/json", bytes: Array("{}".utf8)) }
        guard let json = try? JSON.parse(body), let notification = json["notification"] else {
            return HTTPResponse(status: 400, contentType: "application/json", bytes: Array("{}".utf8))
        }
        received.withLock { $0.append(notification) }
        let pushkeys = notification["devices"]?.arrayValue?.compactMap { $0["pushkey"]?.stringValue } ?? []
        let rejected = behaviour.withLock { $0.rejected }.filter(pushkeys.contains)
        let answer: JSON = ["rejected": .array(rejected.map(JSON.string))]
        return HTTPResponse(status: 200, contentType: "application/json", bytes: answer.encoded())
    }

    var notifications: [JSON] { received.withLock { $0 } }

    /// Waits (polling, generously) until at least `count` notifications arrived; returns them.
    func waitFor(_ count: Int, seconds: Int = 60) async throws -> [JSON] {
        for _ in 0..<(seconds * 20) {
            let now = notifications
            if now.count >= count { return now }
            try await Task.sleep(for: .milliseconds(50))
        }
        return notifications
    }
}

/// Runs a push gateway on 127.0.0.1 (`port` 0: any free one) for `body`.
func withPushGateway(port: Int = 0, _ body: (PushGatewayResponder, Int) async throws -> Void) async throws {
    let responder = PushGatewayResponder()
    try await withPushGateway(responder, port: port) { try await body(responder, $0) }
}

func withPushGateway(_ responder: PushGatewayResponder, port: Int = 0, _ body: (Int) async throws -> Void) async throws {
    let server = HTTPServer(configuration: TransportConfiguration(loops: 1, host: "127.0.0.1", port: port), responder: responder)
    let bound = try await server.start()
    do { try await body(bound) } catch {
        server.shutdown()
        await server.waitUntilStopped()
        throw error
    }
    server.shutdown()
    await server.waitUntilStopped()
}
