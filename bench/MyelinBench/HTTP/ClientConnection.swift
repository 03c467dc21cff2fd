#if canImport(Glibc)
import Glibc
#endif
import CLibUV

/// One HTTP/1.1 keep-alive connection to the server, used by one task at a time (a user's
/// sync loop, a sender). `execute` hands the request to the connection's `ClientLoop`, which
/// (re)connects when needed, writes, parses and resumes the caller with the outcome.
///
/// Socket state is owned by the loop thread; the caller only awaits `execute`.
final class ClientConnection: @unchecked Sendable {
    struct Command: Sendable {
        let connection: ClientConnection
        let bytes: [UInt8]
        let isHead: Bool
        let timeoutNanos: UInt64
        let continuation: CheckedContinuation<Result<HTTPResponse, TransportFailure>, Never>
    }

    let loop: ClientLoop
    // Loop thread only:
    private var fd: Int32 = -1
    private var token: UInt64 = 0
    private var connecting = false
    private var watchingWritable = false
    private var pending: Command?
    private var writeBuffer: [UInt8] = []
    private var written = 0
    private var parser = HTTPResponseParser()
    private var reused = false  // the socket already carried a response (stale keep-alive retry)
    private var retried = false
    private(set) var deadline: UInt64 = 0

    init(loop: ClientLoop) { self.loop = loop }

    /// Sends one request and waits for its response. `timeout` bounds the whole exchange.
    func execute(_ request: [UInt8], isHead: Bool = false, timeout: Double) async -> Result<HTTPResponse, TransportFailure> {
        await withCheckedContinuation { continuation in
            loop.submit(Command(connection: self, bytes: request, isHead: isHead,
                                timeoutNanos: UInt64(timeout * 1e9), continuation: continuation))
        }
    }

    // MARK: loop thread

    func failCommand(_ command: Command, _ failure: TransportFailure) {
        command.continuation.resume(returning: .failure(failure))
    }

    func start(_ command: Command, loop: ClientLoop) {
        if pending != nil {
            // One request at a time per connection; a second one is a harness bug.
            command.continuation.resume(returning: .failure(.closed("connection busy")))
            return
        }
        pending = command
        retried = false
        deadline = monotonicNanos() &+ command.timeoutNanos
        loop.markInFlight(self, true)
        begin(loop: loop)
    }

    private func begin(loop: ClientLoop) {
        guard let command = pending else { return }
        writeBuffer = command.bytes
        written = 0
        parser.reset()
        parser.expectsNoBody = command.isHead
        if fd < 0 {
            openSocket(loop: loop)
        } else {
            flush(loop: loop)
        }
    }

    private func openSocket(loop: ClientLoop) {
        let address = loop.address
        let s = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if s < 0 {
            let e = errno
            complete(.failure(.connectFailed(e)), loop: loop)
            return
        }
        var one: Int32 = 1
        _ = setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.storage.withUnsafeBytes { raw in
            connect(s, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if rc < 0 && errno != EINPROGRESS {
            let e = errno
            close(s)
            complete(.failure(e == ECONNREFUSED ? .connectRefused : .connectFailed(e)), loop: loop)
            return
        }
        fd = s
        reused = false
        connecting = true
        watchingWritable = true
        token = loop.register(self, fd: s, events: [.readable, .writable, .disconnect])
    }

    func handle(events: PollEvents, loop: ClientLoop) {
        if connecting {
            if events.isDisjoint(with: [.writable, .error, .disconnect]) { return }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                closeSocket(loop: loop)
                complete(.failure(err == ECONNREFUSED ? .connectRefused : .connectFailed(err)), loop: loop)
                return
            }
            connecting = false
            flush(loop: loop)
            if fd < 0 { return }
        } else if events.contains(.writable) && pending != nil && written < writeBuffer.count {
            flush(loop: loop)
            if fd < 0 { return }
        }
        if !events.isDisjoint(with: [.readable, .disconnect, .error]) {
            readAvailable(loop: loop)
        }
    }

    private func flush(loop: ClientLoop) {
        if connecting { return }
        while written < writeBuffer.count {
            let n = writeBuffer.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + written, raw.count - written, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                written += n
                if written == writeBuffer.count {
                    if watchingWritable { loop.watch(token: token, [.readable, .disconnect]); watchingWritable = false }
                }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                // Wait for writable (level-triggered: only while there is something to write).
                if !watchingWritable { loop.watch(token: token, [.readable, .writable, .disconnect]); watchingWritable = true }
                return
            }
            if n < 0 && errno == EINTR { continue }
            let e = errno
            lost("write: \(String(cString: strerror(e)))", loop: loop)
            return
        }
    }

    private func readAvailable(loop: ClientLoop) {
        while fd >= 0 {
            let buf = loop.readBuffer
            let n = recv(fd, buf.baseAddress, buf.count, 0)
            if n > 0 {
                guard pending != nil else {
                    // Bytes nobody asked for on an idle keep-alive socket: drop the socket.
                    closeSocket(loop: loop)
                    return
                }
                let result: HTTPResponse?
                do {
                    result = try parser.feed(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
                } catch let error {
                    closeSocket(loop: loop)
                    complete(.failure(.malformed(error.description)), loop: loop)
                    return
                }
                if let response = result {
                    reused = true
                    if response.closesConnection { closeSocket(loop: loop) }
                    complete(.success(response), loop: loop)
                }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            if n < 0 && errno == EINTR { continue }
            // EOF or error.
            let why = n == 0 ? "closed by server" : String(cString: strerror(errno))
            if pending != nil, n == 0, let done = try? parser.finishOnClose() {
                closeSocket(loop: loop)
                complete(.success(done), loop: loop)
                return
            }
            lost(why, loop: loop)
            return
        }
    }

    /// The socket died. A request that got no byte back on a reused keep-alive socket is retried
    /// once on a new one (the server closed an idle connection); anything else is a failure.
    private func lost(_ why: String, loop: ClientLoop) {
        let canRetry = reused && !retried && !parser.receivedAny && pending != nil
        closeSocket(loop: loop)
        if canRetry {
            retried = true
            begin(loop: loop)
        } else if pending != nil {
            complete(.failure(parser.receivedAny ? .malformed("connection closed mid-response") : .closed(why)), loop: loop)
        }
    }

    private func closeSocket(loop: ClientLoop) {
        guard fd >= 0 else { return }
        loop.unregister(token: token)
        close(fd)
        fd = -1
        connecting = false
    }

    private func complete(_ result: Result<HTTPResponse, TransportFailure>, loop: ClientLoop) {
        guard let command = pending else { return }
        pending = nil
        deadline = 0
        loop.markInFlight(self, false)
        completedRequests.add(1, ordering: .relaxed)
        command.continuation.resume(returning: result)
    }

    /// Fails the pending request (timeout, shutdown) and drops the socket.
    func fail(_ failure: TransportFailure, loop: ClientLoop) {
        closeSocket(loop: loop)
        complete(.failure(failure), loop: loop)
    }
}
