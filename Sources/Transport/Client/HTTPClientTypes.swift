/// One request for `HTTPClient`: where to connect (`host`, resolved and checked against the
/// blacklist, and `port`), what to send, and for HTTPS the name TLS verifies and sends as SNI.
public struct HTTPClientRequest: Sendable {
    public enum Scheme: String, Sendable, Hashable { case http, https }

    public var method: HTTPMethod
    public var scheme: Scheme
    /// A host name or an IP literal (IPv6 without brackets).
    public var host: String
    public var port: Int
    /// The request target: path and query, percent-encoded.
    public var target: String
    /// Sent as given; `Host` defaults to `host[:port]`, `Content-Length` is set from `body`.
    public var headers: HTTPHeaders
    public var body: [UInt8]?
    /// The name TLS sends as SNI and verifies the certificate for (HTTPS only); nil: `host`
    /// when it is a name, none for an IP literal.
    public var tlsServerName: String?
    /// A lower body limit than the client's `maxResponseBytes` for this request.
    public var maxResponseBytes: Int?

    public init(method: HTTPMethod = .get, scheme: Scheme = .https, host: String, port: Int? = nil,
                target: String = "/", headers: HTTPHeaders = HTTPHeaders(), body: [UInt8]? = nil,
                tlsServerName: String? = nil) {
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port ?? (scheme == .https ? 443 : 80)
        self.target = target
        self.headers = headers
        self.body = body
        self.tlsServerName = tlsServerName
    }

    /// From an absolute `http(s)://host[:port]/path?query` URL; nil when it is not one.
    public init?(method: HTTPMethod = .get, url: String, headers: HTTPHeaders = HTTPHeaders()) {
        let lower = url.lowercased()
        let scheme: Scheme
        var rest: Substring
        if lower.hasPrefix("https://") { scheme = .https; rest = url.dropFirst(8) }
        else if lower.hasPrefix("http://") { scheme = .http; rest = url.dropFirst(7) }
        else { return nil }
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<end]
        rest = rest[end...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        guard !authority.contains("@"), let (host, port) = HTTPClientRequest.splitAuthority(authority) else { return nil }
        var target = String(rest)
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        self.init(method: method, scheme: scheme, host: host, port: port, target: target, headers: headers)
    }

    /// `host`, `host:port`, `[v6]` or `[v6]:port`; the port 1...65535.
    public static func splitAuthority(_ authority: Substring) -> (host: String, port: Int?)? {
        guard !authority.isEmpty, authority.utf8.count <= 255 else { return nil }
        var host: Substring
        var portText: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
            guard IPAddress(String(host)) != nil else { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { return nil }
        guard let portText else { return (String(host), nil) }
        guard (1...5).contains(portText.count), portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(portText), (1...65535).contains(port) else { return nil }
        return (String(host), port)
    }

    var isIPLiteral: Bool { IPAddress(host) != nil }

    /// `Host` as it goes on the wire when the caller did not set one.
    var defaultHostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        let defaultPort = scheme == .https ? 443 : 80
        return port == defaultPort ? name : "\(name):\(port)"
    }
}

/// A response whose head has arrived; its body streams in `body` as the bytes arrive.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: HTTPClientBody
}

/// A response read completely (bounded by the client's `maxResponseBytes`).
public struct HTTPClientBufferedResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
}

/// The body of a response as chunks of bytes, in order; throws `HTTPClientError` when the
/// response fails midway (read timeout, size limit, connection closed early).
public struct HTTPClientBody: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let stream: AsyncThrowingStream<[UInt8], any Error>

    public func makeAsyncIterator() -> AsyncThrowingStream<[UInt8], any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Every chunk, concatenated.
    public func collect() async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await chunk in stream { bytes += chunk }
        return bytes
    }
}

/// Why the client got no (complete) response.
public struct HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Every address of the host is blacklisted (or the host resolved to none allowed).
        case blacklisted
        /// The name did not resolve.
        case resolutionFailed
        /// No address accepted a connection.
        case connectFailed
        case connectTimeout
        /// No byte arrived for `readTimeoutMs`.
        case readTimeout
        /// The head or the body exceeded the limits.
        case tooLarge
        /// Not an HTTP/1.x response, or it ended early.
        case invalidResponse
        /// TLS was asked for but this client has no TLS, or the handshake/verification failed.
        case tls
        case tooManyRedirects
        /// The client was shut down.
        case shutDown
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String = "") {
        self.kind = kind
        self.message = message
    }

    public var description: String { message.isEmpty ? "\(kind)" : "\(kind): \(message)" }
}

/// The client's limits and policy, fixed at construction.
public struct HTTPClientConfiguration: Sendable {
    public var maxConnectionsPerHost = 8
    public var maxConnections = 256
    public var connectTimeoutMs: UInt64 = 10_000
    /// The longest silence while waiting for (more of) a response.
    public var readTimeoutMs: UInt64 = 60_000
    /// An idle kept-alive connection is closed after this long.
    public var idleTimeoutMs: UInt64 = 60_000
    /// Body bytes of one response.
    public var maxResponseBytes = 50 * 1024 * 1024
    /// Status line and header bytes of one response.
    public var maxHeaderBytes = 64 * 1024
    public var blacklist = IPBlacklist()
    /// HTTPS: the system store plus extra CA files, or no verification (test set-ups).
    public var tlsVerification = TLSVerification.verify(extraCAFiles: [])

    public init() {}
}
