import CLibUV
import CLLHTTP
import Glibc

/// One TCP connection of the client pool: connects to the first address that answers,
/// writes one request at a time, parses the response with llhttp, and goes back to the pool
/// when the response ended cleanly and both sides keep the connection alive.
///
/// Threading: the client loop's thread only. The pool retains it while it is open; libuv
/// handles point at it unretained (no callback but `close_cb` runs after `uv_close`), and
/// the connect request retains it because its callback does run after a close.
final class ClientConnection {
    enum TimerMode { case none, connect, read, idle }

    unowned let pool: ClientPool
    let key: ClientPool.Key
    let id: UInt64
    private var tcp: UnsafeMutablePointer<uv_tcp_t>?
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private let parser: UnsafeMutablePointer<myelin_http>
    private var timerMode = TimerMode.none
    private var addresses: [ResolvedAddress] = []
    private var nextAddress = 0
    private(set) var connected = false
    private(set) var closed = false
    var exchange: ClientExchange?
    /// The connection served a response before (a failure before any byte may be its
    /// server's keep-alive timeout racing our request).
    private(set) var reused = false
    private var bytesThisResponse = 0
    private var status = 0
    private var interim = false
    private var messageDone = false
    private var keepAlive = false
    private var failure: HTTPClientError?
    /// HTTPS: the TLS state between the socket and the parser.
    private var engine: TLSEngine?
    private var writeFailed = false
    private var lastConnectError = ""

    init(pool: ClientPool, key: ClientPool.Key, id: UInt64) {
        self.pool = pool
        self.key = key
        self.id = id
        ClientConnection.installParserCallbacks
        timer = .allocate(capacity: 1)
        uv_timer_init(pool.loop.uv, timer)
        parser = .allocate(capacity: 1)
        myelin_http_init_response(parser, UInt32(clamping: pool.configuration.maxHeaderBytes), nil)
        let me = Unmanaged.passUnretained(self).toOpaque()
        timer.pointee.data = me
        parser.pointee.context = me
    }

    // MARK: Connecting

    func connect(to addresses: [ResolvedAddress]) {
        self.addresses = addresses
        nextAddress = 0
        connectNext()
    }

    private func connectNext() {
        guard !closed else { return }
        guard nextAddress < addresses.count else {
            fail(HTTPClientError(.connectFailed, "no address of \(key.host) accepted a connection (\(lastConnectError))"))
            return
        }
        let address = addresses[nextAddress]
        nextAddress += 1
        closeSocket()
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(pool.loop.uv, tcp)
        tcp.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        self.tcp = tcp
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(ConnectAttempt(connection: self, tcp: tcp)).toOpaque()
        var storage = address.storage
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                uv_tcp_connect(request, tcp, sa) { request, status in
                    let attempt = Unmanaged<ConnectAttempt>.fromOpaque(request!.pointee.data).takeRetainedValue()
                    request!.deallocate()
                    attempt.connection.connected(status: status, tcp: attempt.tcp)
                }
            }
        }
        if rc != 0 {
            lastConnectError = String(cString: uv_strerror(rc))
            Unmanaged<ConnectAttempt>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            connectNext()
            return
        }
        startTimer(.connect, pool.configuration.connectTimeoutMs)
    }

    private func connected(status: Int32, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        // A late callback of an attempt this connection gave up on (timeout, close).
        guard !closed, tcp == self.tcp else { return }
        guard status == 0 else {
            lastConnectError = String(cString: uv_strerror(status))
            connectNext()
            return
        }
        connected = true
        uv_tcp_nodelay(tcp, 1)
        let stream = UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
        uv_read_start(stream, { handle, suggested, buffer in
            let connection = Unmanaged<ClientConnection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            buffer!.pointee = uv_buf_init(connection.pool.readBuffer, UInt32(connection.pool.readBufferSize))
        }, { stream, nread, _ in
            let connection = Unmanaged<ClientConnection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            connection.didRead(nread)
        })
        if key.scheme == .https {
            do {
                // SNI and the certificate check: the name the caller gave, else the host
                // (an IP literal is checked against the certificate's IP addresses).
                let engine = try TLSEngine(context: pool.tls, host: key.tlsServerName ?? key.host)
                self.engine = engine
                try engine.handshake()
                writeCiphertext()
            } catch {
                fail(HTTPClientError(.tls, "\(error)"))
                return
            }
        }
        guard let exchange else { return }
        send(exchange)
    }

    /// Sends what the TLS engine has for the peer.
    private func writeCiphertext() {
        guard let engine, engine.pendingCiphertext > 0 else { return }
        writeRaw(engine.takeCiphertext())
    }

    private func writeRaw(_ bytes: [UInt8]) {
        guard let tcp, !bytes.isEmpty else { return }
        let count = bytes.count
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
        bytes.withUnsafeBufferPointer { buffer.initialize(from: $0.baseAddress!, count: count) }
        let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        request.pointee.data = UnsafeMutableRawPointer(buffer)
        var buf = uv_buf_init(UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: CChar.self), UInt32(count))
        let stream = UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
        let rc = uv_write(request, stream, &buf, 1) { request, _ in
            request!.pointee.data.assumingMemoryBound(to: UInt8.self).deallocate()
            request!.deallocate()
        }
        if rc != 0 {
            buffer.deallocate()
            request.deallocate()
            writeFailed = true
        }
    }

    // MARK: Requests

    /// Writes `exchange`'s request (the connection is open and has no request in flight).
    func send(_ exchange: ClientExchange) {
        self.exchange = exchange
        guard connected, tcp != nil else { return }  // sent once connected
        stopTimer()
        bytesThisResponse = 0
        messageDone = false
        interim = false
        failure = nil
        writeFailed = false
        if let engine {
            var failed: TLSError?
            exchange.bytes.withUnsafeBytes { raw in
                do throws(TLSError) { try engine.write(raw) } catch { failed = error }
            }
            if let failed {
                fail(HTTPClientError(.tls, "\(failed)"))
                return
            }
            writeCiphertext()
        } else {
            writeRaw(exchange.bytes)
        }
        if writeFailed { closedEarly(); return }
        startTimer(.read, pool.configuration.readTimeoutMs)
    }

    private func didRead(_ nread: Int) {
        guard !closed else { return }
        if nread < 0 { endOfInput(); return }
        guard nread > 0 else { return }
        if timerMode == .read { startTimer(.read, pool.configuration.readTimeoutMs) }
        guard let engine else {
            parse(pool.readBuffer, nread)
            return
        }
        engine.receive(UnsafeRawBufferPointer(start: pool.readBuffer, count: nread))
        while !closed {
            let result: TLSEngine.ReadResult
            do {
                result = try engine.read(into: UnsafeMutableRawBufferPointer(start: pool.plainBuffer, count: pool.readBufferSize))
            } catch {
                writeCiphertext()
                fail(HTTPClientError(.tls, "\(error)"))
                return
            }
            switch result {
            case .bytes(let n):
                parse(pool.plainBuffer, n)
            case .wantsInput:
                writeCiphertext()
                return
            case .closed:
                endOfInput()
                return
            }
        }
    }

    /// The peer closed (EOF, reset or TLS close_notify).
    private func endOfInput() {
        if exchange != nil, bytesThisResponse > 0 {
            // A body delimited by the end of the connection.
            _ = myelin_http_finish(parser)  // 0, or HPE_PAUSED from the end callback
            if messageDone { complete(); return }
        }
        closedEarly()
    }

    /// Parses response bytes (plaintext).
    private func parse(_ bytes: UnsafeMutablePointer<CChar>, _ count: Int) {
        guard exchange != nil else {
            // Bytes nobody asked for on an idle connection: never reuse it.
            close()
            return
        }
        bytesThisResponse += count
        let rc = myelin_http_execute(parser, bytes, count)
        if rc == Int32(HPE_PAUSED.rawValue) {
            // Paused at the end of the response: anything after it was not asked for.
            let position = myelin_http_error_pos(parser)
            let consumed = position.map { $0 - UnsafePointer(bytes) } ?? count
            if consumed < count { keepAlive = false }
            complete()
            return
        }
        guard rc == 0 else {
            if failure == nil && parser.pointee.error != 0 {
                failure = HTTPClientError(.tooLarge, "response head over \(pool.configuration.maxHeaderBytes) bytes or too many headers")
            }
            fail(failure ?? HTTPClientError(.invalidResponse, "unparseable response from \(key.host)"))
            return
        }
    }

    /// The response ended: the connection goes back to the pool or closes.
    private func complete() {
        guard let exchange else { return }
        self.exchange = nil
        exchange.finish()
        reused = true
        if keepAlive {
            myelin_http_resume(parser)
            pool.release(self)
        } else {
            close()
        }
    }

    /// The peer closed or reset before the response ended.
    private func closedEarly() {
        guard let exchange else { close(); return }
        self.exchange = nil
        close()
        if reused, bytesThisResponse == 0, !exchange.retried, exchange.idempotent {
            exchange.retried = true
            pool.retry(exchange)
            return
        }
        exchange.fail(HTTPClientError(.invalidResponse, "connection to \(key.host) closed before the response ended"))
    }

    /// Fails the request in flight (if any) and closes.
    func fail(_ error: HTTPClientError) {
        let exchange = self.exchange
        self.exchange = nil
        close()
        exchange?.fail(error)
    }

    // MARK: Parser callbacks

    fileprivate func head() -> Int32 {
        guard let exchange else { return -1 }
        status = Int(myelin_http_status(parser))
        if status >= 100 && status < 200 {
            // 1xx: interim, the real head follows; 101 would switch protocols (never asked).
            if status == 101 { failure = HTTPClientError(.invalidResponse, "unexpected 101"); return -1 }
            interim = true
            return 0
        }
        if myelin_http_has_content_length(parser) != 0,
           myelin_http_content_length(parser) > UInt64(limit(exchange)) {
            failure = HTTPClientError(.tooLarge, "response of \(myelin_http_content_length(parser)) bytes")
            return -1
        }
        keepAlive = myelin_http_keep_alive(parser) != 0
        exchange.deliverHead(status: status, headers: headers())
        return exchange.isHead ? 1 : 0
    }

    fileprivate func body(_ at: UnsafePointer<CChar>, _ length: Int) -> Int32 {
        guard let exchange else { return -1 }
        exchange.received += length
        guard exchange.received <= limit(exchange) else {
            failure = HTTPClientError(.tooLarge, "response body over \(limit(exchange)) bytes")
            return -1
        }
        exchange.deliver(Array(UnsafeRawBufferPointer(start: at, count: length)))
        return 0
    }

    private func limit(_ exchange: ClientExchange) -> Int {
        min(max(0, exchange.request.maxResponseBytes ?? Int.max), pool.configuration.maxResponseBytes)
    }

    fileprivate func end() -> Int32 {
        if interim { interim = false; return 0 }
        keepAlive = keepAlive && myelin_http_keep_alive(parser) != 0
        messageDone = true
        return Int32(HPE_PAUSED.rawValue)
    }

    private func headers() -> HTTPHeaders {
        let h = parser.pointee
        var headers = HTTPHeaders()
        guard let arena = h.arena else { return headers }
        for i in 0..<Int(h.header_count) {
            let e = h.headers[i]
            func text(_ offset: UInt32, _ length: UInt32) -> String {
                String(decoding: UnsafeRawBufferPointer(start: arena + Int(offset), count: Int(length)), as: UTF8.self)
            }
            headers.add(text(e.name_offset, e.name_length), text(e.value_offset, e.value_length))
        }
        return headers
    }

    private static let installParserCallbacks: Void = {
        myelin_http_set_response_callbacks({ _ in }, { h in
            ClientConnection.from(h).head()
        }, { h, at, length in
            ClientConnection.from(h).body(at!, length)
        }, { h in
            ClientConnection.from(h).end()
        })
    }()

    private static func from(_ h: UnsafeMutablePointer<myelin_http>?) -> ClientConnection {
        Unmanaged<ClientConnection>.fromOpaque(h!.pointee.context).takeUnretainedValue()
    }

    // MARK: Timers and closing

    private func startTimer(_ mode: TimerMode, _ ms: UInt64) {
        timerMode = mode
        uv_timer_start(timer, { timer in
            Unmanaged<ClientConnection>.fromOpaque(timer!.pointee.data).takeUnretainedValue().timedOut()
        }, max(1, ms), 0)
    }

    func startIdleTimer() { startTimer(.idle, pool.configuration.idleTimeoutMs) }

    func stopTimer() {
        timerMode = .none
        uv_timer_stop(timer)
    }

    private func timedOut() {
        switch timerMode {
        case .connect:
            // The next address, if any; the slow one is abandoned.
            guard nextAddress < addresses.count else {
                fail(HTTPClientError(.connectTimeout, "connecting to \(key.host) timed out"))
                return
            }
            connectNext()
        case .read: fail(HTTPClientError(.readTimeout, "no response from \(key.host) in time"))
        case .idle: close()
        case .none: break
        }
    }

    private func closeSocket() {
        guard let tcp else { return }
        self.tcp = nil
        connected = false
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            handle?.deallocate()
        }
    }

    /// Closes the socket and the timer; the pool forgets the connection.
    func close() {
        guard !closed else { return }
        closed = true
        closeSocket()
        uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            handle?.deallocate()
        }
        myelin_http_release(parser)
        parser.deallocate()
        pool.forget(self)
    }
}

/// What the connect callback needs, retained until it runs (it runs even after a close).
private final class ConnectAttempt {
    let connection: ClientConnection
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    init(connection: ClientConnection, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.connection = connection
        self.tcp = tcp
    }
}
