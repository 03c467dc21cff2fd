import TestSupport
import Synchronization
import Transport

/// A responder for transport tests: echoes, sleeps, streams and serves files by path.
struct TestResponder: HTTPResponder {
    func bodyPolicy(for head: HTTPRequestHead) -> BodyPolicy {
        head.path.hasPrefix("/upload") ? .stream(limit: 50 << 20) : .buffer(limit: 8 << 20)
    }

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        let path = String(request.head.path)
        switch path {
        case "/hello":
            return HTTPResponse(contentType: "text/plain", bytes: Array("hello".utf8))
        case "/echo":
            let body = (try? await request.body.collect()) ?? []
            return HTTPResponse(contentType: "application/octet-stream", bytes: body)
        case "/upload":
            var total = 0
            var sum: UInt64 = 0
            guard case .stream(let body) = request.body else {
                return HTTPResponse(status: 500, contentType: "text/plain", bytes: Array("not streamed".utf8))
            }
            do {
                for try await chunk in body {
                    total += chunk.count
                    for b in chunk { sum = sum &+ UInt64(b) }
                }
            } catch {
                return HTTPResponse(status: 400, contentType: "text/plain", bytes: Array("stream failed".utf8))
            }
            return HTTPResponse(contentType: "text/plain", bytes: Array("\(total) \(sum)".utf8))
        case "/upload-refuse":
            // Answers without reading a byte of the body (as an unauthenticated upload is).
            return HTTPResponse(status: 401, contentType: "text/plain", bytes: Array("refused".utf8))
        case "/upload-slow", "/upload-slower":
            // A consumer slower than the peer (a disk): the server, not the peer, is slow.
            guard case .stream(let body) = request.body else {
                return HTTPResponse(status: 500, contentType: "text/plain", bytes: Array("not streamed".utf8))
            }
            var total = 0
            // First a long wait (say, for a busy actor), then slow reads; "slower" is five
            // times slower, for deadlines far from what a loaded machine's scheduling takes.
            let scale = path == "/upload-slower" ? 5 : 1
            try? await Task.sleep(for: .milliseconds(800 * scale))
            do {
                for try await chunk in body {
                    total += chunk.count
                    try? await Task.sleep(for: .milliseconds(20 * scale))
                }
            } catch {
                return HTTPResponse(status: 400, contentType: "text/plain", bytes: Array("stream failed".utf8))
            }
            return HTTPResponse(contentType: "text/plain", bytes: Array("\(total)".utf8))
        case "/big":
            let size = request.head.query.flatMap { Int($0) } ?? 65536
            return HTTPResponse(contentType: "application/octet-stream", bytes: [UInt8](repeating: 0x61, count: size))
        case "/slow":
            try? await Task.sleep(for: .milliseconds(Int(request.head.query.flatMap { Int($0) } ?? 300)))
            return HTTPResponse(contentType: "text/plain", bytes: Array("slow done".utf8))
        case "/stream":
            let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
            Task {
                for i in 0..<5 {
                    continuation.yield(Array("chunk\(i);".utf8))
                    try? await Task.sleep(for: .milliseconds(5))
                }
                continuation.finish()
            }
            return HTTPResponse(status: 200, headers: ["Content-Type": "text/plain"], body: .stream(length: nil, chunks: stream))
        case "/file":
            let file = String(request.head.query ?? "")
            return HTTPResponse(status: 200, headers: ["Content-Type": "application/octet-stream"],
                                body: .file(path: file, offset: 0, length: Int64(fileSize(file))))
        case "/outlive":
            // Sleeps past a short shutdown grace, then counts itself finished.
            try? await Task.sleep(for: .milliseconds(Int(request.head.query.flatMap { Int($0) } ?? 400)))
            outlivedHandlers.add(1, ordering: .relaxed)
            return HTTPResponse(contentType: "text/plain", bytes: Array("outlived".utf8))
        case "/thread":
            // The thread the handler runs on, before and after a suspension that another
            // thread (the timer's) resumes.
            let before = currentThreadName()
            try? await Task.sleep(for: .milliseconds(5))
            return HTTPResponse(contentType: "text/plain", bytes: Array("\(before) \(currentThreadName())".utf8))
        case "/hold":
            // Waits, as a long-poll does, until the test opens the gate.
            await HoldGate.shared.wait()
            return HTTPResponse(contentType: "text/plain", bytes: Array("held".utf8))
        case "/headers":
            let text = request.headers.map { "\($0.name)=\($0.value)" }.joined(separator: "\n")
            return HTTPResponse(contentType: "text/plain", bytes: Array(text.utf8))
        default:
            return HTTPResponse(status: 404, contentType: "text/plain", bytes: Array("not found".utf8))
        }
    }
}

import Glibc

/// `/outlive` handlers that finished.
let outlivedHandlers = Atomic<Int>(0)

/// The calling thread's name, from /proc (Glibc's module does not export `pthread_getname_np`).
func currentThreadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY)
    guard fd >= 0 else { return "?" }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 32)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count > 0 else { return "?" }
    return String(decoding: buffer[..<count], as: UTF8.self).trimmingNewline()
}

extension String {
    fileprivate func trimmingNewline() -> String { hasSuffix("\n") ? String(dropLast()) : self }
}

func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : 0
}

/// Starts a server on an ephemeral port with `configure` applied, runs `body`, shuts down.
func withServer(_ configure: (inout TransportConfiguration) -> Void = { _ in },
                _ body: (HTTPServer, Int) async throws -> Void) async throws {
    var configuration = TransportConfiguration(loops: 2, host: "127.0.0.1", port: 0)
    configure(&configuration)
    let server = HTTPServer(configuration: configuration, responder: TestResponder())
    let port = try await server.start()
    do {
        try await body(server, port)
    } catch {
        server.shutdown()
        await server.waitUntilStopped()
        throw error
    }
    server.shutdown()
    await server.waitUntilStopped()
}

/// Where `/hold` requests wait until a test releases them.
actor HoldGate {
    static let shared = HoldGate()
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        await withCheckedContinuation { waiters.append($0) }
    }

    var waiting: Int { waiters.count }

    func release() {
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}
