/// The decisions of a `Registry`, as a pure value type: which key to activate, who joins an
/// activation already in flight, which resident to evict at the cap, which are idle. Time
/// is passed in (`now`), so tests drive it deterministically; the `Registry` actor carries
/// out the returned actions and owns the actor objects themselves.
///
/// Each activation gets a generation number so that a late completion or failure report for
/// an activation that was since superseded is recognised and ignored.
public struct RegistryStateMachine<Key: Hashable & Sendable>: Sendable {
    enum Entry: Sendable, Equatable {
        case activating(generation: UInt64, callers: Int)
        /// `lastUse` is a logical tick (for LRU order) and `lastUseTime` the clock (for idle).
        case resident(generation: UInt64, lastUse: UInt64, lastUseTime: Duration)
    }

    /// What a caller of `get` must do.
    public enum GetAction: Sendable, Equatable {
        /// The actor is resident: use it.
        case resident(generation: UInt64)
        /// Start the activation with this generation; others will join it.
        case activate(generation: UInt64)
        /// An activation is in flight: wait for it.
        case join(generation: UInt64)
    }

    public let limits: RegistryLimits
    private(set) var entries: [Key: Entry] = [:]
    private var nextGeneration: UInt64 = 1
    private var tick: UInt64 = 0
    public private(set) var counters = RegistryCounters()

    public init(limits: RegistryLimits) {
        self.limits = limits
    }

    /// A caller wants the actor of `key`.
    public mutating func get(_ key: Key, now: Duration) -> GetAction {
        switch entries[key] {
        case let .resident(generation, _, _):
            tick += 1
            entries[key] = .resident(generation: generation, lastUse: tick, lastUseTime: now)
            return .resident(generation: generation)
        case let .activating(generation, callers):
            entries[key] = .activating(generation: generation, callers: callers + 1)
            counters.joins += 1
            return .join(generation: generation)
        case nil:
            let generation = nextGeneration
            nextGeneration += 1
            entries[key] = .activating(generation: generation, callers: 1)
            counters.activations += 1
            counters.activating += 1
            return .activate(generation: generation)
        }
    }

    /// The activation `generation` of `key` succeeded. Returns the residents to deactivate
    /// (least recently used first) so that at most `maxResident` remain. Returns nil if the
    /// activation was superseded (the new actor must be discarded, not used).
    public mutating func activated(_ key: Key, generation: UInt64, now: Duration) -> [Key]? {
        guard case .activating(generation, _) = entries[key] else { return nil }
        tick += 1
        entries[key] = .resident(generation: generation, lastUse: tick, lastUseTime: now)
        counters.activating -= 1
        counters.resident += 1
        var evicted: [Key] = []
        while counters.resident > limits.maxResident, let victim = leastRecentlyUsed(excluding: key) {
            entries[victim] = nil
            counters.resident -= 1
            counters.deactivations += 1
            counters.evictions += 1
            evicted.append(victim)
        }
        return evicted
    }

    /// The activation `generation` of `key` threw: forget it, so that the next caller
    /// starts a fresh one. Returns false if it was superseded.
    @discardableResult
    public mutating func activationFailed(_ key: Key, generation: UInt64) -> Bool {
        guard case .activating(generation, _) = entries[key] else { return false }
        entries[key] = nil
        counters.activating -= 1
        counters.failures += 1
        return true
    }

    /// The resident actor of `key` (generation `generation`) hit an unrecoverable error:
    /// drop it. Returns true if it was dropped (false: already gone or superseded).
    @discardableResult
    public mutating func failed(_ key: Key, generation: UInt64) -> Bool {
        guard case .resident(generation, _, _) = entries[key] else { return false }
        entries[key] = nil
        counters.resident -= 1
        counters.deactivations += 1
        counters.failures += 1
        return true
    }

    /// The resident actor of `key` was used without going through `get` (a caller that keeps
    /// its own reference, such as the session cache in front of the registry): it becomes
    /// the most recently used and its idle time restarts. Returns false if `key` is not
    /// resident (nothing changes).
    @discardableResult
    public mutating func touch(_ key: Key, now: Duration) -> Bool {
        guard case let .resident(generation, _, _) = entries[key] else { return false }
        tick += 1
        entries[key] = .resident(generation: generation, lastUse: tick, lastUseTime: now)
        return true
    }

    /// The resident actor of `key` must go now (what it caches was revoked): it is removed
    /// and must be deactivated. Returns false if `key` is not resident; an activation in
    /// flight is left alone.
    @discardableResult
    public mutating func remove(_ key: Key) -> Bool {
        guard case .resident = entries[key] else { return false }
        entries[key] = nil
        counters.resident -= 1
        counters.deactivations += 1
        return true
    }

    /// Residents unused for at least `idleTimeout` at `now`: they are removed and must be
    /// deactivated.
    public mutating func sweepIdle(now: Duration) -> [Key] {
        var idle: [Key] = []
        for (key, entry) in entries {
            if case let .resident(_, _, lastUseTime) = entry, now - lastUseTime >= limits.idleTimeout {
                idle.append(key)
            }
        }
        for key in idle { entries[key] = nil }
        counters.resident -= idle.count
        counters.deactivations += idle.count
        counters.idleDeactivations += idle.count
        return idle
    }

    /// Every resident, removed (shutdown). Activations in flight are left to finish and
    /// are then superseded.
    public mutating func removeAll() -> [Key] {
        var removed: [Key] = []
        for (key, entry) in entries {
            if case .resident = entry { removed.append(key) }
        }
        entries.removeAll()
        counters.resident = 0
        counters.activating = 0
        counters.deactivations += removed.count
        return removed
    }

    /// The generation of `key`'s resident actor, if any.
    public func residentGeneration(_ key: Key) -> UInt64? {
        if case let .resident(generation, _, _) = entries[key] { return generation }
        return nil
    }

    /// How many callers wait on `key`'s activation in flight (0 if none).
    public func callers(activating key: Key) -> Int {
        if case let .activating(_, callers) = entries[key] { return callers }
        return 0
    }

    // A linear scan, run only when the cap is exceeded: O(resident) per eviction. At the
    // configured caps (≤ 50,000) that is tens of microseconds against an activation that
    // reads the store; an intrusive list would make it O(1) if it ever shows in profiles.
    private func leastRecentlyUsed(excluding excluded: Key) -> Key? {
        var best: (key: Key, lastUse: UInt64)?
        for (key, entry) in entries where key != excluded {
            if case let .resident(_, lastUse, _) = entry, lastUse < (best?.lastUse ?? .max) {
                best = (key, lastUse)
            }
        }
        return best?.key
    }
}
