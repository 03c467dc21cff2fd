import Matrix
import Synchronization

/// The long-poll waiters of one user (`/sync?timeout=`). A waiter is registered and the
/// positions are read in the same turn of this actor, so a stream advance is either
/// already visible to that read or arrives here afterwards and wakes the waiter: no
/// wake-up is lost. A waiter wakes with a token (positions), never with data; it times out
/// with nil. Created, found and waited on through `NotifierFanout` (which reserves the
/// waiter under its lock, so a notifier with a waiter on the way is never swept); woken
/// by the writers of every stream through it.
public actor NotifierActor {
    public nonisolated let user: UserID

    private struct Waiter {
        let since: StreamToken
        let continuation: CheckedContinuation<StreamToken?, Never>
    }

    private var waiters: [UInt64: Waiter] = [:]
    private var nextWaiter: UInt64 = 0
    /// The highest position of each stream this user has been notified of.
    private var notified = StreamToken.zero
    /// Waiters registered and not yet resumed; read without the actor by the fan-out,
    /// with sequentially consistent ordering against the writers' commits (see `wait`).
    nonisolated let waiting = Atomic<Int>(0)
    nonisolated let lastActivity: Atomic<Int64>

    init(user: UserID, now: Duration) {
        self.user = user
        self.lastActivity = Atomic(now.components.seconds)
    }

    /// Waits until a stream is ahead of `since`, for at most `timeout`. The caller
    /// (`NotifierFanout.wait`) has already added one to `waiting`; it is removed on resume.
    func wait(since: StreamToken, timeout: Duration, current: @Sendable () -> StreamToken,
              schedule: @Sendable (NotifierActor, UInt64) -> Void) async -> StreamToken? {
        let id = nextWaiter
        nextWaiter += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<StreamToken?, Never>) in
                // 1. Registered (`waiting` was raised by the fan-out, so it wakes us),
                // 2. read positions. A writer whose position became visible before step 2
                // is seen by the read; one after step 1 finds `waiting > 0` and notifies
                // this actor, after this turn (or before it: then `notified` has it).
                waiters[id] = Waiter(since: since, continuation: continuation)
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
                // Timeouts are kept by the fan-out's deadline queue, not a task per waiter.
                schedule(self, id)
            }
        } onCancel: {
            Task { await self.resume(id, with: nil) }
        }
    }

    /// A stream advanced for this user: wake every waiter behind `position`.
    public func notify(_ change: StreamChange) {
        notified = notified.advanced(change.stream, to: change.position)
        for (id, waiter) in waiters where change.position > waiter.since[change.stream] {
            resume(id, with: waiter.since.union(notified))
        }
    }

    /// Waiters currently registered (tests and metrics).
    public var waiterCount: Int { waiters.count }

    /// The waiter's timeout passed (no-op if it was woken already).
    func expire(_ id: UInt64) { resume(id, with: nil) }

    private func resume(_ id: UInt64, with token: StreamToken?) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
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
