import Glibc
import TestSupport
import Testing
@testable import Transport

/// A connection that waits (a long-poll with the responder, or idle between requests) gives
/// back its head arena, header table and output buffer at the loop's next sweep; the next
/// request grows them again and must parse exactly as before.
@Suite("Idle connections shed their buffers", .serialized)
struct IdleBufferTests {
    @Test func bufferedFreedWhileAHeldRequestWaitsAndRegrownForPipelinedRequests() async throws {
        try await withServer { server, port in
            let client = try RawClient(port: port)
            // A first exchange leaves the arena and output buffer allocated.
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().text == "hello")
            // A request held by the responder, as a long-poll is.
            client.send("GET /hold HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(String(repeating: "t", count: 200))\r\n\r\n")
            #expect(await waitFor { await HoldGate.shared.waiting == 1 })
            #expect(await waitFor { await server.stats().bufferBytes == 0 })
            await HoldGate.shared.release()
            #expect(try await client.read().text == "held")

            // Re-grown from nothing: pipelined requests in one write, one head larger than the
            // arena's first size, one with a body.
            let long = String(repeating: "v", count: 3000)
            client.send("GET /headers HTTP/1.1\r\nHost: x\r\nX-Long: \(long)\r\nX-Short: s\r\n\r\n"
                        + "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                        + "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            let headers = try await client.read().text
            #expect(headers.contains("X-Long=\(long)") || headers.contains("x-long=\(long)"))
            #expect(headers.contains("X-Short=s") || headers.contains("x-short=s"))
            #expect(try await client.read().text == "abcde")
            #expect(try await client.read().text == "hello")

            // Idle between requests: shed again, and the connection still serves.
            #expect(await waitFor { await server.stats().bufferBytes == 0 })
            client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await client.read().text == "hello")
        }
    }

    /// A head that arrives in two parts with sweeps in between keeps its arena: the second
    /// part completes the same head.
    @Test func headSplitAcrossSweepsIsNotShed() async throws {
        // A header deadline far beyond the test's pause, however loaded the machine.
        try await withServer({ $0.headerReadTimeoutMs = 600_000 }) { server, port in
            let client = try RawClient(port: port)
            client.send("GET /headers HTTP/1.1\r\nHost: x\r\nX-First: one\r\nX-Sec")
            // The arena holds the partial head through several sweeps (250 ms apart).
            try await Task.sleep(for: .milliseconds(800))
            #expect(await server.stats().bufferBytes > 0)
            client.send("ond: two\r\n\r\n")
            let text = try await client.read().text
            #expect(text.lowercased().contains("x-first=one"))
            #expect(text.lowercased().contains("x-second=two"))
        }
    }
}
