/// Limits and threads of the HTTP transport (the `transport:` section of the configuration).
public struct TransportConfiguration: Sendable, Equatable {
    /// Where request handlers run (`transport.handlers`).
    public enum HandlerThreads: String, Sendable, Equatable, CaseIterable {
        /// On the thread of the loop that read the request (`LoopHandlers`): a request is read,
        /// handled and answered on one thread. A handler that computes for long holds up the
        /// other connections of its loop while it does.
        case loops
        /// On the `WorkerPool`: each request and each answer crosses between a loop thread and
        /// a worker thread; a long handler holds up one worker, not a loop's connections.
        case workers
    }

    /// Event loops, each on its own thread with its own SO_REUSEPORT listening socket.
    public var loops: Int
    /// Threads that run request handlers (the `WorkerPool`), when `handlers` is `.workers`.
    public var workers: Int
    /// Where request handlers run: on the thread of the loop that read the request, or on
    /// the worker pool.
    public var handlers: HandlerThreads = .loops
    public var host: String
    public var port: Int
    public var backlog: Int32
    /// Bytes of request line + headers; past it the request gets 431.
    public var maxHeaderBytes: Int
    /// Bytes of a buffered (JSON) body; past it the request gets 413.
    public var maxJSONBodyBytes: Int
    /// Bytes of a streamed (media) body.
    public var maxMediaBodyBytes: Int
    public var maxConnections: Int
    /// Open connections from one peer address (IPv4 address, or IPv6 /64 prefix) across every
    /// loop; past it a new connection is closed at accept. 0 means no limit. Behind a reverse
    /// proxy every connection comes from the proxy: exempt it (below).
    public var maxConnectionsPerIP: Int
    /// Peers the per-address limit does not apply to: loopback (when set) and the listed
    /// addresses — a reverse proxy carries every client on its own address.
    public var connectionLimitExemptsLoopback = false
    public var connectionLimitExemptPeers: [String] = []
    /// Time from a request's first byte until its head is complete.
    public var headerReadTimeoutMs: UInt64
    /// Time from the end of a request's head until its whole body has arrived (absolute, not
    /// reset by each read), extended by what the body earns at `minBodyBytesPerSecond`. Time
    /// the server itself stops reading (a slow consumer of a streamed body, unsent output) is
    /// not charged to the peer.
    public var bodyReadTimeoutMs: UInt64
    /// Each body byte received extends the body deadline by 1/this seconds, so that a large
    /// upload arriving at least this fast is not cut off at `bodyReadTimeoutMs` while a peer
    /// that stops sending is. 0: the body deadline is `bodyReadTimeoutMs` whatever the size.
    public var minBodyBytesPerSecond: Int
    /// How long a keep-alive connection may sit idle between requests; also how long a
    /// connection with unsent output may go without the peer reading any of it (write stall).
    public var idleTimeoutMs: UInt64
    /// Output queued on one connection and not yet taken by the socket; past it the connection
    /// stops reading and answering requests until it drains below half (a peer that pipelines
    /// requests without reading the answers cannot make the server buffer without bound).
    public var maxUnsentOutputBytes: Int
    /// How long shutdown waits for in-flight requests before closing their connections.
    public var shutdownGraceMs: UInt64
    /// Parsed requests queued behind the one in flight before the connection stops reading.
    public var maxPipelined: Int

    public init(loops: Int = TransportConfiguration.defaultLoopCount, workers: Int = TransportConfiguration.defaultLoopCount, host: String = "127.0.0.1", port: Int = 8008,
                backlog: Int32 = 1024, maxHeaderBytes: Int = 16 * 1024, maxJSONBodyBytes: Int = 8 << 20,
                maxMediaBodyBytes: Int = 50 << 20, maxConnections: Int = 20_000,
                headerReadTimeoutMs: UInt64 = 10_000, bodyReadTimeoutMs: UInt64 = 30_000,
                idleTimeoutMs: UInt64 = 75_000, shutdownGraceMs: UInt64 = 10_000, maxPipelined: Int = 16,
                maxConnectionsPerIP: Int = 256, minBodyBytesPerSecond: Int = 8 * 1024,
                maxUnsentOutputBytes: Int = 1 << 20) {
        self.loops = loops
        self.workers = workers
        self.host = host
        self.port = port
        self.backlog = backlog
        self.maxHeaderBytes = maxHeaderBytes
        self.maxJSONBodyBytes = maxJSONBodyBytes
        self.maxMediaBodyBytes = maxMediaBodyBytes
        self.maxConnections = maxConnections
        self.headerReadTimeoutMs = headerReadTimeoutMs
        self.bodyReadTimeoutMs = bodyReadTimeoutMs
        self.idleTimeoutMs = idleTimeoutMs
        self.shutdownGraceMs = shutdownGraceMs
        self.maxPipelined = maxPipelined
        self.maxConnectionsPerIP = maxConnectionsPerIP
        self.minBodyBytesPerSecond = minBodyBytesPerSecond
        self.maxUnsentOutputBytes = maxUnsentOutputBytes
    }

    /// One loop per core.
    public static var defaultLoopCount: Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 1
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif
