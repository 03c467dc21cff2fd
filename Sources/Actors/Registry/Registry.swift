/// An actor that a `Registry` supervises. `deactivate` is called once when the registry
/// drops it (eviction, idle, failure, shutdown): finish or refuse work in progress and
/// release resources. The store is the truth, so deactivation must lose nothing that was
/// acknowledged.
public protocol RegistryMember: Actor {
    func deactivate() async
    /// Called synchronously by the registry the moment it drops this actor, before
    /// `deactivate` is scheduled: by the time the `get` that caused an eviction returns,
    /// the evicted actor has heard it (an index in front of the registry stays exact).
    nonisolated func willDeactivate()
}

extension RegistryMember {
    public nonisolated func willDeactivate() {}
}

/// The supervisor of one actor kind (rooms, sessions, notifiers...): get-or-activate by key
/// with single flight, at most `maxResident` resident (LRU deactivated), idle deactivation,
/// and drop-and-reactivate after an unrecoverable failure. The decisions are made by
/// `RegistryStateMachine`; this actor only performs them. Created by the App, one per pool,
/// with limits from the `actors:` configuration section.
///
/// A key is never active twice: a new activation of a key waits until the previous actor
/// of that key finished `deactivate()`, so a single-writer actor (a room) never overlaps
/// with its successor.
public actor Registry<Key: Hashable & Sendable, Member: RegistryMember> {
    public typealias Activate = @Sendable (Key) async throws -> Member

    private var machine: RegistryStateMachine<Key>
    private var residents: [Key: Member] = [:]
    private var activations: [Key: (generation: UInt64, task: Task<Member, any Error>)] = [:]
    private var deactivations: [Key: (id: UInt64, task: Task<Void, Never>)] = [:]
    private var nextDeactivationID: UInt64 = 0
    private let activate: Activate
    private let clock: any RegistryClock

    /// - Parameter activate: builds the actor of a key from the store; it may throw, and the
    ///   next `get` then tries again.
    public init(limits: RegistryLimits, clock: any RegistryClock = MonotonicRegistryClock(),
                activate: @escaping Activate) {
        self.machine = RegistryStateMachine(limits: limits)
        self.clock = clock
        self.activate = activate
    }

    public var limits: RegistryLimits { machine.limits }
    public var counters: RegistryCounters { machine.counters }

    /// How many callers wait for `key`'s activation in flight (tests and diagnostics).
    public func callers(activating key: Key) -> Int { machine.callers(activating: key) }

    /// The resident actor of `key`, if any, without activating or touching it.
    public func resident(_ key: Key) -> Member? { residents[key] }

    /// The actor of `key`, activated if needed. Concurrent callers share one activation.
    public func get(_ key: Key) async throws -> Member {
        try await get(key, activatingWith: activate)
    }

    /// `get`, but if this call starts the activation it builds the actor with `build`
    /// instead of the registry's own closure (the caller already read what the actor needs,
    /// as a session authenticating a token has read its user). Callers that join an
    /// activation in flight get the actor built by whoever started it.
    public func get(_ key: Key, activatingWith build: @escaping Activate) async throws -> Member {
        switch machine.get(key, now: clock.now()) {
        case .resident:
            guard let member = residents[key] else { preconditionFailure("registry: resident without actor") }
            return member
        case .join:
            guard let activation = activations[key] else { preconditionFailure("registry: activating without task") }
            return try await activation.task.value
        case let .activate(generation):
            let previous = deactivations[key]?.task
            let activate = build
            // Unstructured, so that a cancelled first caller does not cancel the others.
            let task = Task<Member, any Error> {
                await previous?.value
                let member: Member
                do {
                    member = try await activate(key)
                } catch {
                    self.activationFailed(key, generation: generation)
                    throw error
                }
                try await self.activated(key, generation: generation, member: member)
                return member
            }
            activations[key] = (generation, task)
            return try await task.value
        }
    }

    /// The actor of `key` hit an unrecoverable error: drop it (it is deactivated) so the
    /// next `get` re-activates it from the store. Ignored if `member` is no longer the
    /// resident actor of `key`.
    public func reportFailure(_ key: Key, member: Member) {
        guard let current = residents[key], current === member,
              let generation = machine.residentGeneration(key) else { return }
        machine.failed(key, generation: generation)
        deactivate([key])
    }

    /// Marks the resident actor of `key` as just used (LRU order and idle time) for callers
    /// that reach it without `get`. Does nothing if it is not resident.
    public func touch(_ key: Key) {
        machine.touch(key, now: clock.now())
    }

    /// Deactivates the resident actor of `key` now (what it caches was revoked); the next
    /// `get` activates a fresh one. Does nothing if it is not resident.
    public func remove(_ key: Key) {
        if machine.remove(key) { deactivate([key]) }
    }

    /// `remove`, then waits until the removed actor (and any earlier one of `key`) finished
    /// `deactivate()`: nothing it accepted is still being written when this returns.
    public func removeAndWait(_ key: Key) async {
        remove(key)
        while let deactivation = deactivations[key] {
            await deactivation.task.value
            if deactivations[key]?.id == deactivation.id { deactivations[key] = nil }
        }
    }

    /// Deactivates the actors idle for at least `idleTimeout`. The App calls it
    /// periodically (`runIdleSweeps`); tests call it after advancing their clock.
    public func sweepIdle() {
        deactivate(machine.sweepIdle(now: clock.now()))
    }

    /// Sweeps idle actors every `interval` until the calling task is cancelled.
    public func runIdleSweeps(every interval: Duration) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            sweepIdle()
        }
    }

    /// Deactivates every resident actor and waits until all have finished (shutdown).
    public func deactivateAll() async {
        deactivate(machine.removeAll())
        for activation in activations.values { _ = try? await activation.task.value }
        deactivate(machine.removeAll())
        while let deactivation = deactivations.first?.value {
            await deactivation.task.value
        }
    }

    private func activated(_ key: Key, generation: UInt64, member: Member) async throws {
        if activations[key]?.generation == generation { activations[key] = nil }
        guard let evicted = machine.activated(key, generation: generation, now: clock.now()) else {
            // Superseded (shutdown during activation): never hand this actor out.
            member.willDeactivate()
            await member.deactivate()
            throw CancellationError()
        }
        residents[key] = member
        deactivate(evicted)
    }

    private func activationFailed(_ key: Key, generation: UInt64) {
        machine.activationFailed(key, generation: generation)
        if activations[key]?.generation == generation { activations[key] = nil }
    }

    /// Removes the actors of `keys` (already removed from the machine) and runs their
    /// `deactivate` outside this actor; a later activation of the same key waits for it.
    private func deactivate(_ keys: [Key]) {
        for key in keys {
            guard let member = residents.removeValue(forKey: key) else { continue }
            member.willDeactivate()
            let previous = deactivations[key]?.task
            nextDeactivationID += 1
            let id = nextDeactivationID
            let task = Task {
                await previous?.value
                await member.deactivate()
                self.deactivationFinished(key, id: id)
            }
            deactivations[key] = (id, task)
        }
    }

    private func deactivationFinished(_ key: Key, id: UInt64) {
        // Only the newest deactivation of a key clears the slot; older ones were chained.
        if deactivations[key]?.id == id { deactivations[key] = nil }
    }
}
