import Matrix
import Testing
@testable import Actors

/// The destination's decisions, driven by hand: batching limits, one transaction in flight,
/// backoff growth, cap and jitter bounds, EDU coalescing and staleness.
@Suite struct FederationDestinationStateMachineTests {
    typealias Machine = FederationDestinationStateMachine

    static let limits = Machine.Limits(backoffInitial: .milliseconds(1_000), backoffMax: .milliseconds(60_000))

    static func pdus(_ positions: ClosedRange<Int64>) -> [(position: Int64, bytes: [UInt8])] {
        positions.map { ($0, Array("{\"p\":\($0)}".utf8)) }
    }

    static func typing(_ user: String, _ typing: Bool) -> JSON {
        ["edu_type": "m.typing", "content": ["room_id": "!r:a", "user_id": .string(user), "typing": .bool(typing)]]
    }

    @Test func aFreshMachineReadsOnceThenIdles() {
        var machine = Machine(limits: Self.limits, position: 7, transactionPrefix: "t")
        let r1 = machine.step(now: .zero)
        #expect(r1 == .read(after: 7, storedEDUs: true))
        let r2 = machine.step(now: .zero)
        #expect(r2 == .inFlight)
        let r3 = machine.transaction(from: .init(pdus: [], upTo: 9), now: .zero)
        #expect(r3 == nil)
        #expect(machine.position == 9)
        let r4 = machine.step(now: .zero)
        #expect(r4 == .idle)
    }

    @Test func transactionsHoldAtMost50PDUsAnd100EDUsAndOneIsInFlight() throws {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        for index in 0..<130 { machine.enqueue(["edu_type": "x", "content": ["i": .int(Int64(index))]], key: nil, now: .zero) }
        let r5 = machine.step(now: .zero)
        #expect(r5 == .read(after: 0, storedEDUs: true))
        let stored: [(id: Int64, edu: JSON)] = (1...5).map { (Int64($0), ["edu_type": "m.direct_to_device"]) }
        // 51 read: the 51st tells the machine the read was cut.
        let firstBuilt = machine.transaction(from: .init(pdus: Self.pdus(1...51), upTo: 80, storedEDUs: stored), now: .zero)
        let first = try #require(firstBuilt)
        #expect(first.pdus.count == 50)
        #expect(first.edus.count == 100)
        #expect(first.storedEDUIDs.isEmpty)  // the queue filled the 100 first
        #expect(first.newPosition == 50 && first.morePDUs)
        // While in flight, a wake-up does not start another transaction.
        machine.wake()
        let r6 = machine.step(now: .zero)
        #expect(r6 == .inFlight)
        machine.succeeded(now: .zero)
        #expect(machine.position == 50)
        #expect(machine.queue.count == 30)
        let r7 = machine.step(now: .zero)
        #expect(r7 == .read(after: 50, storedEDUs: true))
        let secondBuilt = machine.transaction(from: .init(pdus: Self.pdus(51...60), upTo: 80, storedEDUs: stored), now: .zero)
        let second = try #require(secondBuilt)
        #expect(second.pdus.count == 10 && !second.morePDUs && second.newPosition == 80)
        #expect(second.edus.count == 35 && second.storedEDUIDs == [1, 2, 3, 4, 5])
        machine.succeeded(now: .zero)
        #expect(machine.position == 80 && machine.queue.isEmpty)
        let r8 = machine.step(now: .zero)
        #expect(r8 == .idle)
    }

    @Test func aWakeUpDuringAFlightIsNotLost() throws {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        _ = machine.step(now: .zero)
        let r9 = machine.transaction(from: .init(pdus: Self.pdus(1...2), upTo: 2), now: .zero)
        #expect(r9 != nil)
        machine.wake()
        machine.succeeded(now: .zero)
        let r10 = machine.step(now: .zero)
        #expect(r10 == .read(after: 2, storedEDUs: false))
    }

    @Test func backoffDoublesUpToTheCapAndResetsOnSuccess() throws {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        var now: Duration = .zero
        var delays: [Duration] = []
        for _ in 0..<10 {
            let r11 = machine.step(now: now)
            #expect(r11 == .read(after: 0, storedEDUs: true))
            let r12 = machine.transaction(from: .init(pdus: Self.pdus(1...1), upTo: 1), now: now)
            #expect(r12 != nil)
            machine.failed(now: now, jitter: 0.5)  // factor 1.0
            guard case .wait(let until) = machine.step(now: now) else { Issue.record("not backing off"); return }
            delays.append(until - now)
            // Nothing is sent before the deadline.
            let r13 = machine.step(now: until - .milliseconds(1))
            #expect(r13 == .wait(until: until))
            now = until
        }
        #expect(Array(delays.prefix(7)) == [1, 2, 4, 8, 16, 32, 60].map { Duration.seconds($0) })
        #expect(delays.dropFirst(6).allSatisfy { $0 == .seconds(60) })
        #expect(machine.position == 0)  // nothing acknowledged, nothing skipped
        _ = machine.step(now: now)
        let r14 = machine.transaction(from: .init(pdus: Self.pdus(1...1), upTo: 1), now: now)
        #expect(r14 != nil)
        machine.succeeded(now: now)
        #expect(machine.failures == 0 && machine.position == 1)
        let r15 = machine.step(now: now)
        #expect(r15 == .idle)
    }

    @Test func jitterStaysWithinAQuarterOfTheDelayAndUnderTheCap() {
        for failures in 1...12 {
            let base = min(1_000 << (failures - 1), 60_000)
            for jitter in [0.0, 0.25, 0.5, 0.999, 1.0, -3, 7] {
                let delay = Machine.backoffDelay(failures: failures, jitter: jitter, limits: Self.limits)
                #expect(delay >= .milliseconds(base * 3 / 4))
                #expect(delay <= .milliseconds(min(base * 5 / 4, 60_000)))
            }
        }
        #expect(Machine.backoffDelay(failures: 1, jitter: 0, limits: Self.limits)
                != Machine.backoffDelay(failures: 1, jitter: 0.9, limits: Self.limits))
        // Absurd failure counts do not overflow.
        #expect(Machine.backoffDelay(failures: Int.max, jitter: 0.5, limits: Self.limits) == .seconds(60))
    }

    @Test func typingIsCoalescedPerUserAndTheNewestWins() throws {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        _ = machine.step(now: .zero)
        _ = machine.transaction(from: .init(pdus: [], upTo: 0), now: .zero)
        let alice = Machine.EDUKey.typing(room: "!r:a", user: "@alice:a")
        machine.enqueue(Self.typing("@alice:a", true), key: alice, now: .zero)
        machine.enqueue(Self.typing("@bob:a", true), key: .typing(room: "!r:a", user: "@bob:a"), now: .zero)
        machine.enqueue(Self.typing("@alice:a", false), key: alice, now: .seconds(1))
        #expect(machine.queue.map(\.edu) == [Self.typing("@bob:a", true), Self.typing("@alice:a", false)])
        let r16 = machine.step(now: .seconds(1))
        #expect(r16 == .read(after: 0, storedEDUs: false))
        let sentBuilt = machine.transaction(from: .init(pdus: [], upTo: 0), now: .seconds(1))
        let sent = try #require(sentBuilt)
        #expect(sent.edus.count == 2)
        // Replaced during the flight: the replacement stays, the sent entries leave.
        machine.enqueue(Self.typing("@bob:a", false), key: .typing(room: "!r:a", user: "@bob:a"), now: .seconds(2))
        machine.succeeded(now: .seconds(2))
        #expect(machine.queue.map(\.edu) == [Self.typing("@bob:a", false)])
    }

    @Test func staleTypingAndPresenceAreDroppedButReceiptsAreNot() {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        _ = machine.step(now: .zero)
        _ = machine.transaction(from: .init(pdus: [], upTo: 0), now: .zero)
        machine.enqueue(Self.typing("@alice:a", true), key: .typing(room: "!r:a", user: "@alice:a"), now: .zero)
        machine.enqueue(["edu_type": "m.presence"], key: .presence(user: "@alice:a"), now: .zero)
        machine.enqueue(["edu_type": "m.receipt"], key: .receipt(room: "!r:a", type: "m.read", user: "@alice:a", thread: ""), now: .zero)
        _ = machine.step(now: .seconds(120))
        let sent = machine.transaction(from: .init(pdus: [], upTo: 0), now: .seconds(120))
        #expect(sent?.edus == [["edu_type": "m.receipt"]])
    }

    @Test func whileBackingOffEDUsAreNotHeldAndTheQueueIsBounded() throws {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        _ = machine.step(now: .zero)
        machine.enqueue(["edu_type": "m.receipt"], key: nil, now: .zero)
        let r17 = machine.transaction(from: .init(pdus: Self.pdus(1...1), upTo: 1), now: .zero)
        #expect(r17 != nil)
        machine.failed(now: .zero, jitter: 0)
        #expect(machine.queue.isEmpty)
        let queued = machine.enqueue(["edu_type": "m.typing"], key: nil, now: .milliseconds(10))
        #expect(!queued)
        #expect(machine.queue.isEmpty)
        // The remote spoke to us: retry at once.
        machine.heardFrom(now: .milliseconds(20))
        let r18 = machine.step(now: .milliseconds(20))
        #expect(r18 == .read(after: 0, storedEDUs: true))
        _ = machine.transaction(from: .init(pdus: [], upTo: 1), now: .milliseconds(20))
        var bounded = Machine(limits: Self.limits, position: 0, transactionPrefix: "t")
        for index in 0..<(Self.limits.maxQueuedEDUs + 10) { bounded.enqueue(["i": .int(Int64(index))], key: nil, now: .zero) }
        #expect(bounded.queue.count == Self.limits.maxQueuedEDUs)
    }

    @Test func transactionIDsAreUniquePerAttempt() throws {
        var machine = Machine(limits: Self.limits, position: 0, transactionPrefix: "1700")
        _ = machine.step(now: .zero)
        let firstBuilt = machine.transaction(from: .init(pdus: Self.pdus(1...1), upTo: 1), now: .zero)
        let first = try #require(firstBuilt)
        machine.failed(now: .zero, jitter: 0)
        let later = Duration.seconds(5)
        _ = machine.step(now: later)
        let secondBuilt = machine.transaction(from: .init(pdus: Self.pdus(1...1), upTo: 1), now: later)
        let second = try #require(secondBuilt)
        #expect(first.id != second.id && first.id.hasPrefix("1700-"))
        #expect(first.pdus == second.pdus)
    }
}
