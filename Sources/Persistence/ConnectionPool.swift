import Synchronization

/// The shell of a connection pool: N `ConnectionThread`s, each owning one connection, and a
/// `PoolStateMachine` under a mutex deciding which request runs on which connection. It
/// performs the machine's actions: submits jobs to threads, resumes continuations of
/// rejected or cancelled waiters, stops threads at close.
///
/// `Database` owns one pool per role (the SQLite writer, the SQLite readers, the PostgreSQL
/// connections).
final class ConnectionPool<Connection>: Sendable {
    private struct Waiter {
        let run: @Sendable (Connection, ConnectionPool<Connection>, PoolStateMachine.ConnectionID) -> Void
        let fail: @Sendable (any Error) -> Void
    }

    private struct State: ~Copyable {
        var machine: PoolStateMachine
        var nextRequest: PoolStateMachine.RequestID = 0
        var waiters: [PoolStateMachine.RequestID: Waiter] = [:]
    }

    let name: String
    let maxWaiters: Int
    private let threads: [ConnectionThread<Connection>]
    private let state: Mutex<State>

    /// Opens `count` connections, each on its own thread, and waits until all are ready.
    /// If any fails to open, the others are closed and the first error is thrown.
    static func open(name: String, count: Int, maxWaiters: Int,
                     connect: @escaping @Sendable (Int) throws -> Connection,
                     close: @escaping @Sendable (Connection) -> Void) async throws -> ConnectionPool {
        precondition(count > 0, "a pool needs at least one connection")
        let results = Mutex<[Result<Void, any Error>]>([])
        var threads: [ConnectionThread<Connection>] = []
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            for index in 0..<count {
                threads.append(ConnectionThread(
                    connect: { try connect(index) },
                    close: close,
                    ready: { result in
                        let done = results.withLock { results in
                            results.append(result)
                            return results.count == count
                        }
                        if done { continuation.resume() }
                    }))
            }
        }
        let pool = ConnectionPool(name: name, threads: threads, maxWaiters: maxWaiters)
        let failures = results.withLock { $0 }.compactMap { result -> (any Error)? in
            if case .failure(let error) = result { return error } else { return nil }
        }
        if let first = failures.first {
            await pool.close()
            throw first
        }
        return pool
    }

    private init(name: String, threads: [ConnectionThread<Connection>], maxWaiters: Int) {
        self.name = name
        self.threads = threads
        self.maxWaiters = maxWaiters
        self.state = Mutex(State(machine: PoolStateMachine(connectionCount: threads.count, maxWaiters: maxWaiters)))
    }

    deinit {
        // Not closed by its owner: still let the threads finish their queues and exit.
        for thread in threads { thread.stop {} }
    }

    /// Runs `body` with a connection, on that connection's thread; suspends (off the
    /// cooperative pool's threads) until a connection is free and the body has run.
    /// Cancelling the task while it waits for a connection removes it from the queue.
    func withConnection<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        let request = state.withLock { state in
            state.nextRequest += 1
            return state.nextRequest
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                let waiter = Waiter(
                    run: { connection, pool, id in
                        let result = Result { try body(connection) }
                        pool.release(id)
                        continuation.resume(with: result)
                    },
                    fail: { error in continuation.resume(throwing: error) })
                let action = state.withLock { state in
                    let action = state.machine.lease(request)
                    if case .wait = action { state.waiters[request] = waiter }
                    return action
                }
                switch action {
                case .run(let id):
                    dispatch(waiter, on: id)
                case .wait:
                    // The task may have been cancelled before it was queued, when the
                    // cancellation handler found nothing to remove: withdraw it now.
                    if Task.isCancelled { withdraw(request) }
                case .reject(let kind):
                    waiter.fail(DatabaseError(kind, kind == .closed
                        ? "the database is closed"
                        : "more than \(maxWaiters) requests wait for a \(name) connection"))
                }
            }
        } onCancel: {
            withdraw(request)
        }
    }

    /// Fails a request with `CancellationError` if it is still waiting for a connection.
    private func withdraw(_ request: PoolStateMachine.RequestID) {
        let waiter: Waiter? = state.withLock { state in
            guard state.machine.cancel(request) else { return nil }
            return state.waiters.removeValue(forKey: request)
        }
        waiter?.fail(CancellationError())
    }

    private func dispatch(_ waiter: Waiter, on id: PoolStateMachine.ConnectionID) {
        let submitted = threads[id].submit { [self] connection in
            waiter.run(connection, self, id)
        }
        if !submitted {
            // The thread is gone (it never connected, or is closing).
            release(id)
            waiter.fail(DatabaseError(.closed, "the \(name) connection thread has stopped"))
        }
    }

    private func release(_ id: PoolStateMachine.ConnectionID) {
        let next: Waiter? = state.withLock { state in
            switch state.machine.release(id) {
            case .idle: return nil
            case .run(let request, _): return state.waiters.removeValue(forKey: request)
            }
        }
        if let next { dispatch(next, on: id) }
    }

    /// Fails every waiter, lets running jobs finish, closes every connection and stops its
    /// thread. Idempotent.
    func close() async {
        let failed: [Waiter] = state.withLock { state in
            state.machine.shutdown().compactMap { state.waiters.removeValue(forKey: $0) }
        }
        for waiter in failed { waiter.fail(DatabaseError(.closed, "the database was closed")) }
        for thread in threads {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                thread.stop { continuation.resume() }
            }
        }
    }
}
