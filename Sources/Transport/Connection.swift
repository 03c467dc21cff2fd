import CLibUV
import CLLHTTP
import Glibc

/// One accepted TCP connection: its parser, the requests parsed from it, and its output.
///
/// Threading: owned by its loop's thread. Requests leave it as `HTTPRequest` values with
/// `(connection id, sequence)`; responses come back through `LoopActor.deliver`, which looks
/// the connection up again (it may have closed meanwhile).
final class Connection {
    enum ParseState { case betweenMessages, head, body }

    /// A request parsed from the wire and not yet answered (a class: it is updated in place
    /// as its body arrives).
    final class Pending {
        let head: HTTPRequestHead
        var body: RequestBody
        let requestID: UInt64
        let sequence: UInt64
        var keepAlive: Bool
        let isHead: Bool
        /// For buffered bodies: true once the whole body has arrived.
        var complete: Bool

        init(head: HTTPRequestHead, body: RequestBody, requestID: UInt64, sequence: UInt64, keepAlive: Bool, complete: Bool) {
            self.head = head
            self.body = body
            self.requestID = requestID
            self.sequence = sequence
            self.keepAlive = keepAlive
            self.isHead = head.method == .head
            self.complete = complete
        }
    }

    /// The loop outlives its connections (it closes them all before it stops).
    unowned(unsafe) let loop: EventLoop
    let id: UInt64
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    var stream: UnsafeMutablePointer<uv_stream_t> { UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self) }
    let parser: UnsafeMutablePointer<myelin_http>
    var admitted = true
    /// Counted in the server's per-peer table under `peer`.
    var countedForPeer = false
    var peer = PeerConnectionTable.Key(high: 0, low: 0)
    var closing = false
    var reading = false
    /// Nothing more is read (an upgrade request was answered instead).
    var inputEnded = false
    var remoteAddress = ""

    var parseState = ParseState.betweenMessages
    /// Loop time (ms) at which the current phase times out; 0 when none applies. A body's
    /// deadline is absolute from the end of its head (see `body(_:)` for what extends it).
    var deadline: UInt64 = 0
    /// Loop time at which the server stopped reading for reasons of its own (a slow consumer
    /// of a streamed body, unsent output); 0 while it is not. The deadline does not run
    /// meanwhile, and moves by the time paused when reading resumes: the peer is charged for
    /// the time the server waits for its bytes, never for the server's own slowness.
    var serverPausedAt: UInt64 = 0
    /// The request whose streamed body is being read was already answered: the rest of its
    /// body is read and dropped, and a timeout closes without a 408.
    var bodyAnswered = false
    var pending: [Pending] = []
    var inFlight: UInt64? = nil
    var nextSequence: UInt64 = 0
    // The message being parsed.
    var bodyLimit = 0
    var bodyBytes: [UInt8] = []
    var bodyCount = 0
    var bodyStream: RequestBodyStream?
    var currentIsStreamed = false
    var rejected = false
    /// Input kept while the parser is paused (too many pipelined requests).
    var pausedInput: [UInt8] = []
    var parserPaused = false
    var readPausedByBody = false

    // Output.
    var output: [UInt8] = []
    var writesInFlight = 0
    var closeAfterWrite = false
    var isDirty = false
    var streamingSequence: UInt64? = nil
    var streamingChunked = false
    var drainWaiters: [CheckedContinuation<Void, Never>] = []
    /// Output not yet taken by the socket: queued here, or handed to `uv_write`.
    var backlog: Int { output.count + writeBacklog }
    /// Bytes handed to `uv_write` whose write has not completed.
    var writeBacklog = 0
    /// Reading and dispatching stopped: `backlog` passed `maxUnsentOutputBytes` (it resumes
    /// below half).
    var outputPaused = false
    /// Write-stall detection: loop time of the last sign that the peer reads (a write completed
    /// or libuv's write queue shrank), and the queue size seen then.
    var writeProgressAt: UInt64 = 0
    var lastWriteQueueSize = 0

    init(loop: EventLoop, id: UInt64) {
        self.loop = loop
        self.id = id
        tcp = .allocate(capacity: 1)
        uv_tcp_init(loop.uv, tcp)
        parser = .allocate(capacity: 1)
        myelin_http_init(parser, UInt32(loop.limits.maxHeaderBytes), nil)
        let me = Unmanaged.passUnretained(self).toOpaque()
        tcp.pointee.data = me
        parser.pointee.context = me
    }

    deinit {
        myelin_http_release(parser)
        parser.deallocate()
    }

    /// The limits, cached by the loop (a copy of the configuration would cost reference counting).
    var limits: EventLoop.Limits { loop.limits }

    func start() {
        uv_tcp_nodelay(tcp, 1)
        deadline = uv_now(loop.uv) + limits.headerReadTimeoutMs
        startReading()
    }

    /// Reads the peer's address: `remoteAddress` for handlers, `peer` for the per-peer limit.
    func identifyPeer() {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(tcp, $0, &length) }
        }
        guard rc == 0 else { return }
        peer = PeerConnectionTable.key(storage)
        remoteAddress = Connection.text(of: storage)
    }

    private static func text(of storage: sockaddr_storage) -> String {
        var storage = storage
        var buffer = [CChar](repeating: 0, count: 64)
        if storage.ss_family == sa_family_t(AF_INET) {
            withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { _ = uv_ip4_name($0, &buffer, 64) }
            }
        } else {
            withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { _ = uv_ip6_name($0, &buffer, 64) }
            }
        }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    // MARK: Reading

    func startReading() {
        guard !reading, !closing else { return }
        reading = true
        uv_read_start(stream, { handle, _, buf in
            let connection = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            buf!.pointee.base = connection.loop.readBuffer
            buf!.pointee.len = connection.loop.readBufferSize
        }, { handle, nread, buf in
            let connection = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            if nread > 0 {
                connection.received(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
            } else if nread < 0 {
                connection.peerClosed()
            }
        })
    }

    func stopReading() {
        guard reading else { return }
        reading = false
        uv_read_stop(stream)
    }

    /// Reads again unless something still holds reading stopped.
    private func resumeReadingIfAllowed() {
        guard !parserPaused, !readPausedByBody, !outputPaused, !rejected, !closeAfterWrite, !inputEnded else { return }
        startReading()
    }

    /// The server stops reading for a reason of its own (`readPausedByBody`, `outputPaused`,
    /// set by the caller): the peer's deadline stops running.
    private func pauseInputForServer() {
        stopReading()
        if serverPausedAt == 0 { serverPausedAt = max(1, uv_now(loop.uv)) }
    }

    /// A reason to stop reading was cleared: once none remains, the deadline moves by the time
    /// paused and reading resumes.
    private func resumeInputForServer() {
        guard !readPausedByBody, !outputPaused else { return }
        if serverPausedAt != 0 {
            if deadline != 0 && parseState != .betweenMessages { deadline += uv_now(loop.uv) &- serverPausedAt }
            serverPausedAt = 0
        }
        resumeReadingIfAllowed()
    }

    private func received(_ bytes: UnsafeRawBufferPointer) {
        loop.leftPoll()
        guard !closing else { return }
        if parserPaused {
            pausedInput.append(contentsOf: bytes)
            stopReading()
            return
        }
        feed(bytes)
    }

    private func feed(_ bytes: UnsafeRawBufferPointer) {
        let base = bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let rc = myelin_http_execute(parser, base, bytes.count)
        if rc == Int32(HPE_OK.rawValue) { return }
        if rc == Int32(HPE_PAUSED_UPGRADE.rawValue) {
            // No protocol upgrade is served: answer the request and close.
            inputEnded = true
            stopReading()
            pending.last?.keepAlive = false
            return
        }
        if rc == Int32(HPE_PAUSED.rawValue) {
            let position = myelin_http_error_pos(parser)!
            let consumed = base.distance(to: position)
            pausedInput = Array(bytes[consumed...])
            parserPaused = true
            stopReading()
            return
        }
        parseFailed(rc)
    }

    private func parseFailed(_ rc: Int32) {
        stopReading()
        if rejected { return }  // a head or body callback already queued the answer
        let error: TransportError
        if parser.pointee.error == UInt8(MYELIN_HTTP_HEAD_TOO_LARGE.rawValue) ||
            parser.pointee.error == UInt8(MYELIN_HTTP_TOO_MANY_HEADERS.rawValue) {
            error = .headersTooLarge
        } else {
            let reason = myelin_http_error_reason(parser).map { String(cString: $0) } ?? "malformed request"
            error = .badRequest(reason)
        }
        reject(error)
    }

    /// Answers `error` after the responses already owed, then closes.
    func reject(_ error: TransportError) {
        rejected = true
        stopReading()
        deadline = 0
        bodyStream?.finish(error == .bodyTooLarge ? .tooLarge : .connectionClosed)
        bodyStream = nil
        pending.removeAll { !$0.complete }  // a buffered request whose body will never complete
        let response = loop.server.responder.errorResponse(error)
        let sequence = nextSequence
        nextSequence += 1
        pending.append(Pending(head: HTTPRequestHead(method: .get, target: "/"), body: .buffered([]), requestID: 0,
                               sequence: sequence, keepAlive: false, complete: true))
        rejectedResponses[sequence] = response
        dispatchNext()
    }

    /// Error answers waiting their turn behind earlier requests.
    var rejectedResponses: [UInt64: HTTPResponse] = [:]

    private func peerClosed() {
        stopReading()
        if let bodyStream {
            bodyStream.finish(.connectionClosed)
            self.bodyStream = nil
        }
        // Nothing more will come: answer what was parsed if the peer only half-closed, but a
        // vanished peer cannot read it, so close now.
        close()
    }

    // MARK: Parser callbacks (loop thread, inside myelin_http_execute)

    func messageBegan() {
        parseState = .head
        deadline = uv_now(loop.uv) + limits.headerReadTimeoutMs
    }

    func headComplete() -> Int32 {
        let p = parser.pointee
        let arena = p.arena!
        func text(_ offset: UInt32, _ length: UInt32) -> String {
            String(decoding: UnsafeRawBufferPointer(start: arena + Int(offset), count: Int(length)), as: UTF8.self)
        }
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(Int(p.header_count))
        if let headers = p.headers {
            for i in 0..<Int(p.header_count) {
                let h = headers[i]
                fields.append((text(h.name_offset, h.name_length), text(h.value_offset, h.value_length)))
            }
        }
        let methodNumber = myelin_http_method(parser)
        let method = HTTPMethod(llhttp: methodNumber) {
            String(cString: llhttp_method_name(llhttp_method_t(UInt32(methodNumber))))
        }
        let chunked = myelin_http_is_chunked(parser) != 0
        let declared: Int? = myelin_http_has_content_length(parser) != 0 ? Int(clamping: myelin_http_content_length(parser)) : nil
        let head = HTTPRequestHead(method: method, target: text(p.target_offset, p.target_length),
                                   headers: HTTPHeaders(fields),
                                   version: (Int(myelin_http_major(parser)), Int(myelin_http_minor(parser))),
                                   contentLength: declared, isChunked: chunked)
        let policy = loop.server.responder.bodyPolicy(for: head)
        let streamed: Bool
        switch policy {
        case .buffer(let limit): bodyLimit = limit; streamed = false
        case .stream(let limit): bodyLimit = limit; streamed = true
        }
        if let declared, declared > bodyLimit {
            reject(.bodyTooLarge)
            return -1
        }
        let hasBody = chunked || (declared ?? 0) > 0
        if p.expect_continue != 0 && hasBody {
            queueRaw(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        bodyCount = 0
        currentIsStreamed = streamed
        let requestID = loop.server.nextRequestID()
        if streamed {
            let loop = self.loop
            let id = self.id
            let stream = RequestBodyStream(resumeProducer: {
                loop.execute { loop.connections[id]?.resumeAfterBody() }
            })
            if !hasBody { stream.finish() } else { bodyStream = stream }
            appendPending(head, body: .stream(stream), requestID: requestID, complete: true)
            dispatchNext()
        } else {
            bodyBytes = []
            if let declared, declared > 0 { bodyBytes.reserveCapacity(declared) }
            appendPending(head, body: .buffered([]), requestID: requestID, complete: false)
        }
        if hasBody {
            parseState = .body
            bodyAnswered = false
            // Absolute: the whole body must arrive by then (plus what it earns, see `body`).
            deadline = uv_now(loop.uv) + limits.bodyReadTimeoutMs
        } else {
            deadline = 0
        }
        return 0
    }

    private func appendPending(_ head: HTTPRequestHead, body: RequestBody, requestID: UInt64, complete: Bool) {
        let sequence = nextSequence
        nextSequence += 1
        pending.append(Pending(head: head, body: body, requestID: requestID, sequence: sequence,
                               keepAlive: true, complete: complete))
    }

    func body(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        bodyCount += bytes.count
        if bodyCount > bodyLimit {
            reject(.bodyTooLarge)
            return -1
        }
        // The body deadline is not reset by a read: each byte only earns 1/min-rate seconds
        // (rounded down per read, so a peer trickling a few bytes at a time earns nothing).
        let rate = limits.minBodyBytesPerSecond
        if rate != 0 && deadline != 0 { deadline &+= UInt64(bytes.count) &* 1000 / rate }
        if currentIsStreamed {
            // No stream once the request was answered: the rest of the body is dropped.
            if let bodyStream, !bodyStream.push(Array(bytes)) {
                // The consumer is slow, not the peer: its deadline stops until it drains.
                readPausedByBody = true
                pauseInputForServer()
            }
        } else {
            bodyBytes.append(contentsOf: bytes)
        }
        return 0
    }

    func messageComplete() -> Int32 {
        parseState = .betweenMessages
        let keepAlive = myelin_http_keep_alive(parser) != 0
        if let last = pending.last {
            last.keepAlive = keepAlive
            if !currentIsStreamed {
                last.body = .buffered(bodyBytes)
                bodyBytes = []
            }
            last.complete = true
        }
        if let bodyStream {
            bodyStream.finish()
            self.bodyStream = nil
        }
        deadline = 0
        dispatchNext()
        if !keepAlive {
            // No request may follow this one on the connection.
            stopReading()
            return Int32(HPE_PAUSED.rawValue)
        }
        return pending.count > limits.maxPipelined ? Int32(HPE_PAUSED.rawValue) : 0
    }

    // MARK: Dispatch

    /// Hands the next complete request to the responder when none is in flight.
    func dispatchNext() {
        guard inFlight == nil, streamingSequence == nil, !outputPaused, let first = pending.first else {
            updateIdleDeadline()
            return
        }
        guard first.complete else { return }
        inFlight = first.sequence
        if let response = rejectedResponses.removeValue(forKey: first.sequence) {
            deliver(sequence: first.sequence, response: response)
            return
        }
        let request = HTTPRequest(head: first.head, body: first.body, remoteAddress: remoteAddress, requestID: first.requestID)
        let next = Dispatched(request: request, sequence: first.sequence)
        if let runner = idleRunner {
            idleRunner = nil
            runner.resume(returning: next)
        } else {
            startRunner(with: next)
        }
    }

    /// A request handed to the connection's runner, with its place on the connection.
    struct Dispatched: Sendable {
        let request: HTTPRequest
        let sequence: UInt64
    }

    /// The connection's runner while it waits for the next request. One task runs every
    /// request of a connection in turn (a connection has at most one request in flight), so
    /// a request costs the resumption of a waiting task instead of the creation of a new one.
    var idleRunner: UnsafeContinuation<Dispatched?, Never>?

    /// Requests that take longer than this end their runner (see `startRunner`).
    static let runnerKeepNanoseconds: UInt64 = 2_000_000

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    private func startRunner(with first: Dispatched) {
        let responder = loop.server.responder
        let loop = self.loop
        let id = self.id
        Task(executorPreference: loop.server.workers) {
            var next: Dispatched? = first
            while let sequence = next?.sequence {
                let response: HTTPResponse
                let started = Connection.monotonicNanoseconds()
                do {
                    // The request (and its body) is not kept while the runner waits.
                    let request = next!.request
                    next = nil
                    response = await responder.respond(to: request)
                }
                if Connection.monotonicNanoseconds() - started > Connection.runnerKeepNanoseconds {
                    // A long request (a long-poll, a large sync) leaves this task's stack grown:
                    // end the runner rather than hold that memory while the connection waits.
                    // The next request starts a new one.
                    loop.execute { loop.connections[id]?.deliver(sequence: sequence, response: response) }
                    return
                }
                // The answer is queued on the loop's executor, not awaited there: the runner
                // stays on the pool thread and waits for the connection's next request.
                next = await withUnsafeContinuation { runner in
                    loop.execute {
                        guard let connection = loop.connections[id], !connection.closing else {
                            runner.resume(returning: nil)
                            return
                        }
                        // Set before delivering: delivery may dispatch a pipelined request.
                        connection.idleRunner = runner
                        connection.deliver(sequence: sequence, response: response)
                    }
                }
            }
        }
    }

    private func updateIdleDeadline() {
        if inFlight == nil && streamingSequence == nil && pending.isEmpty && parseState == .betweenMessages && !closing {
            if loop.draining {
                closeAfterWrite = true
                markDirty()
            } else {
                deadline = uv_now(loop.uv) + limits.idleTimeoutMs
            }
        }
    }

    /// Writes the response to the request in flight (loop thread).
    func deliver(sequence: UInt64, response: HTTPResponse) {
        guard inFlight == sequence, !closing, let index = pending.firstIndex(where: { $0.sequence == sequence }) else { return }
        let entry = pending.remove(at: index)
        inFlight = nil
        if readPausedByBody || bodyStream != nil { bodyOwnerAnswered(entry) }
        let lastOnConnection = !entry.keepAlive || (loop.draining && pending.isEmpty)
        write(response, for: entry, close: lastOnConnection)
        if backlog > limits.maxUnsentOutputBytes && !outputPaused { pauseForOutput() }
        if lastOnConnection {
            closeAfterWrite = true
            pending.removeAll()
            markDirty()
            return
        }
        if parserPaused && pending.count <= limits.maxPipelined / 2 { resumeParser() }
        dispatchNext()
    }

    /// `entry`, answered, may be the request whose streamed body is still arriving or whose
    /// consumer holds reading stopped: its handler will read no more of it.
    private func bodyOwnerAnswered(_ entry: Pending) {
        guard case .stream = entry.body else { return }
        if parseState == .body && currentIsStreamed && entry.sequence == nextSequence &- 1 {
            // Answered before its body arrived (e.g. refused unread): the rest is read and
            // dropped, within the same deadline. Closing instead could reset the connection
            // before the peer reads the answer.
            bodyAnswered = true
            bodyStream?.finish(.connectionClosed)
            bodyStream = nil
        }
        if readPausedByBody {
            // Its consumer is gone and will never drain what it left unread. (If the pause was
            // a later request's, its next push pauses again.)
            readPausedByBody = false
            resumeInputForServer()
        }
    }

    // MARK: Output backpressure

    private func pauseForOutput() {
        outputPaused = true
        loop.outputPauses &+= 1
        pauseInputForServer()
    }

    /// After output left for the socket: stops or resumes reading and dispatching.
    @inline(__always)
    private func checkOutputPressure() {
        if outputPaused {
            guard backlog <= limits.maxUnsentOutputBytes / 2 else { return }
            outputPaused = false
            resumeInputForServer()
            dispatchNext()
        } else if backlog > limits.maxUnsentOutputBytes {
            pauseForOutput()
        }
    }

    private func resumeParser() {
        parserPaused = false
        myelin_http_resume(parser)
        let input = pausedInput
        pausedInput = []
        if !input.isEmpty {
            input.withUnsafeBytes { feed($0) }
        }
        resumeReadingIfAllowed()
    }

    func resumeAfterBody() {
        guard readPausedByBody, !closing else { return }
        readPausedByBody = false
        resumeInputForServer()
    }

    // MARK: Writing

    private func write(_ response: HTTPResponse, for entry: Pending, close: Bool) {
        var head = output
        output = []
        // Room for the whole answer at once: growing past a guess costs a reallocation and,
        // from 1 KiB, a consolidation of malloc's free lists.
        var needed = head.count + 160 + loop.dateHeader.count + loop.server.commonHeaderBytes.count
        if case .bytes(let bytes) = response.body { needed += bytes.count }
        for field in response.headers.fields { needed += field.name.utf8.count + field.value.utf8.count + 4 }
        if head.capacity < needed { head.reserveCapacity(needed) }
        StatusLine.append(response.status, to: &head)
        head.append(contentsOf: loop.dateHeader)
        head.append(contentsOf: loop.server.commonHeaderBytes)
        if let contentType = response.contentType {
            head.append(contentsOf: "Content-Type: ".utf8)
            head.append(contentsOf: contentType.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        for field in response.headers.fields {
            head.append(contentsOf: field.name.utf8)
            head.append(contentsOf: ": ".utf8)
            head.append(contentsOf: field.value.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        if close { head.append(contentsOf: "Connection: close\r\n".utf8) }
        let noBody = entry.isHead || response.status == 204 || response.status == 304
        switch response.body {
        case .empty:
            if response.status != 204 && response.status != 304 { head.append(contentsOf: "Content-Length: 0\r\n".utf8) }
            head.append(contentsOf: "\r\n".utf8)
            queueRaw(head)
        case .bytes(let bytes):
            head.append(contentsOf: "Content-Length: ".utf8)
            StatusLine.appendDecimal(bytes.count, to: &head)
            head.append(contentsOf: "\r\n\r\n".utf8)
            if !noBody { head.append(contentsOf: bytes) }
            queueRaw(head)
        case .file(let path, let offset, let length):
            head.append(contentsOf: "Content-Length: ".utf8)
            head.append(contentsOf: String(length).utf8)
            head.append(contentsOf: "\r\n\r\n".utf8)
            queueRaw(head)
            if !noBody && length > 0 {
                streamingSequence = entry.sequence
                FileSender.start(connection: self, path: path, offset: offset, length: length, sequence: entry.sequence)
            }
        case .stream(let length, let chunks):
            if let length {
                head.append(contentsOf: "Content-Length: ".utf8)
                head.append(contentsOf: String(length).utf8)
                head.append(contentsOf: "\r\n".utf8)
                streamingChunked = false
            } else {
                head.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
                streamingChunked = true
            }
            head.append(contentsOf: "\r\n".utf8)
            queueRaw(head)
            if !noBody {
                streamingSequence = entry.sequence
                let actor = loop.actor!
                let id = self.id
                let sequence = entry.sequence
                Task.detached {
                    var failed = false
                    do {
                        for try await chunk in chunks where !chunk.isEmpty {
                            if await !actor.writeChunk(connection: id, sequence: sequence, chunk: chunk) { return }
                        }
                    } catch {
                        failed = true
                    }
                    await actor.finishStream(connection: id, sequence: sequence, failed: failed)
                }
            }
        }
    }

    func writeStreamChunk(_ chunk: [UInt8]) {
        if streamingChunked {
            queueRaw(Array(String(chunk.count, radix: 16).utf8) + [0x0D, 0x0A])
            queueRaw(chunk)
            queueRaw([0x0D, 0x0A])
        } else {
            queueRaw(chunk)
        }
    }

    /// Ends a streamed or file response; a failed stream closes the connection, since the
    /// peer cannot otherwise tell a truncated body.
    func finishStream(failed: Bool) {
        if streamingChunked && !failed { queueRaw(Array("0\r\n\r\n".utf8)) }
        streamingSequence = nil
        streamingChunked = false
        if failed {
            closeAfterWrite = true
            markDirty()
            return
        }
        if closeAfterWrite { markDirty(); return }
        if parserPaused && pending.count <= limits.maxPipelined / 2 { resumeParser() }
        dispatchNext()
    }

    func queueRaw(_ bytes: [UInt8]) {
        if output.isEmpty && output.capacity < bytes.count { output = bytes } else { output.append(contentsOf: bytes) }
        markDirty()
    }

    private func markDirty() {
        guard !isDirty else { return }
        isDirty = true
        loop.dirty.append(self)
    }

    /// Writes queued output: `uv_try_write` first, `uv_write` for what the socket did not take.
    func flush() {
        isDirty = false
        guard !closing else { return }
        if !output.isEmpty && writesInFlight == 0 {
            let written: Int = output.withUnsafeMutableBytes { raw in
                var buf = uv_buf_init(raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(raw.count))
                return Int(uv_try_write(stream, &buf, 1))
            }
            if written == output.count {
                output.removeAll(keepingCapacity: output.capacity <= 64 * 1024)
            } else if written < 0 && written != Int(UV_EAGAIN.rawValue) {
                close()
                return
            } else {
                let rest = written > 0 ? Array(output[written...]) : output
                output = []
                startWrite(rest)
            }
        }
        if output.isEmpty && writesInFlight == 0 {
            resumeDrainWaiters()
            if closeAfterWrite { close() } else { fileSender?.writeDrained() }
        }
        if !closing { checkOutputPressure() }
    }

    private func startWrite(_ bytes: [UInt8]) {
        let request = WriteRequest(bytes: bytes, connection: self)
        if writesInFlight == 0 {
            writeProgressAt = uv_now(loop.uv)
            lastWriteQueueSize = 0
        }
        writesInFlight += 1
        writeBacklog += bytes.count
        let rc = request.submit(stream)
        if rc != 0 {
            writesInFlight -= 1
            writeBacklog -= bytes.count
            close()
        }
    }

    func writeFinished(_ request: WriteRequest, status: Int32) {
        writesInFlight -= 1
        writeBacklog -= request.count
        if status < 0 { close(); return }
        writeProgressAt = uv_now(loop.uv)
        checkOutputPressure()
        if closing { return }
        if writesInFlight == 0 {
            if !output.isEmpty { markDirty() } else {
                resumeDrainWaiters()
                if closeAfterWrite { close() }
                else if let sender = fileSender { sender.writeDrained() }
            }
        }
    }

    var fileSender: FileSender?

    private func resumeDrainWaiters() {
        guard !drainWaiters.isEmpty else { return }
        let waiters = drainWaiters
        drainWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Timeouts, shutdown and closing

    func timedOut(now: UInt64) {
        deadline = 0
        switch parseState {
        case .betweenMessages:
            if writesInFlight > 0 || !output.isEmpty {
                // Not idle while answers are still going out: the write-stall check judges
                // the peer meanwhile, and idleness counts again once they are out.
                deadline = now + limits.idleTimeoutMs
                return
            }
            close()  // idle keep-alive connection, or a connection that never sent a byte
        case .body where bodyAnswered:
            close()  // its request was answered: there is nothing left to answer with 408
        case .head, .body:
            reject(.timeout)
        }
    }

    /// Sweep, while writes are in flight: a peer that reads nothing of its answers for the idle
    /// timeout is dropped, so that connections that never read cannot hold their output (and
    /// themselves) for ever. libuv's write queue shrinks as the socket takes any part of it.
    func checkWriteProgress(now: UInt64) {
        let queued = uv_stream_get_write_queue_size(stream)
        if queued < lastWriteQueueSize { writeProgressAt = now }
        lastWriteQueueSize = queued
        if now &- writeProgressAt >= limits.idleTimeoutMs { close() }
    }

    func drainForShutdown() {
        if inFlight == nil && streamingSequence == nil && pending.isEmpty && parseState == .betweenMessages {
            close()
        } else {
            stopReading()
        }
    }

    func close() {
        guard !closing else { return }
        closing = true
        if let runner = idleRunner {
            idleRunner = nil
            runner.resume(returning: nil)
        }
        reading = false
        deadline = 0
        bodyStream?.finish(.connectionClosed)
        bodyStream = nil
        resumeDrainWaiters()
        fileSender?.cancel()
        // The handle keeps the connection alive until libuv is done with it (a refused
        // connection is in no table).
        tcp.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let connection = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeRetainedValue()
            connection.closed()
        }
    }

    private func closed() {
        tcp.deallocate()
        if admitted { loop.server.releaseConnection() }
        if countedForPeer { loop.server.releasePeer(peer) }
        loop.connections.removeValue(forKey: id)
        loop.closeIfDrained()
    }
}

/// One `uv_write` and the bytes it must keep alive until its callback.
final class WriteRequest {
    let request: UnsafeMutablePointer<uv_write_t>
    let storage: UnsafeMutableRawBufferPointer
    let connection: Connection
    var count: Int { storage.count }

    init(bytes: [UInt8], connection: Connection) {
        storage = .allocate(byteCount: bytes.count, alignment: 1)
        storage.copyBytes(from: bytes)
        self.connection = connection
        request = .allocate(capacity: 1)
    }

    deinit {
        request.deallocate()
        storage.deallocate()
    }

    func submit(_ stream: UnsafeMutablePointer<uv_stream_t>) -> Int32 {
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var buf = uv_buf_init(storage.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(storage.count))
        let rc = uv_write(request, stream, &buf, 1) { req, status in
            let me = Unmanaged<WriteRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
            me.connection.writeFinished(me, status: status)
        }
        if rc != 0 { Unmanaged<WriteRequest>.fromOpaque(request.pointee.data).release() }
        return rc
    }
}

// C callbacks of the parser shim: context is the connection, unretained.
@inline(__always)
private func connection(of parser: UnsafeMutablePointer<myelin_http>?) -> Connection {
    Unmanaged<Connection>.fromOpaque(parser!.pointee.context).takeUnretainedValue()
}

let installParserCallbacks: Void = {
    myelin_http_set_callbacks(
        { parser in connection(of: parser).messageBegan() },
        { parser in connection(of: parser).headComplete() },
        { parser, at, length in connection(of: parser).body(UnsafeRawBufferPointer(start: at, count: length)) },
        { parser in connection(of: parser).messageComplete() })
}()

/// Status lines and decimal numbers written straight into the output buffer.
enum StatusLine {
    static let common: [Int: [UInt8]] = {
        var table: [Int: [UInt8]] = [:]
        for status in [200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 502, 503] {
            table[status] = Array("HTTP/1.1 \(status) \(reasonPhrase(status))\r\n".utf8)
        }
        return table
    }()

    static func append(_ status: Int, to out: inout [UInt8]) {
        if status == 200 {
            out.append(contentsOf: "HTTP/1.1 200 OK\r\n".utf8)
        } else if let line = common[status] {
            out.append(contentsOf: line)
        } else {
            out.append(contentsOf: "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n".utf8)
        }
    }

    static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value < 10 { out.append(UInt8(48 + value)); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = value
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            while n > 0 && count < 20 {
                raw[19 - count] = UInt8(48 + n % 10)
                n /= 10
                count += 1
            }
            out.append(contentsOf: raw[(20 - count)...])
        }
    }
}
