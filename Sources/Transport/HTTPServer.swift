import CLibUV
import Glibc
import Logging
import Synchronization

/// Errors starting the server.
public enum HTTPServerError: Error, CustomStringConvertible {
    case loopInit
    case thread(Int32)
    case bind(String)
    case listen(String)

    public var description: String {
        switch self {
        case .loopInit: return "cannot initialise an event loop"
        case .thread(let rc): return "cannot start a loop thread (\(rc))"
        case .bind(let why): return "cannot bind: \(why)"
        case .listen(let why): return "cannot listen: \(why)"
        }
    }
}

/// What the transport holds at one moment (`HTTPServer.stats()`), for metrics and tests.
public struct TransportStats: Sendable, Equatable {
    /// Open connections.
    public var connections = 0
    /// Response bytes queued on connections and not yet taken by their sockets (bytes handed
    /// to `uv_write` whose write has not completed, and bytes waiting for the next write).
    public var unsentOutputBytes = 0
    /// Connections that stopped reading because their unsent output passed the bound.
    public var connectionsPausedForOutput = 0
    /// Times, since start, that a connection stopped reading for its unsent output.
    public var outputPauses = 0
    /// Bytes held by the connections' head arenas, header tables and output buffers (freed
    /// by the loops' sweep while a connection waits; see `Connection.shedBuffers`).
    public var bufferBytes = 0

    public init() {}
}

/// The HTTP/1.1 server: `configuration.loops` libuv loops on their own threads, each with
/// its own SO_REUSEPORT listening socket, handing requests to one `HTTPResponder`.
///
/// Owned by the App; `start()` binds and starts the loops, `shutdown()` (or SIGTERM/SIGINT
/// with `handlesSignals`) drains them, `waitUntilStopped()` returns when every loop has exited.
public final class HTTPServer: Sendable {
    public let configuration: TransportConfiguration
    public let responder: any HTTPResponder
    let logger: Logger
    let handlesSignals: Bool
    /// Where handler tasks run; nil when they run on the loops (`LoopHandlers`).
    let workers: WorkerPool?
    /// Header lines added to every response, rendered once.
    let commonHeaderBytes: [UInt8]

    struct State {
        var loops: [EventLoop] = []
        var running = 0
        var stopped = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var startWaiter: CheckedContinuation<Void, Never>?
        var started = 0
        var boundPort = 0
    }

    private let state = Mutex(State())
    private let connectionCount = Atomic<Int>(0)
    /// Open connections per peer address (`configuration.maxConnectionsPerIP`).
    let peers: PeerConnectionTable
    private let requestCounter = Atomic<UInt64>(0)
    /// True for a TLS listener: each accepted connection gets a `TLSEngine` of `tlsContext`.
    let servesTLS: Bool
    /// The context new connections use; `replaceTLSContext` swaps it (certificate reload),
    /// while connections keep the context they started with.
    private let tlsContext: Mutex<TLSContext?>
    private let hangupHandler = Mutex<(@Sendable () -> Void)?>(nil)

    /// The IP blocks consulted at every accept (shared by the listeners of one process).
    public let addressFilter: AddressFilter

    /// `tls`: a server context makes this a TLS listener (every connection is TLS; nil: plain
    /// HTTP, whose path pays nothing for TLS).
    public init(configuration: TransportConfiguration, responder: any HTTPResponder,
                logger: Logger = Logger(label: "myelin.transport"), handlesSignals: Bool = false,
                commonHeaders: HTTPHeaders = HTTPHeaders(), workers: WorkerPool? = nil,
                tls: TLSContext? = nil, addressFilter: AddressFilter = AddressFilter()) {
        self.addressFilter = addressFilter
        precondition(tls?.isServer ?? true, "a listener needs a server TLS context")
        servesTLS = tls != nil
        tlsContext = Mutex(tls)
        switch configuration.handlers {
        case .loops: self.workers = nil
        case .workers: self.workers = workers ?? WorkerPool(threads: configuration.workers)
        }
        commonHeaderBytes = commonHeaders.reduce(into: []) { out, field in
            out.append(contentsOf: "\(field.name): \(field.value)\r\n".utf8)
        }
        self.configuration = configuration
        peers = PeerConnectionTable(limit: configuration.maxConnectionsPerIP,
                                    exemptsLoopback: configuration.connectionLimitExemptsLoopback,
                                    exemptPeers: configuration.connectionLimitExemptPeers)
        self.responder = responder
        self.logger = logger
        self.handlesSignals = handlesSignals
        _ = installParserCallbacks
        signal(SIGPIPE, SIG_IGN)
    }

    /// The port bound (useful with port 0).
    public var port: Int { state.withLock { $0.boundPort } }

    /// Requests parsed since start (every request the parser produced, answered or not).
    public var requestsParsed: UInt64 { requestCounter.load(ordering: .relaxed) }

    /// Open connections across every loop.
    public var openConnections: Int { connectionCount.load(ordering: .relaxed) }

    /// Binds every loop's socket and starts the loops. Returns once they all listen.
    @discardableResult
    public func start() async throws -> Int {
        let count = max(1, configuration.loops)
        var fds: [Int32] = []
        var port = configuration.port
        do {
            if port != 0 {
                // The loops' sockets share the port with SO_REUSEPORT, which would as gladly let
                // them join the sockets of another process already serving it (a second daemon
                // started by mistake, or one not yet gone): the kernel would then split the
                // connections between two servers with different stores. A socket without
                // SO_REUSEPORT cannot bind while anyone listens there: "Address already in use".
                Glibc.close(try Self.bindSocket(host: configuration.host, port: port, reusePort: false))
            }
            for _ in 0..<count {
                let fd = try Self.bindSocket(host: configuration.host, port: port)
                fds.append(fd)
                if port == 0 { port = Self.localPort(fd) }
            }
        } catch {
            for fd in fds { Glibc.close(fd) }
            throw error
        }
        var loops: [EventLoop] = []
        for i in 0..<count { loops.append(try EventLoop(index: i, server: self)) }
        state.withLock {
            $0.loops = loops
            $0.running = count
            $0.boundPort = port
        }
        await withCheckedContinuation { continuation in
            state.withLock { $0.startWaiter = continuation }
            for (loop, fd) in zip(loops, fds) {
                do { try loop.start(listenFD: fd) } catch { logger.error("\(error)") }
            }
        }
        logger.info("listening on \(configuration.host):\(port) with \(count) loop(s)")
        return port
    }

    func loopStarted() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { s in
            s.started += 1
            if s.started == s.loops.count, let w = s.startWaiter { s.startWaiter = nil; return w }
            return nil
        }
        waiter?.resume()
    }

    func loopStopped() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.running -= 1
            guard s.running == 0 else { return [] }
            s.stopped = true
            let w = s.waiters
            s.waiters = []
            return w
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Stops accepting, lets in-flight requests finish within `configuration.shutdownGraceMs`,
    /// then closes everything. Returns at once; `waitUntilStopped()` waits for the end.
    public func shutdown() {
        let loops = state.withLock { $0.loops }
        let grace = configuration.shutdownGraceMs
        for loop in loops {
            loop.execute { loop.beginShutdown(graceMs: grace) }
        }
    }

    /// Returns when every loop has stopped.
    public func waitUntilStopped() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { s -> Bool in
                if s.stopped || s.loops.isEmpty { return true }
                s.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    func admitConnection() -> Bool {
        let now = connectionCount.wrappingAdd(1, ordering: .relaxed).newValue
        if now > configuration.maxConnections {
            connectionCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func releaseConnection() { connectionCount.wrappingSubtract(1, ordering: .relaxed) }

    /// Whether connections are counted per peer at all.
    var limitsPeers: Bool { peers.limit > 0 }

    func admitPeer(_ key: PeerConnectionTable.Key) -> Bool { peers.admit(key) }

    func releasePeer(_ key: PeerConnectionTable.Key) { peers.release(key) }

    /// A snapshot of every loop's connections, taken on each loop's own thread. Call it only
    /// while the server runs (a stopped loop runs no more jobs).
    public func stats() async -> TransportStats {
        let loops = state.withLock { $0.loops }
        var total = TransportStats()
        for loop in loops {
            let part = await withCheckedContinuation { (continuation: CheckedContinuation<TransportStats, Never>) in
                loop.execute { continuation.resume(returning: loop.stats()) }
            }
            total.connections += part.connections
            total.unsentOutputBytes += part.unsentOutputBytes
            total.connectionsPausedForOutput += part.connectionsPausedForOutput
            total.outputPauses += part.outputPauses
            total.bufferBytes += part.bufferBytes
        }
        return total
    }

    /// Runs `handler` on SIGHUP (off the loop thread), when this server handles signals.
    public func onHangup(_ handler: @escaping @Sendable () -> Void) {
        hangupHandler.withLock { $0 = handler }
    }

    func hangupReceived() {
        guard let handler = hangupHandler.withLock({ $0 }) else {
            logger.info("SIGHUP: nothing to reload")
            return
        }
        Task.detached { handler() }
    }

    /// The context new TLS connections use (loop threads, at accept).
    func currentTLSContext() -> TLSContext? { tlsContext.withLock { $0 } }

    /// Uses `context` for the connections accepted from now on (a reloaded certificate);
    /// open connections keep theirs. Ignored on a plain listener.
    public func replaceTLSContext(_ context: TLSContext) {
        precondition(context.isServer, "a listener needs a server TLS context")
        guard servesTLS else { return }
        tlsContext.withLock { $0 = context }
    }

    func nextRequestID() -> UInt64 { requestCounter.wrappingAdd(1, ordering: .relaxed).newValue }

    func log(_ message: String) { logger.info("\(message)") }

    // MARK: Sockets

    static func bindSocket(host: String, port: Int, reusePort: Bool = true) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let info = result else {
            throw HTTPServerError.bind("\(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError.bind(String(cString: strerror(errno))) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HTTPServerError.bind("\(host):\(port): \(why)")
        }
        return fd
    }

    static func localPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        if storage.ss_family == sa_family_t(AF_INET6) {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }
}
