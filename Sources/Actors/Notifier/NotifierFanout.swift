import Matrix
import Synchronization

/// The directory of `Notifier`s, one per user, and the fan-out of stream advances to
/// them. Lookups take a lock, not an actor hop, and a wake is a lock and a continuation
/// resume per user, so waking thousands of users costs no task or hop each. Only users with a waiter
/// are woken (a user without one has nothing to wake; its next sync reads positions).
///
/// Which users an advance concerns (members of a room, the devices' owner, users sharing a
/// room for device lists) is decided by the caller: the room actor, the account-data and
/// to-device writers. Owned by the App, shared by sync and every stream writer.
public final class NotifierFanout: Sendable {
    private let notifiers = Mutex<[UserID: Notifier]>([:])
    private let clock: any RegistryClock
    public let limits: RegistryLimits
    /// Long-poll deadlines by 100 ms tick; one sweeper task expires them, so a wait costs an
    /// append here instead of a sleeping task of its own.
    private let deadlines = Mutex<(buckets: [Int64: [(Notifier, UInt64)]], sweeper: Bool)>(([:], false))
    static let tick: Int64 = 100
    /// Long-polls waiting now, notifiers created and removed since start (the operators'
    /// runtime endpoint; relaxed, read as diagnostics).
    private let held = Atomic<Int>(0)
    private let created = Atomic<Int>(0)
    private let removed = Atomic<Int>(0)

    public init(limits: RegistryLimits, clock: any RegistryClock = MonotonicRegistryClock()) {
        self.limits = limits
        self.clock = clock
    }

    /// Deadlines run on real time (the injected clock drives idle sweeps only).
    private let started = ContinuousClock.now

    private func nowTick() -> Int64 {
        let now = ContinuousClock.now - started
        return (now.components.seconds * 1000 + now.components.attoseconds / 1_000_000_000_000_000) / Self.tick
    }

    private func schedule(_ notifier: Notifier, _ id: UInt64, after timeout: Duration) {
        let ms = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        let due = nowTick() + (ms + Self.tick - 1) / Self.tick
        let startSweeper = deadlines.withLock { state -> Bool in
            state.buckets[due, default: []].append((notifier, id))
            if state.sweeper { return false }
            state.sweeper = true
            return true
        }
        if startSweeper {
            Task.detached { [weak self] in await self?.sweepDeadlines() }
        }
    }

    /// Expires due waiters every tick while any deadline is pending, then stops.
    private func sweepDeadlines() async {
        while true {
            try? await Task.sleep(for: .milliseconds(Self.tick))
            let now = nowTick()
            let (due, more) = deadlines.withLock { state -> ([(Notifier, UInt64)], Bool) in
                var due: [(Notifier, UInt64)] = []
                for tick in state.buckets.keys where tick <= now {
                    due += state.buckets.removeValue(forKey: tick) ?? []
                }
                if state.buckets.isEmpty { state.sweeper = false }
                return (due, !state.buckets.isEmpty)
            }
            var byNotifier: [ObjectIdentifier: (Notifier, [UInt64])] = [:]
            for (notifier, id) in due { byNotifier[ObjectIdentifier(notifier), default: (notifier, [])].1.append(id) }
            for (notifier, ids) in byNotifier.values {
                for id in ids { notifier.expire(id) }
            }
            if !more { return }
        }
    }

    /// Long-polls for `user`: returns when a stream is ahead of `since`, or nil after
    /// `timeout` (or on cancellation). The waiter is registered before `current` reads the
    /// positions, so no advance is lost in between.
    ///
    /// - Parameter current: reads the streams' visible positions synchronously (e.g.
    ///   `StreamTracker.visiblePosition` of each stream).
    /// - Returns: a token ahead of `since` in at least one stream (the union of `since`,
    ///   what `current` read and what was notified). Sync reads what lies between `since`
    ///   and the result; if nothing concerns the user it may wait again with the result
    ///   as `since`.
    public func wait(_ user: UserID, since: StreamToken, timeout: Duration,
                     current: @Sendable () -> StreamToken) async -> StreamToken? {
        let now = clock.now()
        let notifier = notifiers.withLock { notifiers in
            let notifier: Notifier
            if let existing = notifiers[user] {
                notifier = existing
            } else {
                notifier = Notifier(user: user, now: now)
                notifiers[user] = notifier
                created.wrappingAdd(1, ordering: .relaxed)
            }
            // Reserved under the lock: `sweep` never drops a notifier a waiter is headed to.
            notifier.waiting.add(1, ordering: .sequentiallyConsistent)
            return notifier
        }
        notifier.lastActivity.store(now.components.seconds, ordering: .relaxed)
        held.wrappingAdd(1, ordering: .relaxed)
        defer { held.wrappingSubtract(1, ordering: .relaxed) }
        return await notifier.wait(since: since, timeout: timeout, current: current) { [self] notifier, id in
            schedule(notifier, id, after: timeout)
        }
    }

    /// The resident notifier of `user`, if any (tests and diagnostics).
    public func resident(_ user: UserID) -> Notifier? {
        notifiers.withLock { $0[user] }
    }

    /// Wakes the waiters of `users` behind `change`. Returns once every waiter is resumed
    /// (their tasks continue on their own executors). Call after the change's position
    /// became visible.
    public func notify(_ users: some Sequence<UserID>, of change: StreamChange) {
        let targets: [Notifier] = notifiers.withLock { notifiers in
            users.compactMap { user in
                guard let notifier = notifiers[user],
                      notifier.waiting.load(ordering: .sequentiallyConsistent) > 0 else { return nil }
                return notifier
            }
        }
        // Resumed here: each wake is a lock and a continuation resume, no task.
        for notifier in targets { notifier.notify(change) }
    }

    /// Removes notifiers without waiters idle for `limits.idleTimeout`, then, above
    /// `limits.maxResident`, the longest idle ones without waiters. The App calls it
    /// periodically. Returns how many were removed.
    @discardableResult
    public func sweep() -> Int {
        let now = clock.now().components.seconds
        let timeout = limits.idleTimeout.components.seconds
        return notifiers.withLock { notifiers in
            let idle = notifiers.filter { _, notifier in
                notifier.waiting.load(ordering: .sequentiallyConsistent) == 0
            }
            var removed = 0
            for (user, notifier) in idle where now - notifier.lastActivity.load(ordering: .relaxed) >= timeout {
                notifiers[user] = nil
                removed += 1
            }
            if notifiers.count > limits.maxResident {
                let candidates = notifiers
                    .filter { $0.value.waiting.load(ordering: .sequentiallyConsistent) == 0 }
                    .sorted { $0.value.lastActivity.load(ordering: .relaxed) < $1.value.lastActivity.load(ordering: .relaxed) }
                for (user, _) in candidates.prefix(notifiers.count - limits.maxResident) {
                    notifiers[user] = nil
                    removed += 1
                }
            }
            self.removed.wrappingAdd(removed, ordering: .relaxed)
            return removed
        }
    }

    /// Long-polls (`/sync?timeout=`) waiting now.
    public var longPollsHeld: Int { held.load(ordering: .relaxed) }
    /// Notifiers created since start (a user's first long-poll after idling).
    public var notifiersCreated: Int { created.load(ordering: .relaxed) }
    /// Notifiers removed since start (idle or over `maxResident`).
    public var notifiersRemoved: Int { removed.load(ordering: .relaxed) }

    /// Notifiers resident now.
    public var residentCount: Int { notifiers.withLock { $0.count } }
}

extension NotifierFanout {
    /// Wakes the users a room's new events concern (called by the room actor after a commit).
    public func publish(_ events: PublishedEvents) {
        notify(events.interestedUsers, of: StreamChange(.roomEvents, events.visiblePosition))
    }
}
