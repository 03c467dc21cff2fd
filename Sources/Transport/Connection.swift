import CLibUV
import CLLHTTP
import Glibc

/// One accepted TCP connection: its parser, the requests parsed from it, and its output.
///
/// Its lifecycle (what it reads, which request is with the responder, why reading is stopped,
/// deadlines, writes in flight, closing) is one value, `state`; this class reports events to
/// it and performs the actions it returns, and holds the data and handles: the socket, the
/// parser, the queue of parsed requests, the body being read, the output buffer, the runner.
///
/// Layers, from the socket up: `received(_:)` takes the socket's bytes and `flush()` writes
/// `output` to it; between them and the HTTP parser (`parse(_:)`, `queueRaw(_:)`) sits the
/// TLS layer on a TLS listener, decrypting what `received` gets and encrypting what `flush`
/// sends. The files: this one (socket input and parsing), `Connection+TLS.swift`,
/// `Connection+Dispatch.swift` (the runner and delivery of responses),
/// `Connection+Output.swift` (responses onto the wire, writes, timeouts and closing).
///
/// Threading: owned by its loop's thread. Requests leave it as `HTTPRequest` values with
/// `(connection id, sequence)`; responses come back through `LoopActor.deliver`, which looks
/// the connection up again (it may have closed meanwhile).
final class Connection {
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
    /// The lifecycle; see `ConnectionStateMachine`.
    var state: ConnectionStateMachine
    var admitted = true
    /// Counted in the server's per-peer table under `peer`.
    var countedForPeer = false
    var peer = PeerConnectionTable.Key(high: 0, low: 0)
    var remoteAddress = ""

    var pending: [Pending] = []
    var nextSequence: UInt64 = 0
    /// Error answers waiting their turn behind earlier requests.
    var rejectedResponses: [UInt64: HTTPResponse] = [:]
    // The body of the message being parsed.
    var bodyBytes: [UInt8] = []
    var bodyStream: RequestBodyStream?
    /// Input kept while the parser is paused (too many pipelined requests).
    var pausedInput: [UInt8] = []
    /// A TLS listener's connection: the engine between the socket and the parser (see
    /// `Connection+TLS.swift`); nil on a plain listener.
    var tls: TLSEngine?

    // Output.
    var output: [UInt8] = []
    /// Queued in the loop's list of connections to flush.
    var isDirty = false
    var drainWaiters: [CheckedContinuation<Void, Never>] = []
    var fileSender: FileSender?
    /// Output not yet taken by the socket: queued here, or handed to `uv_write`.
    var backlog: Int { output.count + state.writeBacklog }

    /// The connection's runner while it waits for the next request (see `startRunner`).
    var idleRunner: UnsafeContinuation<Dispatched?, Never>?

    init(loop: EventLoop, id: UInt64) {
        self.loop = loop
        self.id = id
        state = ConnectionStateMachine(limits: loop.limits)
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
    var now: UInt64 { uv_now(loop.uv) }

    var closing: Bool { state.isClosed }

    func start() {
        uv_tcp_nodelay(tcp, 1)
        perform(state.start(now: now))
    }

    /// Reads the peer's address: `remoteAddress` for handlers, `peer` for the per-peer limit.
    func identifyPeer(_ address: inout sockaddr_storage?) {
        guard let storage = address else { return }
        peer = PeerConnectionTable.key(storage)
        remoteAddress = Connection.text(of: storage)
    }

    /// The peer's socket address (nil if the socket has no peer any more).
    func peerAddress() -> sockaddr_storage? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(tcp, $0, &length) }
        }
        return rc == 0 ? storage : nil
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

    // MARK: The socket's input

    /// Starts or stops reading the socket, as the state machine decided.
    @inline(__always)
    func perform(_ action: ConnectionStateMachine.ReadAction) {
        switch action {
        case .none: break
        case .start: startSocketRead()
        case .stop: uv_read_stop(stream)
        }
    }

    private func startSocketRead() {
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

    /// Bytes from the socket: plaintext to parse, or on a TLS connection ciphertext to decrypt.
    private func received(_ bytes: UnsafeRawBufferPointer) {
        loop.leftPoll()
        guard !state.isClosed else { return }
        if let tls {
            receivedCiphertext(bytes, tls)
            return
        }
        receivedPlaintext(bytes)
    }

    /// Plaintext for the parser, or kept while it is paused.
    func receivedPlaintext(_ bytes: UnsafeRawBufferPointer) {
        if state.parserPaused {
            pausedInput.append(contentsOf: bytes)
            perform(state.stopReading())
            return
        }
        parse(bytes)
    }

    func peerClosed() {
        perform(state.stopReading())
        if let bodyStream {
            bodyStream.finish(.connectionClosed)
            self.bodyStream = nil
        }
        // Nothing more will come: answer what was parsed if the peer only half-closed, but a
        // vanished peer cannot read it, so close now.
        close()
    }

    // MARK: Parsing

    /// Feeds plaintext to the HTTP parser, whose callbacks follow.
    private func parse(_ bytes: UnsafeRawBufferPointer) {
        let base = bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let rc = myelin_http_execute(parser, base, bytes.count)
        if rc == Int32(HPE_OK.rawValue) { return }
        if rc == Int32(HPE_PAUSED_UPGRADE.rawValue) {
            // No protocol upgrade is served: answer the request and close.
            perform(state.inputEnded())
            pending.last?.keepAlive = false
            return
        }
        if rc == Int32(HPE_PAUSED.rawValue) {
            let position = myelin_http_error_pos(parser)!
            let consumed = base.distance(to: position)
            pausedInput = Array(bytes[consumed...])
            perform(state.parserDidPause())
            return
        }
        parseFailed(rc)
    }

    /// Resumes the paused parser with the input kept meanwhile.
    func resumeParser() {
        state.parserWillResume()
        myelin_http_resume(parser)
        let input = pausedInput
        pausedInput = []
        if !input.isEmpty {
            input.withUnsafeBytes { parse($0) }
        }
        perform(state.resumeReadingIfAllowed())
    }

    private func parseFailed(_ rc: Int32) {
        perform(state.stopReading())
        if state.isRejected { return }  // a head or body callback already queued the answer
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
        perform(state.reject())
        bodyStream?.finish(error == .bodyTooLarge ? .tooLarge : .connectionClosed)
        bodyStream = nil
        pending.removeAll { !$0.complete }  // a buffered request whose body will never complete
        let response = loop.server.responder.errorResponse(error, remoteAddress: remoteAddress)
        let sequence = nextSequence
        nextSequence += 1
        pending.append(Pending(head: HTTPRequestHead(method: .get, target: "/"), body: .buffered([]), requestID: 0,
                               sequence: sequence, keepAlive: false, complete: true))
        rejectedResponses[sequence] = response
        dispatchNext()
    }

    // MARK: Parser callbacks (loop thread, inside myelin_http_execute)

    func messageBegan() {
        state.messageBegan(now: now)
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
        let streamed: Bool
        let bodyLimit: Int
        switch loop.server.responder.bodyPolicy(for: head) {
        case .buffer(let limit): bodyLimit = limit; streamed = false
        case .stream(let limit): bodyLimit = limit; streamed = true
        }
        guard state.headParsed(bodyLimit: bodyLimit, declaredLength: declared, streamed: streamed) else {
            reject(.bodyTooLarge)
            return -1
        }
        let hasBody = chunked || (declared ?? 0) > 0
        if p.expect_continue != 0 && hasBody {
            queueRaw(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
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
        state.bodyBegins(hasBody: hasBody, now: now)
        return 0
    }

    private func appendPending(_ head: HTTPRequestHead, body: RequestBody, requestID: UInt64, complete: Bool) {
        let sequence = nextSequence
        nextSequence += 1
        pending.append(Pending(head: head, body: body, requestID: requestID, sequence: sequence,
                               keepAlive: true, complete: complete))
    }

    func body(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        switch state.bodyReceived(count: bytes.count) {
        case .tooLarge:
            reject(.bodyTooLarge)
            return -1
        case .stream:
            // No stream once the request was answered: the rest of the body is dropped.
            if let bodyStream, !bodyStream.push(Array(bytes)) {
                perform(state.bodyConsumerFull(now: now))
            }
        case .buffer:
            bodyBytes.append(contentsOf: bytes)
        }
        return 0
    }

    func messageComplete() -> Int32 {
        let streamed = state.currentIsStreamed
        state.messageComplete()
        let keepAlive = myelin_http_keep_alive(parser) != 0
        if let last = pending.last {
            last.keepAlive = keepAlive
            if !streamed {
                last.body = .buffered(bodyBytes)
                bodyBytes = []
            }
            last.complete = true
        }
        if let bodyStream {
            bodyStream.finish()
            self.bodyStream = nil
        }
        dispatchNext()
        switch state.afterMessage(keepAlive: keepAlive, pending: pending.count) {
        case .proceed:
            return 0
        case .pause:
            return Int32(HPE_PAUSED.rawValue)
        case .pauseAndStop(let read):
            perform(read)
            return Int32(HPE_PAUSED.rawValue)
        }
    }

    /// The consumer of a streamed body took what it held (from its stream, via the loop).
    func resumeAfterBody() {
        perform(state.bodyConsumerDrained(now: now))
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
