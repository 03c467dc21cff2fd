import Glibc
import TestSupport
import Testing
@testable import Transport

/// The limits that keep hostile peers from pinning connections or memory.
@Suite("Transport limits over real sockets", .serialized)
struct TransportLimitsTests {
    // MARK: Connections per peer

    @Test func connectionsPastThePerIPLimitAreRefused() async throws {
        try await withServer({ $0.maxConnectionsPerIP = 3 }) { server, port in
            var held = try (0..<3).map { _ in try RawClient(port: port) }
            for client in held {
                client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await client.read().status == 200)
            }
            let extra = try RawClient(port: port)
            extra.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await extra.closed())
            #expect(!String(decoding: extra.buffer, as: UTF8.self).contains("hello"))
            // Another address is not affected (all of 127/8 is this host).
            #expect(await status(from: "127.0.0.2", port: port) == 200)
            // The held connections keep working.
            for client in held {
                client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await client.read().text == "hello")
            }
            // A connection that closes frees its place.
            held.removeLast()
            #expect(await waitFor { server.openConnections == 2 })
            let again = try RawClient(port: port)
            again.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await again.read().text == "hello")
            #expect(server.peers.count(PeerConnectionTable.Key(high: 0, low: 0xFFFF_7F00_0001)) == 3)
        }
    }

    @Test func peerKeys() {
        func key(_ text: String) -> PeerConnectionTable.Key {
            var storage = sockaddr_storage()
            withUnsafeMutablePointer(to: &storage) { pointer in
                if text.contains(":") {
                    pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        $0.pointee.sin6_family = sa_family_t(AF_INET6)
                        _ = inet_pton(AF_INET6, text, &$0.pointee.sin6_addr)
                    }
                } else {
                    pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        $0.pointee.sin_family = sa_family_t(AF_INET)
                        _ = inet_pton(AF_INET, text, &$0.pointee.sin_addr)
                    }
                }
            }
            return PeerConnectionTable.key(storage)
        }
        #expect(key("10.1.2.3") == key("::ffff:10.1.2.3"))
        #expect(key("10.1.2.3") != key("10.1.2.4"))
        #expect(key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::7"))  // one /64
        #expect(key("2001:db8:1:2::1") != key("2001:db8:1:3::1"))
        #expect(key("::1") != key("0.0.0.1"))
    }
}

// MARK: Helpers

/// Polls `condition` every 50 ms for up to 10 s.
func waitFor(_ condition: () async -> Bool) async -> Bool {
    for _ in 0..<200 {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}

/// The status of `GET /hello` sent from the local address `source`; nil if none came.
func status(from source: String, port: Int) async -> Int? {
    (try? await blocking { () -> Int? in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func address(_ host: String, _ port: Int) -> sockaddr_in {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr(host)
            return address
        }
        var local = address(source, 0)
        var remote = address("127.0.0.1", port)
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        guard withUnsafePointer(to: &local, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }) == 0,
              withUnsafePointer(to: &remote, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) } }) == 0
        else { return nil }
        let request = Array("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: received, as: UTF8.self).contains("\r\n") {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            received.append(contentsOf: chunk[0..<n])
        }
        let parts = String(decoding: received, as: UTF8.self).split(separator: " ")
        return parts.count > 1 ? Int(parts[1]) : nil
    }) ?? nil
}
