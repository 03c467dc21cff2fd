#if canImport(Glibc)
import Glibc
#endif
import CLibUV
import Foundation
import Synchronization

/// Monotonic nanoseconds (CLOCK_MONOTONIC), comparable across threads of this process.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Why a request got no HTTP response. Each is counted and reported, never a crash.
enum TransportFailure: Error, Sendable, CustomStringConvertible {
    case connectRefused
    case connectFailed(Int32)
    case closed(String)
    case malformed(String)
    case timeout
    case cancelled

    var description: String {
        switch self {
        case .connectRefused: "connection refused"
        case .connectFailed(let e): "connect failed (\(String(cString: strerror(e))))"
        case .closed(let why): "connection lost (\(why))"
        case .malformed(let why): "malformed response (\(why))"
        case .timeout: "timed out"
        case .cancelled: "cancelled"
        }
    }

    /// A short stable key for error tallies.
    var key: String {
        switch self {
        case .connectRefused: "refused"
        case .connectFailed: "connect-failed"
        case .closed: "connection-lost"
        case .malformed: "malformed"
        case .timeout: "timeout"
        case .cancelled: "cancelled"
        }
    }
}

/// Readiness bits passed from libuv's `uv_poll` to a connection.
struct PollEvents: OptionSet, Sendable {
    let rawValue: Int32
    static let readable = PollEvents(rawValue: Int32(UV_READABLE.rawValue))
    static let writable = PollEvents(rawValue: Int32(UV_WRITABLE.rawValue))
    static let disconnect = PollEvents(rawValue: Int32(UV_DISCONNECT.rawValue))
    static let error = PollEvents(rawValue: 1 << 16)  // status < 0 from libuv
}

/// One libuv loop on its own thread: owns a set of non-blocking client sockets (watched with
/// `uv_poll`, i.e. epoll), writes their requests, parses their responses and resumes the
/// awaiting tasks.
///
/// Tasks hand work in through `submit` (a locked queue plus one byte on a wake pipe watched by
/// the loop: libuv 1.44's `uv_async_send` spins under contention). Everything else in this
/// class, and every `ClientConnection`'s socket state, belongs to the loop thread.
final class ClientLoop: @unchecked Sendable {
    private let uv: UnsafeMutablePointer<uv_loop_t>
    private let wakePoll: UnsafeMutablePointer<uv_poll_t>
    private let sweepTimer: UnsafeMutablePointer<uv_timer_t>
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let inbox = Mutex<[ClientConnection.Command]>([])
    private let wakePending = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    // Loop thread only:
    private var sockets: [UInt64: (conn: ClientConnection, poll: UnsafeMutablePointer<uv_poll_t>)] = [:]
    private var inFlightConnections: [ObjectIdentifier: ClientConnection] = [:]
    private var nextToken: UInt64 = 1
    /// Scratch for `recv`, shared by this loop's connections (one read at a time).
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    let address: SocketAddress
    private var thread: Thread?

    init(address: SocketAddress, name: String) {
        self.address = address
        uv = .allocate(capacity: 1)
        wakePoll = .allocate(capacity: 1)
        sweepTimer = .allocate(capacity: 1)
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0, "pipe: \(String(cString: strerror(errno)))")
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        uv_loop_init(uv)
        uv_poll_init(uv, wakePoll, wakeRead)
        uv_timer_init(uv, sweepTimer)
        let t = Thread { [self] in self.run() }
        t.name = name
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Called from any thread.
    func submit(_ command: ClientConnection.Command) {
        inbox.withLock { $0.append(command) }
        wake()
    }

    private func wake() {
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            var one: UInt8 = 1
            _ = write(wakeWrite, &one, 1)
        }
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        wakePending.store(false, ordering: .releasing)
        wake()
    }

    private static func loop(of handle: UnsafeMutableRawPointer?) -> ClientLoop {
        let h = handle!.assumingMemoryBound(to: uv_handle_t.self)
        return Unmanaged<ClientLoop>.fromOpaque(h.pointee.loop.pointee.data!).takeUnretainedValue()
    }

    private func run() {
        uv.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_poll_start(wakePoll, Int32(UV_READABLE.rawValue)) { handle, _, _ in
            ClientLoop.loop(of: handle).onWake()
        }
        uv_timer_start(sweepTimer, { timer in
            ClientLoop.loop(of: timer).sweepDeadlines(now: monotonicNanos())
        }, 200, 200)
        uv_run(uv, UV_RUN_DEFAULT)
        // Stopped: fail whatever is still waiting, then release libuv's handles.
        drainInbox()
        for (_, entry) in sockets { entry.conn.fail(.cancelled, loop: self) }
        for conn in Array(inFlightConnections.values) { conn.fail(.cancelled, loop: self) }
        uv_poll_stop(wakePoll)
        uv_timer_stop(sweepTimer)
        uv_close(UnsafeMutableRawPointer(wakePoll).assumingMemoryBound(to: uv_handle_t.self), nil)
        uv_close(UnsafeMutableRawPointer(sweepTimer).assumingMemoryBound(to: uv_handle_t.self), nil)
        uv_run(uv, UV_RUN_DEFAULT)  // runs the close callbacks
        uv_loop_close(uv)
    }

    private func onWake() {
        var scratch = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &scratch, 64) > 0 {}
        drainInbox()
        if stopping.load(ordering: .acquiring) { uv_stop(uv) }
    }

    private func drainInbox() {
        wakePending.store(false, ordering: .releasing)
        let commands = inbox.withLock { q -> [ClientConnection.Command] in
            let c = q; q.removeAll(keepingCapacity: true); return c
        }
        for command in commands {
            if stopping.load(ordering: .relaxed) {
                command.connection.failCommand(command, .cancelled)
                continue
            }
            command.connection.start(command, loop: self)
        }
    }

    private func sweepDeadlines(now: UInt64) {
        var expired: [ClientConnection] = []
        for conn in inFlightConnections.values where conn.deadline != 0 && conn.deadline < now {
            expired.append(conn)
        }
        for conn in expired { conn.fail(.timeout, loop: self) }
    }

    // MARK: used by ClientConnection on the loop thread

    /// Watches a new socket; `events` are the readiness bits to wait for.
    func register(_ conn: ClientConnection, fd: Int32, events: PollEvents) -> UInt64 {
        let token = nextToken
        nextToken += 1
        let poll = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
        uv_poll_init(uv, poll, fd)
        poll.pointee.data = UnsafeMutableRawPointer(bitPattern: UInt(token))
        sockets[token] = (conn, poll)
        watch(token: token, events)
        return token
    }

    /// Changes what a socket waits for (libuv's poll is level-triggered: wait for writable only
    /// while there is something to write).
    func watch(token: UInt64, _ events: PollEvents) {
        guard let entry = sockets[token] else { return }
        uv_poll_start(entry.poll, events.rawValue) { handle, status, events in
            let loop = ClientLoop.loop(of: handle)
            let token = UInt64(UInt(bitPattern: handle!.pointee.data))
            guard let conn = loop.sockets[token]?.conn else { return }
            var e = PollEvents(rawValue: events)
            if status < 0 { e.insert(.error) }
            conn.handle(events: e, loop: loop)
        }
    }

    /// Stops watching a socket; the caller closes the fd afterwards.
    func unregister(token: UInt64) {
        guard let entry = sockets.removeValue(forKey: token) else { return }
        uv_poll_stop(entry.poll)
        uv_close(UnsafeMutableRawPointer(entry.poll).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            handle?.withMemoryRebound(to: uv_poll_t.self, capacity: 1) { $0.deallocate() }
        }
    }

    func markInFlight(_ conn: ClientConnection, _ on: Bool) {
        if on { inFlightConnections[ObjectIdentifier(conn)] = conn } else { inFlightConnections[ObjectIdentifier(conn)] = nil }
    }
}

/// A resolved server address (IPv4 or IPv6), as raw sockaddr bytes.
struct SocketAddress: Sendable {
    var storage: [UInt8]
    var family: Int32
    var hostHeader: String

    /// Resolves host and port once, at start-up (getaddrinfo blocks; never on the hot path).
    static func resolve(host: String, port: Int) throws -> SocketAddress {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw BenchError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return SocketAddress(storage: bytes, family: first.pointee.ai_family, hostHeader: "\(hostPart):\(port)")
    }
}

/// A plain error with a message for the operator.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
