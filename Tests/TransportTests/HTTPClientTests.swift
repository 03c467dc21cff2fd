import Glibc
import TestSupport
import Testing
@testable import Transport

/// Canned answers for the client tests, beside the transport tests' own responder.
struct ClientTestResponder: HTTPResponder {
    func respond(to request: HTTPRequest) async -> HTTPResponse {
        switch String(request.head.path) {
        case "/method":
            let body = (try? await request.body.collect()) ?? []
            return HTTPResponse(contentType: "text/plain", bytes: Array("\(request.method) \(body.count)".utf8) + body)
        case "/redirect":
            // To the same port on another loopback address (127.0.0.2).
            let target = String(request.head.query ?? "")
            return HTTPResponse(status: 302, headers: ["Location": target], body: .empty)
        default:
            return await TestResponder().respond(to: request)
        }
    }
}

func withClientServer(_ body: (HTTPServer, Int) async throws -> Void) async throws {
    let server = HTTPServer(configuration: TransportConfiguration(loops: 1, host: "0.0.0.0", port: 0), responder: ClientTestResponder())
    let port = try await server.start()
    do { try await body(server, port) } catch {
        server.shutdown()
        await server.waitUntilStopped()
        throw error
    }
    server.shutdown()
    await server.waitUntilStopped()
}

func loopbackClient(_ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) throws -> HTTPClient {
    var configuration = HTTPClientConfiguration()
    configuration.blacklist = IPBlacklist(allowed: [IPRange("127.0.0.0/8")!])
    configure(&configuration)
    return try HTTPClient(configuration: configuration)
}

/// Runs `body`, which must fail with an `HTTPClientError` of `kind`; records `unexpected` if it
/// succeeds. Any other error is thrown on to the test.
func expectClientError(_ kind: HTTPClientError.Kind, _ unexpected: Comment,
                       _ body: () async throws -> Void) async throws {
    do {
        try await body()
        Issue.record(unexpected)
    } catch let error as HTTPClientError {
        #expect(error.kind == kind)
    }
}

func plain(_ host: String, _ port: Int, _ target: String, method: HTTPMethod = .get, body: [UInt8]? = nil) -> HTTPClientRequest {
    HTTPClientRequest(method: method, scheme: .http, host: host, port: port, target: target, body: body)
}

func plain(_ port: Int, _ target: String, method: HTTPMethod = .get, body: [UInt8]? = nil) -> HTTPClientRequest {
    plain("127.0.0.1", port, target, method: method, body: body)
}

@Suite struct HTTPClientTests {
    @Test func getAndPutOverOneKeptAliveConnection() async throws {
        try await withClientServer { server, port in
            let client = try loopbackClient()
            defer { client.shutdown() }
            let first = try await client.buffered(plain(port, "/hello"))
            #expect(first.status == 200)
            #expect(first.body == Array("hello".utf8))
            let second = try await client.buffered(plain(port, "/method", method: .put, body: Array("{\"a\":1}".utf8)))
            #expect(String(decoding: second.body, as: UTF8.self) == "PUT 7{\"a\":1}")
            #expect(await client.connectionsOpened() == 1)
            #expect(server.openConnections == 1)
        }
    }

    @Test func chunkedResponseStreamsInPieces() async throws {
        try await withClientServer { _, port in
            let client = try loopbackClient()
            defer { client.shutdown() }
            let response = try await client.execute(plain(port, "/stream"))
            #expect(response.headers["Transfer-Encoding"]?.lowercased() == "chunked")
            var chunks: [[UInt8]] = []
            for try await chunk in response.body { chunks.append(chunk) }
            #expect(chunks.count >= 2)
            #expect(String(decoding: chunks.flatMap { $0 }, as: UTF8.self) == "chunk0;chunk1;chunk2;chunk3;chunk4;")
            // The connection was reusable after a chunked body.
            _ = try await client.buffered(plain(port, "/hello"))
            #expect(await client.connectionsOpened() == 1)
        }
    }

    @Test func largeBodyWithinTheLimit() async throws {
        try await withClientServer { _, port in
            let client = try loopbackClient()
            defer { client.shutdown() }
            let response = try await client.buffered(plain(port, "/big?300000"))
            #expect(response.body.count == 300_000)
        }
    }

    @Test func responseOverTheSizeLimitFails() async throws {
        try await withClientServer { _, port in
            let client = try loopbackClient { $0.maxResponseBytes = 1000 }
            defer { client.shutdown() }
            // Content-Length over the limit: refused at the head.
            await #expect(throws: HTTPClientError(.tooLarge, "response of 5000 bytes")) {
                _ = try await client.buffered(plain(port, "/big?5000"))
            }
            // A chunked body over the limit: refused while streaming.
            let small = try loopbackClient { $0.maxResponseBytes = 20 }
            defer { small.shutdown() }
            try await expectClientError(.tooLarge, "a 35-byte chunked body passed a 20-byte limit") {
                _ = try await small.buffered(plain(port, "/stream"))
            }
        }
    }

    @Test func readTimeout() async throws {
        try await withClientServer { _, port in
            let client = try loopbackClient { $0.readTimeoutMs = 100 }
            defer { client.shutdown() }
            try await expectClientError(.readTimeout, "no timeout") { _ = try await client.buffered(plain(port, "/slow?3000")) }
            // A fresh connection serves the next request.
            let ok = try await client.buffered(plain(port, "/hello"))
            #expect(ok.status == 200)
        }
    }

    @Test func connectTimeout() async throws {
        // A listener whose accept queue is full and never drained: further SYNs are dropped.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        listen(fd, 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<4 {
            let f = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(f, $0, length) } }
            fillers.append(f)
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let client = try loopbackClient { $0.connectTimeoutMs = 300 }
        defer { client.shutdown() }
        try await expectClientError(.connectTimeout, "connected to a full accept queue") {
            _ = try await client.buffered(plain(port, "/hello"))
        }
    }

    @Test func connectionRefused() async throws {
        try await withClientServer { server, port in
            server.shutdown()
            await server.waitUntilStopped()
            let client = try loopbackClient()
            defer { client.shutdown() }
            try await expectClientError(.connectFailed, "connected to a stopped server") {
                _ = try await client.buffered(plain(port, "/hello"))
            }
        }
    }

    @Test func blacklistRefusesLoopbackUnlessWhitelisted() async throws {
        try await withClientServer { server, port in
            let strict = try HTTPClient()
            defer { strict.shutdown() }
            for host in ["127.0.0.1", "localhost"] {
                try await expectClientError(.blacklisted, "connected to \(host)") {
                    _ = try await strict.buffered(plain(host, port, "/hello"))
                }
            }
            #expect(server.openConnections == 0)
            let open = try loopbackClient()
            defer { open.shutdown() }
            #expect(try await open.buffered(plain("localhost", port, "/hello")).status == 200)
        }
    }

    @Test func redirectToABlacklistedAddressIsRefused() async throws {
        try await withClientServer { _, port in
            // Only 127.0.0.1 is whitelisted; the redirect points at 127.0.0.2.
            let client = try loopbackClient { $0.blacklist = IPBlacklist(allowed: [IPRange("127.0.0.1/32")!]) }
            defer { client.shutdown() }
            let allowed = try await client.buffered(plain(port, "/redirect?http://127.0.0.1:\(port)/hello"), maxRedirects: 3)
            #expect(allowed.body == Array("hello".utf8))
            try await expectClientError(.blacklisted, "followed a redirect to a blacklisted address") {
                _ = try await client.buffered(plain(port, "/redirect?http://127.0.0.2:\(port)/hello"), maxRedirects: 3)
            }
            // Without maxRedirects the redirect itself is the answer.
            let unfollowed = try await client.buffered(plain(port, "/redirect?http://127.0.0.2:\(port)/hello"))
            #expect(unfollowed.status == 302)
        }
    }

    @Test func manyConcurrentRequestsWithinThePerHostLimit() async throws {
        try await withClientServer { _, port in
            let client = try loopbackClient { $0.maxConnectionsPerHost = 2 }
            defer { client.shutdown() }
            let bodies = try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for _ in 0..<10 { group.addTask { try await client.buffered(plain(port, "/slow?20")).body } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(bodies.count == 10 && bodies.allSatisfy { $0 == Array("slow done".utf8) })
            #expect(await client.connectionsOpened() <= 2)
        }
    }
}

@Suite struct IPBlacklistTests {
    @Test func defaultRanges() {
        let list = IPBlacklist()
        for refused in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.0.1", "100.64.0.1",
                        "100.127.255.255", "224.0.0.1", "0.0.0.0", "::1", "::", "fc00::1", "fd12::1", "fe80::1", "ff02::1",
                        "::ffff:127.0.0.1", "::ffff:10.0.0.1"] {
            #expect(!list.permits(IPAddress(refused)!), "\(refused)")
        }
        for allowed in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860::8888", "::ffff:8.8.8.8", "1.1.1.1"] {
            #expect(list.permits(IPAddress(allowed)!), "\(allowed)")
        }
        let opened = IPBlacklist(allowed: [IPRange("127.0.0.0/8")!])
        #expect(opened.permits(IPAddress("127.0.0.5")!))
        #expect(opened.permits(IPAddress("::ffff:127.0.0.1")!))
        #expect(!opened.permits(IPAddress("10.0.0.1")!))
    }

    @Test func parsing() {
        #expect(IPAddress("1.2.3.4")?.bytes == [1, 2, 3, 4])
        #expect(IPAddress("::1")?.bytes == [UInt8](repeating: 0, count: 15) + [1])
        #expect(IPAddress("2001:db8::8:800:200c:417a")?.description == "2001:db8:0:0:8:800:200c:417a")
        #expect(IPAddress("::ffff:1.2.3.4")?.embeddedIPv4 == IPAddress("1.2.3.4"))
        for bad in ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1:2:3:4:5:6:7:8:9", "1::2::3", "::g", "12345::", "example.org", "1.2.3.4/8"] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
        #expect(IPRange("10.0.0.0/33") == nil)
        #expect(IPRange("fe80::/10")!.contains(IPAddress("febf::1")!))
        #expect(!IPRange("fe80::/10")!.contains(IPAddress("fec0::1")!))
    }
}

@Suite struct SRVAnswerTests {
    /// A DNS answer for `_matrix-fed._tcp.example.org` with the given SRV records, the
    /// target names compressed against the question where `compress` says so.
    static func answer(_ records: [(UInt16, UInt16, UInt16, String)], rcode: UInt8 = 0) -> [UInt8] {
        func name(_ s: String) -> [UInt8] {
            s.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
        }
        func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
        var m: [UInt8] = [0x12, 0x34, 0x81, 0x80 | rcode] + u16(1) + u16(UInt16(records.count)) + u16(0) + u16(0)
        m += name("_matrix-fed._tcp.example.org") + u16(33) + u16(1)
        for (priority, weight, port, target) in records {
            let rdata = u16(priority) + u16(weight) + u16(port) + (target == "." ? [0] : name(target))
            m += [0xc0, 12] + u16(33) + u16(1) + [0, 0, 1, 0x2c] + u16(UInt16(rdata.count)) + rdata
        }
        return m
    }

    @Test func parsesRecords() throws {
        let records = try SRVAnswer.parse(Self.answer([(10, 5, 8448, "matrix.example.org"), (20, 0, 443, "backup.example.org")]))
        #expect(records == [SRVRecord(priority: 10, weight: 5, port: 8448, target: "matrix.example.org"),
                            SRVRecord(priority: 20, weight: 0, port: 443, target: "backup.example.org")])
    }

    @Test func compressedTarget() throws {
        // Target "matrix" + pointer to "example.org" inside the question (offset 12 + 1 + 11 + 1 + 4).
        var m = Self.answer([])
        m[7] = 1
        let rdata: [UInt8] = [0, 1, 0, 1, 0x21, 0x00, 6] + Array("matrix".utf8) + [0xc0, 12 + 12 + 5]
        m += [0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, UInt8(rdata.count)] + rdata
        #expect(try SRVAnswer.parse(m) == [SRVRecord(priority: 1, weight: 1, port: 0x2100, target: "matrix.example.org")])
    }

    @Test func dotTargetMeansNoService() throws {
        #expect(try SRVAnswer.parse(Self.answer([(0, 0, 0, ".")])) == [])
    }

    @Test func hostileAnswersThrow() {
        let good = Self.answer([(10, 5, 8448, "matrix.example.org")])
        // Every truncation throws (or, cut inside nothing that matters, parses fewer records).
        for cut in 0..<good.count {
            let records = try? SRVAnswer.parse(Array(good[0..<cut]))
            #expect(records == nil || records! == [], "cut at \(cut)")
        }
        #expect(throws: SRVAnswer.ParseError.self) { try SRVAnswer.parse(Self.answer([], rcode: 3)) }
        // A pointer to itself / forwards (a loop).
        var loop = Self.answer([])
        loop[7] = 1
        let at = loop.count + 12
        loop += [0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 8, 0, 1, 0, 1, 0, 1, 0xc0, UInt8(at + 6)]
        #expect(throws: SRVAnswer.ParseError.self) { try SRVAnswer.parse(loop) }
        // A huge answer count with no records.
        var many = Self.answer([])
        many[6] = 0xff
        many[7] = 0xff
        #expect(throws: SRVAnswer.ParseError.self) { try SRVAnswer.parse(many) }
        // A label with a dot or a control character in it.
        var dotted = Self.answer([(1, 1, 1, "ab.cd")])
        if let i = dotted.lastIndex(of: UInt8(ascii: "c")) { dotted[i] = UInt8(ascii: ".") }
        #expect(throws: SRVAnswer.ParseError.self) { try SRVAnswer.parse(dotted) }
    }

    @Test func orderedByPriorityThenWeight() {
        let records = [SRVRecord(priority: 20, weight: 1, port: 1, target: "c"),
                       SRVRecord(priority: 10, weight: 0, port: 1, target: "a0"),
                       SRVRecord(priority: 10, weight: 50, port: 1, target: "a50")]
        // random(n) = n - 1: always the heaviest remaining pick.
        #expect(SRVRecord.ordered(records, random: { $0 - 1 }).map(\.target) == ["a50", "a0", "c"])
        // random(n) = 0: zero-weight first.
        #expect(SRVRecord.ordered(records, random: { _ in 0 }).map(\.target) == ["a0", "a50", "c"])
    }

    @Test func liveLookupOfANameWithoutRecords() async throws {
        // No network is needed for the answer to be "none" or a resolver failure; it must not hang or crash.
        let client = try HTTPClient()
        defer { client.shutdown() }
        let records = try? await client.srvRecords("_matrix-fed._tcp.invalid")
        #expect(records == nil || records! == [])
    }
}

@Suite struct HTTPClientLimitTests {
    @Test func headOverTheLimitFails() async throws {
        try await withClientServer { _, port in
            let client = try loopbackClient { $0.maxHeaderBytes = 64 }
            defer { client.shutdown() }
            try await expectClientError(.tooLarge, "a head over 64 bytes passed") {
                _ = try await client.buffered(plain(port, "/hello"))
            }
        }
    }

    @Test func garbageIsAnInvalidResponse() async throws {
        // A "server" that answers anything with bytes that are not HTTP.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        listen(fd, 4)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let serverFD = fd
        async let served: Void = blocking {
            let peer = accept(serverFD, nil, nil)
            guard peer >= 0 else { return }
            let junk = Array("SMTP ready\r\n\r\n".utf8)
            _ = junk.withUnsafeBytes { write(peer, $0.baseAddress, $0.count) }
            usleep(200_000)
            close(peer)
        }
        let client = try loopbackClient()
        defer { client.shutdown() }
        try await expectClientError(.invalidResponse, "garbage accepted as HTTP") {
            _ = try await client.buffered(plain(port, "/"))
        }
        try await served
    }

    @Test func theTotalLimitServesEveryHostInTurn() async throws {
        try await withClientServer { _, port in
            // One connection in total, two "hosts" (two names of one server).
            let client = try loopbackClient { $0.maxConnections = 1 }
            defer { client.shutdown() }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<6 {
                    let host = i % 2 == 0 ? "127.0.0.1" : "localhost"
                    group.addTask { try await client.buffered(plain(host, port, "/slow?10")).status }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == [Int](repeating: 200, count: 6))
        }
    }
}
