/// HTTP request methods the server distinguishes. Anything else arrives as `.other`.
public enum HTTPMethod: Sendable, Hashable, CustomStringConvertible {
    case get, head, post, put, delete, options, patch
    case other(String)

    public init(_ name: String) {
        switch name {
        case "GET": self = .get
        case "HEAD": self = .head
        case "POST": self = .post
        case "PUT": self = .put
        case "DELETE": self = .delete
        case "OPTIONS": self = .options
        case "PATCH": self = .patch
        default: self = .other(name)
        }
    }

    /// From llhttp's method number (`llhttp_method_t`).
    init(llhttp number: UInt8, name: () -> String) {
        switch number {
        case 0: self = .delete
        case 1: self = .get
        case 2: self = .head
        case 3: self = .post
        case 4: self = .put
        case 6: self = .options
        case 28: self = .patch
        default: self = .other(name())
        }
    }

    public var description: String {
        switch self {
        case .get: return "GET"
        case .head: return "HEAD"
        case .post: return "POST"
        case .put: return "PUT"
        case .delete: return "DELETE"
        case .options: return "OPTIONS"
        case .patch: return "PATCH"
        case .other(let name): return name
        }
    }
}

/// An ordered list of header fields with case-insensitive lookup by name.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)]

    public init() { fields = [] }
    public init(_ fields: [(name: String, value: String)]) { self.fields = fields }
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    public subscript(name: String) -> String? {
        for field in fields where field.name.utf8.count == name.utf8.count && asciiCaseEqual(field.name, name) {
            return field.value
        }
        return nil
    }

    public func values(_ name: String) -> [String] {
        fields.filter { asciiCaseEqual($0.name, name) }.map(\.value)
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    /// Replaces every field named `name` with one field.
    public mutating func set(_ name: String, _ value: String) {
        fields.removeAll { asciiCaseEqual($0.name, name) }
        fields.append((name, value))
    }

    public mutating func remove(_ name: String) { fields.removeAll { asciiCaseEqual($0.name, name) } }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    public var count: Int { fields.count }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

@inline(__always)
func asciiCaseEqual(_ a: String, _ b: String) -> Bool {
    var ia = a.utf8.makeIterator()
    var ib = b.utf8.makeIterator()
    while true {
        switch (ia.next(), ib.next()) {
        case (nil, nil): return true
        case (let x?, let y?):
            if x == y { continue }
            let lx = (x >= 0x41 && x <= 0x5A) ? x | 0x20 : x
            let ly = (y >= 0x41 && y <= 0x5A) ? y | 0x20 : y
            if lx != ly { return false }
        default: return false
        }
    }
}

/// What a request's head says: method, target and headers, as parsed by the transport.
public struct HTTPRequestHead: Sendable {
    public var method: HTTPMethod
    /// The request target as sent: percent-encoded path, with `?query` if any.
    public var target: String
    public var headers: HTTPHeaders
    public var version: (major: Int, minor: Int)
    /// The declared body length, when `Content-Length` was sent.
    public var contentLength: Int?
    public var isChunked: Bool

    /// Where the query starts in `target` (its `?`), found once by a byte scan.
    let queryStart: String.Index?

    public init(method: HTTPMethod, target: String, headers: HTTPHeaders = HTTPHeaders(),
                version: (major: Int, minor: Int) = (1, 1), contentLength: Int? = nil, isChunked: Bool = false) {
        self.method = method
        self.target = target
        self.queryStart = target.utf8.firstIndex(of: UInt8(ascii: "?"))
        self.headers = headers
        self.version = version
        self.contentLength = contentLength
        self.isChunked = isChunked
    }

    /// The path part of the target, still percent-encoded.
    public var path: Substring {
        if let q = queryStart { return target[..<q] }
        return target[...]
    }

    /// The query part of the target (after `?`), still percent-encoded.
    public var query: Substring? {
        guard let q = queryStart else { return nil }
        return target[target.utf8.index(after: q)...]
    }
}

/// A request handed to a responder. Its body is either buffered whole (JSON endpoints)
/// or a stream of chunks consumed with backpressure (media uploads). A class: it crosses
/// several layers, and passing it costs one reference count instead of a copy of every field.
public final class HTTPRequest: Sendable {
    public let head: HTTPRequestHead
    public let body: RequestBody
    /// Peer address as text (`127.0.0.1`), for access logs and `last_seen_ip`.
    public let remoteAddress: String
    /// A short id carried into logs.
    public let requestID: UInt64

    public init(head: HTTPRequestHead, body: RequestBody = .buffered([]), remoteAddress: String = "", requestID: UInt64 = 0) {
        self.head = head
        self.body = body
        self.remoteAddress = remoteAddress
        self.requestID = requestID
    }

    public var method: HTTPMethod { head.method }
    public var headers: HTTPHeaders { head.headers }
}

/// The body of a request.
public enum RequestBody: Sendable {
    case buffered([UInt8])
    case stream(RequestBodyStream)

    /// Collects the whole body (for a stream, up to its limit).
    public func collect() async throws -> [UInt8] {
        switch self {
        case .buffered(let bytes): return bytes
        case .stream(let stream):
            var all: [UInt8] = []
            for try await chunk in stream { all.append(contentsOf: chunk) }
            return all
        }
    }
}

/// How the transport should take a request's body, decided from its head.
public enum BodyPolicy: Sendable {
    /// Read the whole body (at most `limit` bytes) before calling the responder.
    case buffer(limit: Int)
    /// Call the responder at once with a body stream of at most `limit` bytes.
    case stream(limit: Int)
}

/// A response: status, headers, and a body from bytes, a file, or an async sequence.
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Written as `Content-Type` (kept apart from `headers`: nearly every response has one).
    public var contentType: String?
    public var headers: HTTPHeaders
    public var body: ResponseBody

    public init(status: Int = 200, headers: HTTPHeaders = HTTPHeaders(), body: ResponseBody = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: Int = 200, contentType: String, bytes: [UInt8], headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = .bytes(bytes)
    }
}

/// A response body.
public enum ResponseBody: Sendable {
    case empty
    case bytes([UInt8])
    /// A file region read by the loop through libuv's file API (never blocking a thread of ours).
    case file(path: String, offset: Int64 = 0, length: Int64)
    /// Chunks from an async sequence; `length` when known (else chunked transfer encoding).
    case stream(length: Int64?, chunks: AsyncThrowingStream<[UInt8], any Error>)
}

/// The transport's errors that the responder renders (the transport knows nothing of Matrix).
public enum TransportError: Sendable, Equatable {
    case badRequest(String)
    case headersTooLarge
    case bodyTooLarge
    case timeout
}

/// The seam between the transport and the application: one method per request.
public protocol HTTPResponder: Sendable {
    /// How to read the body of a request with this head.
    func bodyPolicy(for head: HTTPRequestHead) -> BodyPolicy
    /// Answers a request. Runs on Swift's concurrency pool, never on a loop thread.
    func respond(to request: HTTPRequest) async -> HTTPResponse
    /// The response for a request the transport refused (bad syntax, limits). Called on a loop
    /// thread: it must not block or await.
    func errorResponse(_ error: TransportError) -> HTTPResponse
    /// The same, knowing the peer's address (for a responder that keeps a reputation per
    /// address); by default `errorResponse(_:)`. Loop thread: must not block or await.
    func errorResponse(_ error: TransportError, remoteAddress: String) -> HTTPResponse
}

extension HTTPResponder {
    public func errorResponse(_ error: TransportError, remoteAddress: String) -> HTTPResponse { errorResponse(error) }
    public func bodyPolicy(for head: HTTPRequestHead) -> BodyPolicy { .buffer(limit: 8 << 20) }
    public func errorResponse(_ error: TransportError) -> HTTPResponse {
        switch error {
        case .badRequest: return HTTPResponse(status: 400, contentType: "text/plain", bytes: Array("Bad Request".utf8))
        case .headersTooLarge: return HTTPResponse(status: 431, contentType: "text/plain", bytes: Array("Request Header Fields Too Large".utf8))
        case .bodyTooLarge: return HTTPResponse(status: 413, contentType: "text/plain", bytes: Array("Payload Too Large".utf8))
        case .timeout: return HTTPResponse(status: 408, contentType: "text/plain", bytes: Array("Request Timeout".utf8))
        }
    }
}

/// Reason phrases for the status line.
func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Continue"
    case 200: return "OK"
    case 201: return "Created"
    case 202: return "Accepted"
    case 204: return "No Content"
    case 206: return "Partial Content"
    case 301: return "Moved Permanently"
    case 302: return "Found"
    case 304: return "Not Modified"
    case 307: return "Temporary Redirect"
    case 308: return "Permanent Redirect"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 408: return "Request Timeout"
    case 409: return "Conflict"
    case 411: return "Length Required"
    case 413: return "Payload Too Large"
    case 415: return "Unsupported Media Type"
    case 416: return "Range Not Satisfiable"
    case 417: return "Expectation Failed"
    case 429: return "Too Many Requests"
    case 431: return "Request Header Fields Too Large"
    case 500: return "Internal Server Error"
    case 501: return "Not Implemented"
    case 502: return "Bad Gateway"
    case 503: return "Service Unavailable"
    case 504: return "Gateway Timeout"
    default: return "Status"
    }
}
