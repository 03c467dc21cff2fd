import Glibc
import TestSupport
import Testing
@testable import Transport

@Suite("HTTP server over real sockets", .serialized)
struct HTTPServerTests {
    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func simpleGetWithKeepAlive(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { _, port in
            let client = try RawClient(port: port)
            for _ in 0..<3 {
                client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                let response = try await client.read()
                #expect(response.status == 200)
                #expect(response.text == "hello")
                #expect(response.header("Date") != nil)
            }
        }
    }

    /// `transport.handlers`: a handler runs on the loop that read its request, also after a
    /// suspension another thread resumed (`loops`), or on the worker pool (`workers`).
    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func handlersRunWhereConfigured(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { _, port in
            let client = try RawClient(port: port)
            let prefix = handlers == .loops ? "myelin-loop-" : "myelin-worker-"
            for _ in 0..<5 {
                client.send("GET /thread HTTP/1.1\r\nHost: x\r\n\r\n")
                let names = try await client.read().text.split(separator: " ").map(String.init)
                #expect(names.count == 2 && names.allSatisfy { $0.hasPrefix(prefix) }, "\(names)")
                // Resumed by the timer's thread, the handler came back to its own loop.
                if handlers == .loops { #expect(names.first == names.last, "\(names)") }
            }
        }
    }

    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func pipelinedRequestsAnsweredInOrder(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { _, port in
            let client = try RawClient(port: port)
            client.send("GET /slow?200 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            #expect(try await client.read().text == "slow done")
            #expect(try await client.read().text == "hello")
            #expect(try await client.read().text == "abc")
        }
    }

    /// One runner task serves a connection's requests in turn; a slow request ends it and the
    /// next request starts another, and a peer that leaves mid-request ends it too.
    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func keepAliveRequestsAlternatingQuickAndSlowHandlers(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { server, port in
            let client = try RawClient(port: port)
            for i in 0..<30 {
                switch i % 3 {
                case 0:
                    client.send("GET /slow?5 HTTP/1.1\r\nHost: x\r\n\r\n")
                    #expect(try await client.read().text == "slow done")
                case 1:
                    client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                    #expect(try await client.read().text == "hello")
                default:
                    client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(String(i).count)\r\n\r\n\(i)")
                    #expect(try await client.read().text == String(i))
                }
            }
            // Peers that leave while their request runs, or while their runner waits.
            for i in 0..<20 {
                let leaving = try RawClient(port: port)
                leaving.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await leaving.read().text == "hello")
                if i % 2 == 0 { leaving.send("GET /slow?20 HTTP/1.1\r\nHost: x\r\n\r\n") }
            }
            try await Task.sleep(for: .milliseconds(100))
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().text == "hello")
            #expect(server.openConnections == 1)
        }
    }

    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func manyPipelinedRequestsPauseAndResume(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { _, port in
            let client = try RawClient(port: port)
            var text = ""
            for i in 0..<100 { text += "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(String(i).count)\r\n\r\n\(i)" }
            client.send(text)
            for i in 0..<100 { #expect(try await client.read().text == String(i)) }
        }
    }

    @Test func chunkedUpload() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 200)
            #expect(response.text == "hello world")
        }
    }

    @Test func headRequestHasNoBody() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try await client.read(head: true)
            #expect(response.status == 200)
            #expect(response.header("Content-Length") == "5")
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().text == "hello")
        }
    }

    @Test func expectContinue() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            // The interim response arrives before the body is sent.
            while !String(decoding: client.buffer, as: UTF8.self).contains("100 Continue") { #expect(await client.fillAsync()) }
            client.send("ping")
            let response = try await client.read()
            #expect(response.text == "ping")
        }
    }

    @Test func oversizedHeadersGet431() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            let big = String(repeating: "a", count: 20 * 1024)
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: \(big)\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 431)
            #expect(await client.closed())
            // Others are still served.
            let other = try RawClient(port: port)
            other.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await other.read().status == 200)
        }
    }

    @Test func oversizedBodyGet413() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(10 << 20)\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 413)
            #expect(await client.closed())
            // Chunked bodies are counted as they arrive.
            let chunked = try RawClient(port: port)
            chunked.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            let piece = String(repeating: "x", count: 1 << 20)
            for _ in 0..<9 { chunked.send("100000\r\n\(piece)\r\n") }
            #expect(try await chunked.read().status == 413)
        }
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n",
        "\u{1}\u{2}\u{3}\u{4}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
        "GET /\u{0}x HTTP/1.1\r\n\r\n",
    ])
    func malformedRequestsGet400AndOthersAreServed(_ raw: String) async throws {
        try await withServer { _, port in
            let bad = try RawClient(port: port)
            bad.send(raw)
            let response = try await bad.read()
            #expect(response.status == 400)
            #expect(await bad.closed())
            let good = try RawClient(port: port)
            good.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await good.read().status == 200)
        }
    }

    @Test func smugglingAttemptDoesNotReachTheResponder() async throws {
        // A second request hidden in a body with conflicting framing must never be answered.
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 400)
            #expect(await client.closed())
            #expect(!String(decoding: client.buffer, as: UTF8.self).contains("hello"))
        }
    }

    @Test func slowClientTimesOutWhileOthersAreServed() async throws {
        try await withServer({ $0.headerReadTimeoutMs = 500; $0.bodyReadTimeoutMs = 500 }) { _, port in
            let slow = try RawClient(port: port)
            slow.send("GET /hello HTTP/1.1\r\nHost: x\r\n")  // never finishes its head
            let slowBody = try RawClient(port: port)
            slowBody.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            let fast = try RawClient(port: port)
            fast.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await fast.read().status == 200)
            #expect(try await slow.read().status == 408)
            #expect(await slow.closed())
            #expect(try await slowBody.read().status == 408)
            fast.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await fast.read().status == 200)
        }
    }

    @Test func idleKeepAliveConnectionIsClosed() async throws {
        try await withServer({ $0.idleTimeoutMs = 300 }) { _, port in
            let client = try RawClient(port: port)
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().status == 200)
            #expect(await client.closed())
        }
    }

    @Test func mutatedRequestsNeverBreakTheServer() async throws {
        // Deterministic mutations of valid requests (bytes flipped, cut, duplicated): every one
        // gets an answer or a close, and a well-formed request is still served afterwards.
        var generator = SplitMix64(seed: 0x4d79656c696e)
        let seeds = [
            "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ].map { Array($0.utf8) }
        try await withServer({ $0.headerReadTimeoutMs = 300; $0.bodyReadTimeoutMs = 300 }) { _, port in
            for round in 0..<150 {
                var bytes = seeds[round % seeds.count]
                for _ in 0..<(1 + Int(generator.next() % 4)) {
                    let i = Int(generator.next() % UInt64(bytes.count))
                    switch generator.next() % 4 {
                    case 0: bytes[i] = UInt8(truncatingIfNeeded: generator.next())
                    case 1: bytes.removeSubrange(i...)
                    case 2: bytes.insert(contentsOf: bytes[i...].prefix(8), at: i)
                    default: bytes.remove(at: i)
                    }
                    if bytes.isEmpty { bytes = [0] }
                }
                let client = try RawClient(port: port, timeoutSeconds: 5)
                client.send(bytes)
                _ = try? await client.read()
            }
            let good = try RawClient(port: port)
            good.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await good.read().text == "hello")
        }
    }

    @Test func upgradeRequestIsAnsweredThenClosed() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 200)
            #expect(await client.closed())
        }
    }

    @Test func connectionCloseIsHonoured() async throws {
        try await withServer { _, port in
            let client = try RawClient(port: port)
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let response = try await client.read()
            #expect(response.header("Connection") == "close")
            #expect(await client.closed())
            let old = try RawClient(port: port)
            old.send("GET /hello HTTP/1.0\r\n\r\n")
            #expect(try await old.read().status == 200)
            #expect(await old.closed())
        }
    }

    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func streamedUploadWithBackpressure(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { _, port in
            let client = try RawClient(port: port, timeoutSeconds: 30)
            let size = 8 << 20
            var body = [UInt8](repeating: 0, count: size)
            var sum: UInt64 = 0
            for i in 0..<size { body[i] = UInt8(truncatingIfNeeded: i &* 31); sum &+= UInt64(body[i]) }
            client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(size)\r\n\r\n")
            await client.sendAsync(body)
            let response = try await client.read()
            #expect(response.text == "\(size) \(sum)")
        }
    }

    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func streamedAndFileResponses(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        try await withServer({ $0.handlers = handlers }) { _, port in
            let client = try RawClient(port: port)
            client.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            let streamed = try await client.read()
            #expect(streamed.header("Transfer-Encoding") == "chunked")
            #expect(streamed.text == "chunk0;chunk1;chunk2;chunk3;chunk4;")

            let path = "/tmp/myelin-transport-test-\(getpid())"
            let size = 300_000
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            Glibc.close(fd)
            defer { unlink(path) }
            client.send("GET /file?\(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            let file = try await client.read()
            #expect(file.body == bytes)
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().text == "hello")
        }
    }

    /// A second server on a port another one serves is refused at start (SO_REUSEPORT would
    /// otherwise have the kernel split the connections between them), and starts once it is free.
    @Test func aPortInUseIsRefusedNotShared() async throws {
        try await withServer { _, port in
            let second = HTTPServer(configuration: TransportConfiguration(loops: 2, host: "127.0.0.1", port: port),
                                    responder: TestResponder())
            let refused = await #expect(throws: HTTPServerError.self) { _ = try await second.start() }
            #expect(refused.map { "\($0)" }?.contains("Address already in use") == true, "\(String(describing: refused))")
            // The first still answers every connection.
            for _ in 0..<8 {
                let client = try RawClient(port: port)
                client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await client.read().text == "hello")
            }
        }
    }

    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func thousandConcurrentConnections(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < 4096 { limit.rlim_cur = min(limit.rlim_max, 4096); setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        try await withServer({ $0.maxConnectionsPerIP = 0; $0.handlers = handlers }) { server, port in
            var clients: [RawClient] = []
            for _ in 0..<1000 { clients.append(try RawClient(port: port)) }
            for client in clients { client.send("GET /slow?50 HTTP/1.1\r\nHost: x\r\n\r\n") }
            var ok = 0
            for client in clients where try await client.read().status == 200 { ok += 1 }
            #expect(ok == 1000)
            #expect(server.openConnections == 1000)
        }
    }

    @Test func maxConnectionsRefusesTheExcess() async throws {
        try await withServer({ $0.maxConnections = 3; $0.loops = 1 }) { _, port in
            let held = try (0..<3).map { _ in try RawClient(port: port) }
            for c in held { c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); #expect(try await c.read().status == 200) }
            let extra = try RawClient(port: port)
            #expect(await extra.closed())
        }
    }

    /// A handler still running when shutdown's grace ends finishes anyway: on the loops it
    /// runs elsewhere once its loop stopped, as it would have on the worker pool.
    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func aHandlerOutlivingShutdownStillFinishes(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        var configuration = TransportConfiguration(loops: 1, host: "127.0.0.1", port: 0)
        configuration.handlers = handlers
        configuration.shutdownGraceMs = 50
        let server = HTTPServer(configuration: configuration, responder: TestResponder())
        let port = try await server.start()
        let before = outlivedHandlers.load(ordering: .relaxed)
        let client = try RawClient(port: port)
        client.send("GET /outlive?1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        try await Task.sleep(for: .milliseconds(100))
        server.shutdown()
        await server.waitUntilStopped()
        for _ in 0..<200 where outlivedHandlers.load(ordering: .relaxed) == before {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(outlivedHandlers.load(ordering: .relaxed) == before + 1)
    }

    @Test(arguments: TransportConfiguration.HandlerThreads.allCases)
    func gracefulShutdownFinishesInFlightRequest(_ handlers: TransportConfiguration.HandlerThreads) async throws {
        var configuration = TransportConfiguration(loops: 2, host: "127.0.0.1", port: 0)
        configuration.handlers = handlers
        let server = HTTPServer(configuration: configuration, responder: TestResponder())
        let port = try await server.start()
        let client = try RawClient(port: port)
        client.send("GET /slow?500 HTTP/1.1\r\nHost: x\r\n\r\n")
        try await Task.sleep(for: .milliseconds(100))
        server.shutdown()
        let response = try await client.read()
        #expect(response.status == 200)
        #expect(response.text == "slow done")
        #expect(await client.closed())
        await server.waitUntilStopped()
        #expect(throws: RawClient.ClientError.self) { _ = try RawClient(port: port) }
    }
}

/// A small deterministic generator for reproducible mutations.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
