/// The logic of a connection pool, as a pure value: which connections are idle, who waits
/// for one, how many may wait, what happens at shutdown. It performs no effects; each
/// transition returns the action the shell (`ConnectionPool`) must carry out. Tests drive it
/// deterministically (the shape of postgres-nio's `ConnectionPoolModule`).
///
/// Connections are numbered `0..<connectionCount` and all exist from the start (they are
/// opened eagerly by the shell). Idle connections are reused last-in first-out so that a
/// lightly loaded pool keeps using the same warm connection; waiters are served first-in
/// first-out.
struct PoolStateMachine: Sendable {
    typealias ConnectionID = Int
    typealias RequestID = UInt64

    /// What to do with a new request.
    enum LeaseAction: Sendable, Hashable {
        /// Run the request on this connection now.
        case run(on: ConnectionID)
        /// No connection is free: the request was queued; a later `release` will hand it one.
        case wait
        /// Fail the request: the queue is full or the pool is shut down.
        case reject(DatabaseError.Kind)
    }

    /// What to do with a connection that a request just gave back.
    enum ReleaseAction: Sendable, Hashable {
        /// Run this waiting request on the connection.
        case run(RequestID, on: ConnectionID)
        /// Nobody waits: the connection is idle now.
        case idle
    }

    let connectionCount: Int
    let maxWaiters: Int
    private var idle: [ConnectionID]
    private var leased: Set<ConnectionID> = []
    private var waiters: [RequestID] = []
    private var waiterHead = 0
    private(set) var isShutDown = false

    init(connectionCount: Int, maxWaiters: Int) {
        precondition(connectionCount > 0, "a pool needs at least one connection")
        self.connectionCount = connectionCount
        self.maxWaiters = maxWaiters
        // Reversed so that `popLast` hands out connection 0 first.
        self.idle = Array((0..<connectionCount).reversed())
    }

    var idleCount: Int { idle.count }
    var leasedCount: Int { leased.count }
    var waitingCount: Int { waiters.count - waiterHead }

    mutating func lease(_ request: RequestID) -> LeaseAction {
        if isShutDown { return .reject(.closed) }
        if let connection = idle.popLast() {
            leased.insert(connection)
            return .run(on: connection)
        }
        if waitingCount >= maxWaiters { return .reject(.poolExhausted) }
        waiters.append(request)
        return .wait
    }

    mutating func release(_ connection: ConnectionID) -> ReleaseAction {
        precondition(leased.contains(connection), "connection \(connection) released but not leased")
        if waiterHead < waiters.count {
            let request = waiters[waiterHead]
            waiterHead += 1
            compactWaiters()
            return .run(request, on: connection)
        }
        leased.remove(connection)
        idle.append(connection)
        return .idle
    }

    /// Removes a waiting request (its task was cancelled). Returns false when the request is
    /// not waiting (it already runs, finished, or was never queued): then nothing changes.
    mutating func cancel(_ request: RequestID) -> Bool {
        guard let index = waiters[waiterHead...].firstIndex(of: request) else { return false }
        waiters.remove(at: index)
        compactWaiters()
        return true
    }

    /// Refuses every later lease and returns the waiters to fail. Leased connections finish
    /// their current request; the shell then stops every connection's thread.
    mutating func shutdown() -> [RequestID] {
        if isShutDown { return [] }
        isShutDown = true
        let failed = Array(waiters[waiterHead...])
        waiters = []
        waiterHead = 0
        return failed
    }

    private mutating func compactWaiters() {
        if waiterHead == waiters.count {
            waiters.removeAll(keepingCapacity: true)
            waiterHead = 0
        } else if waiterHead > 64 && waiterHead * 2 > waiters.count {
            waiters.removeFirst(waiterHead)
            waiterHead = 0
        }
    }
}
