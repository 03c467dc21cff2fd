import CLibUV
import CLLHTTP
import Dispatch
import Glibc
import Synchronization

/// One libuv loop on its own thread, and the `SerialExecutor` that runs Swift jobs on it.
///
/// Threading: everything but `enqueue`/`execute` is touched only by the loop's own thread
/// (libuv handles are not thread-safe). Other threads hand work over through `enqueue`,
/// which appends under a lock and wakes the loop once through an eventfd polled by
/// `uv_poll` (libuv 1.44's `uv_async_send` spins under contention); the loop drains every
/// queued job in one batch, then flushes every connection that has output.
final class EventLoop: SerialExecutor, @unchecked Sendable {
    enum Job {
        case task(UnownedJob)
        /// A request handler's job, when handlers run on the loops (`LoopHandlers`).
        case handler(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    struct Queue {
        var jobs: [Job] = []
        /// The eventfd holds a wake-up the loop has not read yet.
        var signaled = false
        /// The loop has drained the queue and is about to block in (or is blocked in) its
        /// poll: only then does a push need to write the eventfd. A push at any other time
        /// is picked up by the drain that runs before every poll.
        var polling = false
        /// The loop has stopped: handler jobs no longer queue here (`pushHandler`).
        var stopped = false
    }

    let index: Int
    /// The server outlives its loops (it waits for them to stop).
    unowned(unsafe) let server: HTTPServer
    let uv: UnsafeMutablePointer<uv_loop_t>
    let wakeFD: Int32
    let wakePoll: UnsafeMutablePointer<uv_poll_t>
    let sweepTimer: UnsafeMutablePointer<uv_timer_t>
    let graceTimer: UnsafeMutablePointer<uv_timer_t>
    /// Flushes output queued by any callback of this loop iteration (reads, files, jobs).
    let flushCheck: UnsafeMutablePointer<uv_check_t>
    /// Hands queued worker jobs over before the loop blocks (covers timer and close callbacks).
    let flushPrepare: UnsafeMutablePointer<uv_prepare_t>
    var listener: UnsafeMutablePointer<uv_tcp_t>?
    var listenFD: Int32 = -1
    var signals: [UnsafeMutablePointer<uv_signal_t>] = []
    private let queue = Mutex(Queue())
    private(set) var thread: pthread_t = pthread_t()
    private let started = Atomic<Bool>(false)

    /// The transport limits as plain numbers, read on every request.
    typealias Limits = ConnectionStateMachine.Limits
    let limits: Limits

    // Loop-thread state.
    var connections: [UInt64: Connection] = [:]
    var dirty: [Connection] = []
    var nextConnectionID: UInt64 = 0
    var draining = false
    var closed = false
    /// This loop's copy of the address filter's table and the generation it was read at
    /// (re-read only when `server.addressFilter.generation` moves).
    var blockTable = AddressFilter.Table.empty
    var blockGeneration: UInt64 = 0
    /// Times a connection of this loop stopped reading because of its unsent output.
    var outputPauses = 0
    /// A 64 KiB read buffer shared by every connection of this loop: a read is parsed
    /// completely before the next one starts, and the parser copies what it keeps.
    let readBuffer: UnsafeMutablePointer<CChar>
    let readBufferSize = 64 * 1024
    var dateHeader: [UInt8] = []
    var dateSecond: Int = -1
    /// Set at the end of `init` and never changed.
    private(set) var actor: LoopActor!
    /// The task executor of request handlers that run on this loop's thread
    /// (`transport.handlers: loops`).
    private(set) var handlers: LoopHandlers!
    /// Handler jobs this loop's own thread enqueued (no lock): run after the callbacks that
    /// queued them, in the same iteration.
    var localHandlerJobs: [UnownedJob] = []
    private var runningHandlerJobs: [UnownedJob] = []

    init(index: Int, server: HTTPServer) throws {
        self.index = index
        self.server = server
        let c = server.configuration
        limits = Limits(headerReadTimeoutMs: c.headerReadTimeoutMs, bodyReadTimeoutMs: c.bodyReadTimeoutMs,
                        idleTimeoutMs: c.idleTimeoutMs, maxPipelined: c.maxPipelined, maxHeaderBytes: c.maxHeaderBytes,
                        minBodyBytesPerSecond: UInt64(max(0, c.minBodyBytesPerSecond)),
                        maxUnsentOutputBytes: max(1, c.maxUnsentOutputBytes))
        uv = .allocate(capacity: 1)
        guard uv_loop_init(uv) == 0 else { uv.deallocate(); throw HTTPServerError.loopInit }
        wakeFD = myelin_eventfd()
        wakePoll = .allocate(capacity: 1)
        sweepTimer = .allocate(capacity: 1)
        graceTimer = .allocate(capacity: 1)
        flushCheck = .allocate(capacity: 1)
        flushPrepare = .allocate(capacity: 1)
        readBuffer = .allocate(capacity: readBufferSize)
        let me = Unmanaged.passUnretained(self).toOpaque()
        uv_poll_init(uv, wakePoll, wakeFD)
        wakePoll.pointee.data = me
        uv_timer_init(uv, sweepTimer)
        sweepTimer.pointee.data = me
        uv_timer_init(uv, graceTimer)
        graceTimer.pointee.data = me
        uv_check_init(uv, flushCheck)
        flushCheck.pointee.data = me
        uv_prepare_init(uv, flushPrepare)
        flushPrepare.pointee.data = me
        uv.pointee.data = me
        actor = LoopActor(loop: self)
        handlers = LoopHandlers(loop: self)
    }

    deinit {
        readBuffer.deallocate()
        close(wakeFD)
    }

    // MARK: Executor

    func enqueue(_ job: consuming ExecutorJob) {
        push(.task(UnownedJob(job)))
    }

    /// Runs `body` on the loop thread.
    func execute(_ body: @escaping @Sendable () -> Void) {
        push(.closure(body))
    }

    /// Runs `body` at once when called on this loop's thread (a handler running on its loop),
    /// else queues it to the loop as `execute` does.
    func runOnLoop(_ body: @escaping @Sendable () -> Void) {
        if WorkerPool.currentLoop === self { body() } else { execute(body) }
    }

    private func push(_ job: Job) {
        // On a worker thread, jobs for this loop wait in the worker's outbox and arrive in one
        // batch when the worker finishes its own batch: one lock and one wake-up for many.
        if let outbox = WorkerPool.currentOutbox {
            outbox.add(job, for: self)
            return
        }
        push(contentsOf: CollectionOfOne(job))
    }

    /// A handler job from another thread. Once the loop has stopped (a handler still running
    /// after shutdown's grace), it runs elsewhere, as it would have on the worker pool.
    func pushHandler(_ job: UnownedJob) {
        let accepted = queue.withLock { q -> Bool? in
            guard !q.stopped else { return nil }
            q.jobs.append(.handler(job))
            guard q.polling, !q.signaled else { return false }
            q.signaled = true
            return true
        }
        switch accepted {
        case nil: handlers.runElsewhere(job)
        case true?: signalWake()
        case false?: break
        }
    }

    /// Loop thread, after its last iteration: handler jobs still queued run elsewhere, and so
    /// do those that arrive later.
    private func handOverHandlers() {
        let left = queue.withLock { q -> [Job] in
            q.stopped = true
            let left = q.jobs
            q.jobs.removeAll()
            return left
        }
        for case .handler(let job) in left { handlers.runElsewhere(job) }
        for job in localHandlerJobs { handlers.runElsewhere(job) }
        localHandlerJobs.removeAll()
    }

    func push(contentsOf jobs: some Collection<Job>) {
        let wake = queue.withLock { q -> Bool in
            q.jobs.append(contentsOf: jobs)
            guard q.polling, !q.signaled else { return false }
            q.signaled = true
            return true
        }
        if wake { signalWake() }
    }

    private func signalWake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Loop thread: true while `Queue.polling` may be set (saves a lock per callback).
    private var pollingPublished = false

    /// Loop thread, from any callback that runs after the poll returned: pushes need no
    /// wake-up until the next `beforePoll`.
    @inline(__always)
    func leftPoll() {
        guard pollingPublished else { return }
        pollingPublished = false
        queue.withLock { $0.polling = false }
    }

    /// Loop thread, last thing before libuv polls: runs what other threads queued, writes
    /// what is owed, hands requests to the workers, then publishes that the loop may sleep
    /// (or wakes itself if jobs arrived meanwhile).
    func beforePoll() {
        runQueuedJobs()
        flushDirty()
        flushWorkerJobs()
        let localEmpty = localHandlerJobs.isEmpty
        let wakeSelf = queue.withLock { q -> Bool in
            if q.jobs.isEmpty && localEmpty {
                q.polling = true
                return false
            }
            guard !q.signaled else { return false }
            q.signaled = true
            return true
        }
        if wakeSelf { signalWake() } else { pollingPublished = true }
    }

    /// Jobs this loop's thread queued for the worker pool during this iteration, handed over
    /// in one batch before the loop next sleeps.
    var workerJobs: [UnownedJob] = []

    func flushWorkerJobs() {
        guard !workerJobs.isEmpty else { return }
        server.workers?.enqueue(batch: workerJobs)
        workerJobs.removeAll(keepingCapacity: true)
    }

    func checkIsolated() {
        precondition(isOnLoopThread, "not on the event loop's thread")
    }

    var isOnLoopThread: Bool {
        started.load(ordering: .acquiring) && pthread_equal(pthread_self(), thread) != 0
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// The eventfd fired: drains the queue in batches, then flushes dirty connections once.
    func drain() {
        var counter: UInt64 = 0
        _ = Glibc.read(wakeFD, &counter, 8)
        pollingPublished = false
        queue.withLock { q in
            q.signaled = false
            q.polling = false
        }
        runQueuedJobs()
        flushDirty()
        flushWorkerJobs()
    }

    /// Runs queued jobs, in up to four batches (jobs may queue more).
    private func runQueuedJobs() {
        let executor = asUnownedSerialExecutor()
        let handlerExecutor = handlers.asUnownedTaskExecutor()
        for _ in 0..<4 {
            runLocalHandlers()
            let jobs = queue.withLock { q -> [Job] in
                guard !q.jobs.isEmpty else { return [] }
                let jobs = q.jobs
                q.jobs.removeAll(keepingCapacity: true)
                return jobs
            }
            if jobs.isEmpty && localHandlerJobs.isEmpty { break }
            for job in jobs {
                switch job {
                case .task(let task): task.runSynchronously(on: executor)
                case .handler(let task): task.runSynchronously(on: handlerExecutor)
                case .closure(let body): body()
                }
            }
        }
    }

    /// Runs the handler jobs this thread queued, and those they queue, in up to four rounds.
    func runLocalHandlers() {
        guard !localHandlerJobs.isEmpty else { return }
        let handlerExecutor = handlers.asUnownedTaskExecutor()
        for _ in 0..<4 where !localHandlerJobs.isEmpty {
            swap(&localHandlerJobs, &runningHandlerJobs)
            for job in runningHandlerJobs { job.runSynchronously(on: handlerExecutor) }
            runningHandlerJobs.removeAll(keepingCapacity: true)
        }
    }

    func flushDirty() {
        while !dirty.isEmpty {
            let list = dirty
            dirty.removeAll(keepingCapacity: true)
            for connection in list { connection.flush() }
        }
    }

    // MARK: Thread

    func start(listenFD: Int32) throws {
        self.listenFD = listenFD
        let box = Unmanaged.passRetained(self).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        var tid = pthread_t()
        let rc = pthread_create(&tid, &attributes, { raw in
            let loop = Unmanaged<EventLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<EventLoop>.fromOpaque(box).release()
            throw HTTPServerError.thread(rc)
        }
        thread = tid
    }

    private func run() {
        thread = pthread_self()
        started.store(true, ordering: .releasing)
        setThreadName("myelin-loop-\(index)")
        uv_poll_start(wakePoll, Int32(UV_READABLE.rawValue)) { handle, _, _ in
            Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue().drain()
        }
        uv_timer_start(sweepTimer, { timer in
            Unmanaged<EventLoop>.fromOpaque(timer!.pointee.data).takeUnretainedValue().sweep()
        }, 250, 250)
        uv_check_start(flushCheck) { check in
            let loop = Unmanaged<EventLoop>.fromOpaque(check!.pointee.data).takeUnretainedValue()
            loop.leftPoll()
            loop.runLocalHandlers()
            loop.flushDirty()
            loop.flushWorkerJobs()
        }
        uv_prepare_start(flushPrepare) { prepare in
            Unmanaged<EventLoop>.fromOpaque(prepare!.pointee.data).takeUnretainedValue().beforePoll()
        }
        WorkerPool.setCurrentLoop(self)
        updateDate()
        do {
            try listen()
        } catch {
            server.log("loop \(index): cannot listen: \(error)")
        }
        if index == 0 && server.handlesSignals { installSignals() }
        server.loopStarted()
        uv_run(uv, UV_RUN_DEFAULT)
        // Every handle is closed: run the close callbacks, then release the loop.
        uv_run(uv, UV_RUN_DEFAULT)
        uv_loop_close(uv)
        handOverHandlers()
        server.loopStopped()
    }

    private func setThreadName(_ name: String) {
        name.withCString { myelin_set_thread_name($0) }
    }

    // MARK: Listening and accepting

    private func listen() throws {
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(uv, tcp)
        tcp.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var rc = uv_tcp_open(tcp, uv_os_sock_t(listenFD))
        guard rc == 0 else { throw HTTPServerError.listen(String(cString: uv_strerror(rc))) }
        rc = uv_listen(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self), server.configuration.backlog) { stream, status in
            guard let stream, status == 0 else { return }
            Unmanaged<EventLoop>.fromOpaque(stream.pointee.data).takeUnretainedValue().accept(from: stream)
        }
        guard rc == 0 else { throw HTTPServerError.listen(String(cString: uv_strerror(rc))) }
        listener = tcp
    }

    private func accept(from stream: UnsafeMutablePointer<uv_stream_t>) {
        let connection = Connection(loop: self, id: nextConnectionID)
        nextConnectionID &+= 1
        guard uv_accept(stream, connection.stream) == 0 else {
            connection.close()
            return
        }
        // The address filter (IP blocks), before anything else: a blocked peer is closed
        // before a byte of it is read, and counts against no limit.
        var peerAddress = connection.peerAddress()
        let filter = server.addressFilter
        let generation = filter.generation
        if generation != blockGeneration {
            blockTable = filter.current
            blockGeneration = generation
        }
        if var address = peerAddress, AddressFilter.blocks(&address, table: blockTable) {
            filter.countRefusal()
            connection.admitted = false
            connection.closeRefused()
            return
        }
        guard !draining, server.admitConnection() else {
            connection.admitted = false
            connection.close()
            return
        }
        connection.identifyPeer(&peerAddress)
        guard server.admitPeer(connection.peer) else {
            server.releaseConnection()
            connection.admitted = false
            connection.close()
            return
        }
        connection.countedForPeer = server.limitsPeers
        if server.servesTLS {
            guard let context = server.currentTLSContext(), let engine = try? TLSEngine(context: context) else {
                connection.close()
                return
            }
            connection.tls = engine
        }
        connections[connection.id] = connection
        connection.start()
    }

    // MARK: Timeouts and the Date header

    private func sweep() {
        updateDate()
        let now = uv_now(uv)
        for connection in connections.values where !connection.closing {
            connection.sweep(now: now)
        }
    }

    /// This loop's share of `HTTPServer.stats()` (loop thread).
    func stats() -> TransportStats {
        var stats = TransportStats()
        stats.outputPauses = outputPauses
        for connection in connections.values where !connection.closing {
            stats.connections += 1
            stats.unsentOutputBytes += connection.backlog
            stats.bufferBytes += connection.sheddableBytes
            if connection.state.outputPaused { stats.connectionsPausedForOutput += 1 }
        }
        return stats
    }

    private func updateDate() {
        var t = time(nil)
        let second = Int(t)
        guard second != dateSecond else { return }
        dateSecond = second
        var parts = tm()
        gmtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, 64, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &parts)
        dateHeader = buffer[0..<n].map { UInt8(bitPattern: $0) }
    }

    // MARK: Shutdown

    /// Stops accepting, closes idle connections, lets in-flight requests finish, and stops
    /// the loop once no connection remains or the grace period ends.
    func beginShutdown(graceMs: UInt64) {
        guard !draining else { return }
        draining = true
        if let listener {
            uv_close(UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_handle_t.self)) { handle in
                handle?.deallocate()
            }
            self.listener = nil
        }
        for signal in signals {
            uv_close(UnsafeMutableRawPointer(signal).assumingMemoryBound(to: uv_handle_t.self)) { handle in
                handle?.deallocate()
            }
        }
        signals = []
        for connection in Array(connections.values) { connection.drainForShutdown() }
        uv_timer_start(graceTimer, { timer in
            let loop = Unmanaged<EventLoop>.fromOpaque(timer!.pointee.data).takeUnretainedValue()
            for connection in Array(loop.connections.values) { connection.close() }
            loop.closeIfDrained()
        }, graceMs, 0)
        closeIfDrained()
    }

    /// Called whenever a connection goes away.
    func closeIfDrained() {
        guard draining, !closed, connections.isEmpty else { return }
        closed = true
        flushDirty()
        flushWorkerJobs()
        for handle in [UnsafeMutableRawPointer(wakePoll), UnsafeMutableRawPointer(sweepTimer), UnsafeMutableRawPointer(graceTimer),
                       UnsafeMutableRawPointer(flushCheck), UnsafeMutableRawPointer(flushPrepare)] {
            uv_close(handle.assumingMemoryBound(to: uv_handle_t.self), nil)
        }
    }

    private func installSignals() {
        for number in [SIGTERM, SIGINT] {
            let handle = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
            uv_signal_init(uv, handle)
            handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            uv_signal_start(handle, { handle, signum in
                let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
                loop.server.log("signal \(signum): shutting down")
                loop.server.shutdown()
            }, number)
            signals.append(handle)
        }
        // SIGHUP: reload (the TLS certificates), see `HTTPServer.onHangup`.
        let hangup = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
        uv_signal_init(uv, hangup)
        hangup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_signal_start(hangup, { handle, _ in
            let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            loop.server.hangupReceived()
        }, SIGHUP)
        signals.append(hangup)
    }
}

/// The actor whose executor is an event loop: response delivery hops onto it, so the
/// compiler checks that connection state is touched only on its loop.
actor LoopActor {
    nonisolated let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }

    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Queues one chunk of a streamed response; suspends while the connection's backlog is high.
    func writeChunk(connection id: UInt64, sequence: UInt64, chunk: [UInt8]) async -> Bool {
        guard let connection = loop.connections[id], connection.state.streamingSequence == sequence else { return false }
        connection.writeStreamChunk(chunk)
        if connection.backlog > loop.limits.maxUnsentOutputBytes {
            await withCheckedContinuation { continuation in connection.drainWaiters.append(continuation) }
        }
        return loop.connections[id] != nil
    }

    func finishStream(connection id: UInt64, sequence: UInt64, failed: Bool) {
        guard let connection = loop.connections[id], connection.state.streamingSequence == sequence else { return }
        connection.finishStream(failed: failed)
    }
}

/// Runs request handlers on an event loop's thread (`transport.handlers: loops`): a request
/// is parsed, handled and answered on one thread, with no hand-over to a worker and back. A
/// job enqueued by the loop's own thread (a new request, a runner resumed with the next one)
/// runs in the same loop iteration without a lock; from another thread (a long-poll woken by
/// a room, a store read answered) it is queued and wakes the loop.
///
/// Tasks refer to their preferred executor without owning it, and a handler's structured child
/// tasks inherit it, so this object is never freed (one per loop, a few bytes). A job that
/// arrives after its loop stopped or is gone (a handler still running after shutdown's grace,
/// a test's server released with a task still waiting) runs on a Dispatch thread instead, as
/// this executor, so that the task stays where it prefers to be.
final class LoopHandlers: TaskExecutor, @unchecked Sendable {
    private weak var loop: EventLoop?

    init(loop: EventLoop) {
        self.loop = loop
        _ = Unmanaged.passRetained(self)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        guard let loop else {
            runElsewhere(job)
            return
        }
        if WorkerPool.currentLoop === loop {
            loop.localHandlerJobs.append(job)
        } else {
            loop.pushHandler(job)
        }
    }

    /// Runs `job` on a Dispatch thread, as this executor.
    func runElsewhere(_ job: UnownedJob) {
        let executor = asUnownedTaskExecutor()
        DispatchQueue.global().async { job.runSynchronously(on: executor) }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
}
