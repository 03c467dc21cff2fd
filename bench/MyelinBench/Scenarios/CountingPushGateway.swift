import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A push gateway for `fanout --pushers`: listens on 127.0.0.1, answers every HTTP/1.1 request
/// (keep-alive, `Content-Length` bodies) with `200 {"rejected":[]}` and counts them. One
/// blocking thread per connection: the server's pusher client keeps a handful open, and the
/// work per request is a few bytes.
final class CountingPushGateway: @unchecked Sendable {  // the listening socket is read-only after init
    let port: Int
    /// Requests answered (each is one notification: the push gateway API sends one per event).
    let requests = Atomic<Int>(0)
    private let listener: Int32

    init() throws {
        let fd = socket(AF_INET, 1 /* SOCK_STREAM on Linux; not visible next to Foundation here */, 0)
        guard fd >= 0 else { throw GatewayError("socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 512) == 0 else {
            close(fd)
            throw GatewayError("bind/listen failed")
        }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    struct GatewayError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    var url: String { "http://127.0.0.1:\(port)/_matrix/push/v1/notify" }

    func start() {
        let listener = self.listener
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { if errno == EINTR { continue }; return }
                Thread.detachNewThread { [self] in serve(client) }
            }
        }
    }

    private static let answer: [UInt8] = {
        let body = #"{"rejected":[]}"#
        return Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }()

    private func serve(_ client: Int32) {
        defer { close(client) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
            while let end = Self.headEnd(buffer) {
                let length = Self.contentLength(buffer[0..<end])
                guard buffer.count >= end + 4 + length else { break }
                buffer.removeFirst(end + 4 + length)
                requests.add(1, ordering: .relaxed)
                let written = Self.answer.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                if written != Self.answer.count { return }
            }
        }
    }

    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    private static func contentLength(_ head: ArraySlice<UInt8>) -> Int {
        for line in String(decoding: head, as: UTF8.self).split(separator: "\r\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                return min(max(Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0, 0), 1 << 20)
            }
        }
        return 0
    }
}
