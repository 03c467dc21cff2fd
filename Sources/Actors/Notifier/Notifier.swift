import Matrix
import Synchronization

/// The long-poll waiters of one user (`/sync?timeout=`). A waiter is registered and then
/// the positions are read, under this notifier's lock for the registration, so a stream
/// advance is either already visible to that read or arrives afterwards and wakes the
/// waiter: no wake-up is lost. A waiter wakes with a token (positions), never with data; it
/// times out with nil.
///
/// A lock rather than an actor: waking is a lock and a continuation resume on the writer's
/// thread, with no task and no executor hop per waiter, which is what fanning one message
/// out to thousands of long-polls costs. Created, found and waited on through
/// `NotifierFanout` (which reserves the waiter under its lock, so a notifier with a waiter on
/// the way is never swept); woken by the writers of every stream through it.
public final class Notifier: Sendable {
    public let user: UserID

    private struct Waiter {
        let since: StreamToken
        let continuation: CheckedContinuation<StreamToken?, Never>
    }

    private struct State {
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
        /// The highest position of each stream this user has been notified of.
        var notified = StreamToken.zero
    }

    private let state = Mutex(State())
    /// Waiters registered and not yet resumed; read without the lock by the fan-out, with
    /// sequentially consistent ordering against the writers' commits (see `wait`).
    let waiting = Atomic<Int>(0)
    let lastActivity: Atomic<Int64>

    init(user: UserID, now: Duration) {
        self.user = user
        self.lastActivity = Atomic(now.components.seconds)
    }

    /// Waits until a stream is ahead of `since`, for at most `timeout` (kept by `schedule`,
    /// which calls `expire`). The caller (`NotifierFanout.wait`) has already added one to
    /// `waiting`; it is removed on resume.
    func wait(since: StreamToken, timeout: Duration, current: @Sendable () -> StreamToken,
              schedule: @Sendable (Notifier, UInt64) -> Void) async -> StreamToken? {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<StreamToken?, Never>) in
                // 1. Registered (`waiting` was raised by the fan-out, so writers notify us),
                // 2. read positions. A writer whose position became visible before step 2
                // is seen by the read; one after step 1 finds the waiter and resumes it.
                let notified = state.withLock { state in
                    state.waiters[id] = Waiter(since: since, continuation: continuation)
                    return state.notified
                }
                if Task.isCancelled {
                    resume(id, with: nil)
                    return
                }
                let now = current().union(notified)
                if now.isAhead(of: since) {
                    resume(id, with: now.union(since))
                    return
                }
                if timeout <= .zero {
                    resume(id, with: nil)
                    return
                }
                schedule(self, id)
            }
        } onCancel: {
            resume(id, with: nil)
        }
    }

    /// A stream advanced for this user: wake every waiter behind the position.
    public func notify(_ change: StreamChange) {
        let woken: [(CheckedContinuation<StreamToken?, Never>, StreamToken)] = state.withLock { state in
            state.notified = state.notified.advanced(change.stream, to: change.position)
            var woken: [(CheckedContinuation<StreamToken?, Never>, StreamToken)] = []
            for (id, waiter) in state.waiters where change.position > waiter.since[change.stream] {
                state.waiters[id] = nil
                woken.append((waiter.continuation, waiter.since.union(state.notified)))
            }
            return woken
        }
        if woken.isEmpty { return }
        waiting.subtract(woken.count, ordering: .sequentiallyConsistent)
        for (continuation, token) in woken { continuation.resume(returning: token) }
    }

    /// The waiter's timeout passed (no-op if it was woken already).
    func expire(_ id: UInt64) { resume(id, with: nil) }

    /// Waiters currently registered (tests and metrics).
    public var waiterCount: Int { state.withLock { $0.waiters.count } }

    private func resume(_ id: UInt64, with token: StreamToken?) {
        guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
        waiting.subtract(1, ordering: .sequentiallyConsistent)
        waiter.continuation.resume(returning: token)
    }
}

/// One stream advance, as carried to notifiers: a position, never data.
public struct StreamChange: Sendable, Hashable {
    public var stream: SyncStream
    public var position: Int64
    public init(_ stream: SyncStream, _ position: Int64) {
        self.stream = stream
        self.position = position
    }
}
