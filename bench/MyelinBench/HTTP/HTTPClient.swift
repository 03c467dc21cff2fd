#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Requests the harness completed (a response or a failure), for its cost per request.
let completedRequests = Atomic<Int>(0)

/// The harness's HTTP client: a few epoll `ClientLoop`s on their own threads, and the
/// keep-alive connections spread over them round-robin. Created once per run.
final class HTTPClient: Sendable {
    let loops: [ClientLoop]
    let address: SocketAddress
    private let next = Atomic<Int>(0)

    init(address: SocketAddress, loops count: Int) {
        self.address = address
        loops = (0..<max(1, count)).map { ClientLoop(address: address, name: "bench-loop-\($0)") }
    }

    func makeConnection() -> ClientConnection {
        let i = next.add(1, ordering: .relaxed).oldValue
        return ClientConnection(loop: loops[i % loops.count])
    }

    /// Stops the loops; requests still waiting resume with `.cancelled`.
    func stop() {
        for loop in loops { loop.stop() }
    }

    /// Serialises a request. `path` already carries its query string, percent-encoded.
    func requestBytes(method: String, path: String, token: String?, body: [UInt8]?) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address.hostHeader)\r\nUser-Agent: myelin-bench\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        } else if method == "POST" || method == "PUT" {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if let body { bytes.append(contentsOf: body) }
        return bytes
    }
}

/// Parses `http://host:port` (the harness speaks plain HTTP; put a TLS terminator's plain
/// side or the server's loopback listener here).
func parseServerURL(_ url: String) throws -> (host: String, port: Int) {
    guard url.hasPrefix("http://") else {
        throw BenchError("--url must be http://HOST:PORT (plain HTTP), got \(url)")
    }
    var rest = url.dropFirst("http://".count)
    if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
    if rest.hasPrefix("[") {
        guard let close = rest.firstIndex(of: "]") else { throw BenchError("bad IPv6 address in \(url)") }
        let host = String(rest[rest.index(after: rest.startIndex)..<close])
        let portPart = rest[rest.index(after: close)...]
        let port = portPart.hasPrefix(":") ? Int(portPart.dropFirst()) : 80
        guard let port else { throw BenchError("bad port in \(url)") }
        return (host, port)
    }
    let parts = rest.split(separator: ":")
    guard let hostPart = parts.first else { throw BenchError("no host in \(url)") }
    let port = parts.count > 1 ? Int(parts[1]) : 80
    guard let port, parts.count <= 2 else { throw BenchError("bad port in \(url)") }
    return (String(hostPart), port)
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters kept).
func percentEncode(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
             UInt8(ascii: "."), UInt8(ascii: "~"):
            out.unicodeScalars.append(UnicodeScalar(b))
        default:
            let hex = Array("0123456789ABCDEF".utf8)
            out += "%"
            out.unicodeScalars.append(UnicodeScalar(hex[Int(b >> 4)]))
            out.unicodeScalars.append(UnicodeScalar(hex[Int(b & 15)]))
        }
    }
    return out
}
