import Synchronization
import Testing
@testable import Actors

/// A clock the test advances by hand.
final class ManualClock: RegistryClock {
    private let current = Mutex<Duration>(.zero)
    func now() -> Duration { current.withLock { $0 } }
    func advance(by duration: Duration) { current.withLock { $0 += duration } }
}

/// A trivial supervised actor that records its deactivation.
actor Probe: RegistryMember {
    let key: Int
    private(set) var deactivated = 0
    init(key: Int) { self.key = key }
    func deactivate() { deactivated += 1 }
}

/// A one-shot gate tasks can wait on.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

struct RegistryStateMachineTests {
    @Test func singleFlightThenResident() {
        var machine = RegistryStateMachine<String>(limits: RegistryLimits(maxResident: 2, idleTimeout: .seconds(10)))
        let r1 = machine.get("a", now: .zero)
        #expect(r1 == .activate(generation: 1))
        let r2 = machine.get("a", now: .zero)
        #expect(r2 == .join(generation: 1))
        let r3 = machine.get("a", now: .zero)
        #expect(r3 == .join(generation: 1))
        #expect(machine.callers(activating: "a") == 3)
        let r4 = machine.activated("a", generation: 1, now: .zero)
        #expect(r4 == [])
        let r5 = machine.get("a", now: .zero)
        #expect(r5 == .resident(generation: 1))
        #expect(machine.counters.activations == 1)
        #expect(machine.counters.joins == 2)
        #expect(machine.counters.resident == 1)
        #expect(machine.counters.activating == 0)
    }

    @Test func evictsLeastRecentlyUsedAtTheCap() {
        var machine = RegistryStateMachine<String>(limits: RegistryLimits(maxResident: 2, idleTimeout: .seconds(10)))
        for key in ["a", "b"] {
            guard case let .activate(generation) = machine.get(key, now: .zero) else { Issue.record(); return }
            let r6 = machine.activated(key, generation: generation, now: .zero)
            #expect(r6 == [])
        }
        _ = machine.get("a", now: .zero)  // "b" is now the least recently used
        guard case let .activate(generation) = machine.get("c", now: .zero) else { Issue.record(); return }
        let r7 = machine.activated("c", generation: generation, now: .zero)
        #expect(r7 == ["b"])
        #expect(machine.residentGeneration("b") == nil)
        #expect(machine.residentGeneration("a") != nil)
        #expect(machine.counters.resident == 2)
        #expect(machine.counters.evictions == 1)
        // "b" comes back as a fresh activation, evicting "a" (now the least recent).
        guard case let .activate(again) = machine.get("b", now: .zero) else { Issue.record(); return }
        let r8 = machine.activated("b", generation: again, now: .zero)
        #expect(r8 == ["a"])
    }

    @Test func idleResidentsAreSweptAndRecentOnesKept() {
        var machine = RegistryStateMachine<String>(limits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(60)))
        for key in ["old", "new"] {
            guard case let .activate(generation) = machine.get(key, now: .zero) else { Issue.record(); return }
            _ = machine.activated(key, generation: generation, now: .zero)
        }
        _ = machine.get("new", now: .seconds(30))
        let r9 = machine.sweepIdle(now: .seconds(59))
        #expect(r9 == [])
        let r10 = machine.sweepIdle(now: .seconds(60))
        #expect(r10 == ["old"])
        let r11 = machine.sweepIdle(now: .seconds(89))
        #expect(r11 == [])
        let r12 = machine.sweepIdle(now: .seconds(90))
        #expect(r12 == ["new"])
        #expect(machine.counters.idleDeactivations == 2)
        #expect(machine.counters.resident == 0)
    }

    @Test func failedActivationIsRetriedAndStaleReportsIgnored() {
        var machine = RegistryStateMachine<String>(limits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(60)))
        let r13 = machine.get("a", now: .zero)
        #expect(r13 == .activate(generation: 1))
        let r14 = machine.activationFailed("a", generation: 1)
        #expect(r14)
        let r15 = machine.activationFailed("a", generation: 1)
        #expect(!r15)
        let r16 = machine.get("a", now: .zero)
        #expect(r16 == .activate(generation: 2))
        #expect(machine.activated("a", generation: 1, now: .zero) == nil)  // stale
        let r17 = machine.activated("a", generation: 2, now: .zero)
        #expect(r17 == [])
        let r18 = machine.failed("a", generation: 1)
        #expect(!r18)
        let r19 = machine.failed("a", generation: 2)
        #expect(r19)
        let r20 = machine.get("a", now: .zero)
        #expect(r20 == .activate(generation: 3))
        #expect(machine.counters.failures == 2)
        #expect(machine.counters.activations == 3)
    }
}

struct RegistryTests {
    @Test func thousandConcurrentCallersShareOneActivation() async throws {
        let gate = Gate()
        let calls = Atomic<Int>(0)
        let registry = Registry<Int, Probe>(limits: RegistryLimits(maxResident: 4, idleTimeout: .seconds(60)),
                                           clock: ManualClock()) { key in
            calls.add(1, ordering: .relaxed)
            await gate.wait()
            return Probe(key: key)
        }
        let identities = try await withThrowingTaskGroup(of: ObjectIdentifier.self) { group in
            for _ in 0..<1_000 {
                group.addTask { ObjectIdentifier(try await registry.get(7)) }
            }
            // Hold the activation until every caller has arrived, so all must share it.
            while await registry.callers(activating: 7) < 1_000 { await Task.yield() }
            gate.open()
            var identities = Set<ObjectIdentifier>()
            for try await identity in group { identities.insert(identity) }
            return identities
        }
        #expect(identities.count == 1)
        #expect(calls.load(ordering: .relaxed) == 1)
        let counters = await registry.counters
        #expect(counters.activations == 1)
        #expect(counters.joins == 999)
        #expect(counters.resident == 1)
    }

    @Test func evictionDeactivatesTheLeastRecentlyUsed() async throws {
        let registry = Registry<Int, Probe>(limits: RegistryLimits(maxResident: 3, idleTimeout: .seconds(60)),
                                           clock: ManualClock()) { Probe(key: $0) }
        let first = try await registry.get(1)
        _ = try await registry.get(2)
        _ = try await registry.get(3)
        _ = try await registry.get(1)
        let fourth = try await registry.get(4)  // evicts 2
        #expect(await registry.resident(2) == nil)
        #expect(await registry.resident(1) === first)
        #expect(await registry.resident(4) === fourth)
        await registry.deactivateAll()
        #expect(await first.deactivated == 1)
        let counters = await registry.counters
        #expect(counters.evictions == 1)
        #expect(counters.resident == 0)
        #expect(counters.deactivations == 4)
    }

    /// `touch` (a use that bypassed `get`) counts for LRU and idle time; `remove` drops a
    /// resident at once; `get(_:activatingWith:)` builds with the caller's closure.
    @Test func touchRemoveAndCallerBuiltActivation() async throws {
        let clock = ManualClock()
        let registry = Registry<Int, Probe>(limits: RegistryLimits(maxResident: 2, idleTimeout: .seconds(60)),
                                           clock: clock) { Probe(key: $0) }
        let built = Probe(key: 1)
        #expect(try await registry.get(1, activatingWith: { _ in built }) === built)
        // Resident: the caller's closure is not used again.
        #expect(try await registry.get(1, activatingWith: { _ in Probe(key: 99) }) === built)
        _ = try await registry.get(2)
        await registry.touch(1)  // 2 is now the least recently used
        _ = try await registry.get(3)
        #expect(await registry.resident(2) == nil)
        #expect(await registry.resident(1) === built)
        clock.advance(by: .seconds(50))
        await registry.touch(1)
        clock.advance(by: .seconds(20))
        await registry.sweepIdle()  // 3 idle for 70 s, 1 for 20 s
        #expect(await registry.resident(3) == nil)
        #expect(await registry.resident(1) === built)
        await registry.remove(1)
        await registry.touch(1)  // not resident: nothing happens
        #expect(await registry.resident(1) == nil)
        await registry.deactivateAll()
        #expect(await built.deactivated == 1)
        let counters = await registry.counters
        #expect(counters.resident == 0)
        #expect(counters.evictions == 1)
        #expect(counters.idleDeactivations == 1)
    }

    @Test func idleActorsAreDeactivatedAndComeBackFresh() async throws {
        let clock = ManualClock()
        let registry = Registry<Int, Probe>(limits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(60)),
                                           clock: clock) { Probe(key: $0) }
        let before = try await registry.get(1)
        clock.advance(by: .seconds(59))
        await registry.sweepIdle()
        #expect(await registry.resident(1) === before)
        clock.advance(by: .seconds(1))
        await registry.sweepIdle()
        #expect(await registry.resident(1) == nil)
        let after = try await registry.get(1)  // waits for the old deactivation first
        #expect(after !== before)
        #expect(await before.deactivated == 1)
        #expect(await registry.counters.idleDeactivations == 1)
        #expect(await registry.counters.activations == 2)
    }

    /// An actor whose `deactivate` waits on a gate.
    actor SlowProbe: RegistryMember {
        let gate: Gate
        private(set) var finished = false
        init(gate: Gate) { self.gate = gate }
        func deactivate() async {
            await gate.wait()
            finished = true
        }
    }

    /// A key is never active twice: re-activation waits for the previous actor's
    /// `deactivate` to finish (a room's old writer must be done before the new one reads).
    @Test func reactivationWaitsForTheOldDeactivation() async throws {
        let clock = ManualClock()
        let gate = Gate()
        let previous = Mutex<SlowProbe?>(nil)
        let overlaps = Atomic<Int>(0)
        let registry = Registry<Int, SlowProbe>(limits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(1)),
                                               clock: clock) { _ in
            if let old = previous.withLock({ $0 }), await !old.finished { overlaps.add(1, ordering: .relaxed) }
            let probe = SlowProbe(gate: gate)
            previous.withLock { $0 = probe }
            return probe
        }
        let first = try await registry.get(1)
        clock.advance(by: .seconds(1))
        await registry.sweepIdle()
        let second = Task { try await registry.get(1) }
        for _ in 0..<100 { await Task.yield() }
        gate.open()
        let reactivated = try await second.value
        #expect(reactivated !== first)
        #expect(await first.finished)
        #expect(overlaps.load(ordering: .relaxed) == 0)
    }

    struct Boom: Error {}

    @Test func failureDropsAndReactivates() async throws {
        let attempts = Atomic<Int>(0)
        let registry = Registry<Int, Probe>(limits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(60)),
                                           clock: ManualClock()) { key in
            if attempts.add(1, ordering: .relaxed).newValue == 1 { throw Boom() }
            return Probe(key: key)
        }
        await #expect(throws: Boom.self) { try await registry.get(1) }
        let first = try await registry.get(1)
        await registry.reportFailure(1, member: first)
        let second = try await registry.get(1)
        #expect(first !== second)
        #expect(await first.deactivated == 1)
        // A stale report about the dropped actor does not touch its successor.
        await registry.reportFailure(1, member: first)
        #expect(await registry.resident(1) === second)
        let counters = await registry.counters
        #expect(counters.failures == 2)
        #expect(counters.activations == 3)
    }
}
