import Glibc
import TestSupport
import Testing
@testable import Transport

/// The limits that keep hostile peers from pinning connections or memory: the absolute body
/// deadline, output backpressure with its write-stall timeout, and the per-peer connection limit.
@Suite("Transport limits over real sockets", .serialized)
struct TransportLimitsTests {
    // MARK: Body deadline

    @Test func bodyDeadlineIsNotResetByEachRead() async throws {
        // Default minimum rate: a byte at a time earns nothing (credit is rounded down per read).
        try await withServer({ $0.bodyReadTimeoutMs = 500 }) { _, port in
            let client = try RawClient(port: port)
            client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            // A byte every 100 ms: each read used to restart a 500 ms timer, so this went on
            // for the whole 10 s.
            let sent = await trickle(client, pieces: Array(repeating: [0x61], count: 100), intervalMs: 100)
            #expect(sent < 40)
            #expect(try await client.read().status == 408)
            #expect(await client.closed())
        }
    }

    @Test func uploadAnsweredUnreadAndAbandonedIsClosedAtTheDeadline() async throws {
        try await withServer({ $0.bodyReadTimeoutMs = 500; $0.minBodyBytesPerSecond = 0 }) { server, port in
            // An unauthenticated upload declares 50 MiB, sends 300 KiB and goes silent. Its
            // handler refuses it without reading: the unread body used to stop the connection
            // reading with no deadline, for ever.
            let refused = try RawClient(port: port)
            refused.send("POST /upload-refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n")
            await refused.sendAsync([UInt8](repeating: 0x62, count: 300 * 1024))
            #expect(try await refused.read().status == 401)
            #expect(await refused.closed())
            // The same upload to a handler that reads it: the body never completes either.
            let silent = try RawClient(port: port)
            silent.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n")
            await silent.sendAsync([UInt8](repeating: 0x62, count: 300 * 1024))
            #expect(await silent.closed())
            #expect(await waitFor { server.openConnections == 0 })
        }
    }

    @Test func uploadAnsweredEarlyKeepsTheConnectionOnceItsBodyArrives() async throws {
        try await withServer({ $0.bodyReadTimeoutMs = 2000 }) { _, port in
            let client = try RawClient(port: port)
            client.send("POST /upload-refuse HTTP/1.1\r\nHost: x\r\nContent-Length: \(600 * 1024)\r\n\r\n")
            await client.sendAsync([UInt8](repeating: 0x62, count: 600 * 1024))
            #expect(try await client.read().status == 401)
            // The rest was read and dropped: the next request on the connection is served.
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().text == "hello")
        }
    }

    @Test func slowConsumerOfAStreamedBodyIsNotChargedToThePeer() async throws {
        // No credit for bytes: only the pauses of the server are forgiven. The handler waits
        // 4 s before reading and then needs several seconds more; the deadline is 2.5 s (far
        // from the half second a loaded machine once left the in-process client unscheduled).
        try await withServer({ $0.bodyReadTimeoutMs = 2500; $0.minBodyBytesPerSecond = 0 }) { _, port in
            let client = try RawClient(port: port, timeoutSeconds: 60)
            let size = 4 << 20
            client.send("POST /upload-slower HTTP/1.1\r\nHost: x\r\nContent-Length: \(size)\r\n\r\n")
            await client.sendAsync([UInt8](repeating: 1, count: size))
            let response = try await client.read()
            #expect(response.status == 200)
            #expect(response.text == "\(size)")
        }
    }

    @Test func timeTheServerStoppedReadingIsGivenBackToThePeer() async throws {
        try await withServer({ $0.bodyReadTimeoutMs = 1000; $0.minBodyBytesPerSecond = 0 }) { _, port in
            let client = try RawClient(port: port)
            client.send("POST /upload-slow HTTP/1.1\r\nHost: x\r\nContent-Length: \(400 * 1024)\r\n\r\n")
            // 300 KiB stop the server reading until its handler starts, 0.8 s later. The rest
            // comes 1.3 s after the head: past 1 s, but within 1 s of time spent reading.
            let pieces = [[UInt8](repeating: 1, count: 300 * 1024), [UInt8](repeating: 1, count: 100 * 1024)]
            let sent = await trickle(client, pieces: pieces, intervalMs: 1300)
            #expect(sent == 2)
            #expect(try await client.read().text == "\(400 * 1024)")
        }
    }

    @Test func bodyArrivingFasterThanTheMinimumRateOutlivesTheBaseDeadline() async throws {
        try await withServer({ $0.bodyReadTimeoutMs = 400; $0.minBodyBytesPerSecond = 64 * 1024 }) { _, port in
            let client = try RawClient(port: port)
            // 16 KiB every 100 ms (160 KiB/s, each piece earning 250 ms), 1.2 s in all.
            let pieces = (0..<12).map { i in [UInt8](repeating: UInt8(i), count: 16 * 1024) }
            let size = pieces.reduce(0) { $0 + $1.count }
            let sum = pieces.reduce(UInt64(0)) { $0 + UInt64($1[0]) * UInt64($1.count) }
            client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(size)\r\n\r\n")
            let sent = await trickle(client, pieces: pieces, intervalMs: 100)
            #expect(sent == pieces.count)
            #expect(try await client.read().text == "\(size) \(sum)")
        }
    }

    // MARK: Output backpressure

    @Test func pipelinerThatDoesNotReadStopsBeingRead() async throws {
        let bound = 512 * 1024
        let answer = 256 * 1024
        let count = 200  // 50 MiB owed, far more than the kernel's socket buffers take
        try await withServer({ $0.maxUnsentOutputBytes = bound }) { server, port in
            let greedy = try RawClient(port: port, timeoutSeconds: 30)
            greedy.send(String(repeating: "GET /big?\(answer) HTTP/1.1\r\nHost: x\r\n\r\n", count: count))
            // Wait until what the server holds stops changing.
            var stats = await server.stats()
            var unchanged = 0
            for _ in 0..<100 where unchanged < 5 {
                try await Task.sleep(for: .milliseconds(100))
                let now = await server.stats()
                unchanged = now == stats && now.connectionsPausedForOutput == 1 ? unchanged + 1 : 0
                stats = now
            }
            #expect(stats.connectionsPausedForOutput == 1)
            #expect(stats.outputPauses >= 1)
            // At most the bound plus the one answer that crossed it.
            #expect(stats.unsentOutputBytes > 0)
            #expect(stats.unsentOutputBytes <= bound + answer + 4096)
            // Another client is served meanwhile.
            let other = try RawClient(port: port)
            other.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await other.read().text == "hello")
            // Reading at last, the pipeliner gets every answer, in full.
            var complete = 0
            for _ in 0..<count where try await greedy.read().body.count == answer { complete += 1 }
            #expect(complete == count)
            #expect(await server.stats().connectionsPausedForOutput == 0)
        }
    }

    @Test func peerThatNeverReadsIsClosedAfterTheWriteStall() async throws {
        try await withServer({ $0.maxUnsentOutputBytes = 256 * 1024; $0.idleTimeoutMs = 500 }) { server, port in
            let greedy = try RawClient(port: port)
            greedy.send(String(repeating: "GET /big?262144 HTTP/1.1\r\nHost: x\r\n\r\n", count: 200))
            // Held by backpressure with requests still unanswered, it is not idle: only the
            // write-stall timeout ends it.
            #expect(await waitFor { await server.stats().outputPauses >= 1 })
            #expect(await waitFor { server.openConnections == 0 })
            let other = try RawClient(port: port)
            other.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await other.read().text == "hello")
        }
    }

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

/// Sends `pieces` `intervalMs` apart until the server answers or closes; returns how many
/// were sent.
func trickle(_ client: RawClient, pieces: [[UInt8]], intervalMs: Int) async -> Int {
    let fd = client.fd
    return (try? await blocking { () -> Int in
        var sent = 0
        for piece in pieces {
            var probe: UInt8 = 0
            if recv(fd, &probe, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) >= 0 { break }  // an answer, or the end
            let n = piece.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n != piece.count { break }
            sent += 1
            usleep(UInt32(intervalMs * 1000))
        }
        return sent
    }) ?? -1
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
            let n = RawClient.receive(fd, &chunk)
            if n <= 0 { return nil }
            received.append(contentsOf: chunk[0..<n])
        }
        let parts = String(decoding: received, as: UTF8.self).split(separator: " ")
        return parts.count > 1 ? Int(parts[1]) : nil
    }) ?? nil
}

@Suite("Per-address connection limit exemptions")
struct PeerExemptionTests {
    @Test func loopbackAndListedPeersAreExempt() {
        let table = PeerConnectionTable(limit: 1, exemptsLoopback: true, exemptPeers: ["203.0.113.9", "2001:db8::1"])
        let loopback = PeerConnectionTable.key(parsing: "127.0.0.1")!
        #expect(table.admit(loopback) && table.admit(loopback))
        let proxy = PeerConnectionTable.key(parsing: "203.0.113.9")!
        #expect(table.admit(proxy) && table.admit(proxy))
        let proxy6 = PeerConnectionTable.key(parsing: "2001:db8::77")!  // same /64
        #expect(table.admit(proxy6) && table.admit(proxy6))
        let other = PeerConnectionTable.key(parsing: "198.51.100.1")!
        #expect(table.admit(other))
        #expect(!table.admit(other))
        #expect(PeerConnectionTable.key(parsing: "not an address") == nil)
        let strict = PeerConnectionTable(limit: 1)
        #expect(strict.admit(loopback))
        #expect(!strict.admit(loopback))
    }
}
