/// One request in flight on the client loop: the continuation awaiting its response head,
/// then the continuation of its body stream. Loop thread only.
final class ClientExchange {
    let request: HTTPClientRequest
    let bytes: [UInt8]
    private var head: CheckedContinuation<HTTPClientResponse, any Error>?
    private var body: AsyncThrowingStream<[UInt8], any Error>.Continuation?
    private var stream: AsyncThrowingStream<[UInt8], any Error>?
    /// Body bytes received so far (against `maxResponseBytes`).
    var received = 0
    /// Retried once on a fresh connection when a reused one closed before answering.
    var retried = false

    init(request: HTTPClientRequest, continuation: CheckedContinuation<HTTPClientResponse, any Error>) {
        self.request = request
        head = continuation
        bytes = ClientExchange.serialize(request)
        let (stream, body) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        self.stream = stream
        self.body = body
    }

    var isHead: Bool { request.method == .head }
    var awaitingHead: Bool { head != nil }
    var finished: Bool { head == nil && body == nil }

    /// Methods that may be sent twice (RFC 9110 9.2.2): only these are retried.
    var idempotent: Bool {
        switch request.method {
        case .get, .head, .put, .delete, .options: return true
        default: return false
        }
    }

    func deliverHead(status: Int, headers: HTTPHeaders) {
        guard let head, let stream else { return }
        self.head = nil
        self.stream = nil
        head.resume(returning: HTTPClientResponse(status: status, headers: headers, body: HTTPClientBody(stream: stream)))
    }

    func deliver(_ chunk: [UInt8]) { body?.yield(chunk) }

    func finish() {
        body?.finish()
        body = nil
    }

    func fail(_ error: HTTPClientError) {
        if let head {
            self.head = nil
            head.resume(throwing: error)
        }
        body?.finish(throwing: error)
        body = nil
    }

    static func serialize(_ request: HTTPClientRequest) -> [UInt8] {
        var text = "\(request.method) \(request.target) HTTP/1.1\r\n"
        if !request.headers.contains("Host") { text += "Host: \(request.defaultHostHeader)\r\n" }
        for field in request.headers.fields where !asciiEqual(field.name, "content-length") {
            // Header injection: a CR or LF in a caller's field would end the head.
            guard !field.name.utf8.contains(where: { $0 == 13 || $0 == 10 }),
                  !field.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) else { continue }
            text += "\(field.name): \(field.value)\r\n"
        }
        if let body = request.body {
            text += "Content-Length: \(body.count)\r\n"
        } else if request.method == .post || request.method == .put {
            text += "Content-Length: 0\r\n"
        }
        text += "\r\n"
        var bytes = Array(text.utf8)
        if let body = request.body { bytes += body }
        return bytes
    }

    private static func asciiEqual(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { x, y in
            ((x >= 0x41 && x <= 0x5A) ? x | 0x20 : x) == y
        }
    }
}
