import Matrix
import Persistence
import Synchronization
import Testing
@testable import Actors

struct NotifierTests {
    static func user(_ n: Int) -> UserID { try! UserID(parsing: "@u\(n):example.org") }

    static func fanout() -> NotifierFanout {
        NotifierFanout(limits: RegistryLimits(maxResident: 10_000, idleTimeout: .seconds(300)), clock: ManualClock())
    }

    /// Waits until `user` has `count` waiters registered.
    static func waitForWaiters(_ fanout: NotifierFanout, _ user: UserID, _ count: Int) async {
        while true {
            if let notifier = fanout.resident(user), notifier.waiterCount >= count { return }
            await Task.yield()
        }
    }

    @Test func wakesWithAPositionWhenAStreamAdvances() async {
        let fanout = Self.fanout()
        let alice = Self.user(1)
        let waiter = Task { await fanout.wait(alice, since: .zero, timeout: .seconds(600)) { .zero } }
        await Self.waitForWaiters(fanout, alice, 1)
        fanout.notify([Self.user(2)], of: StreamChange(.roomEvents, 5))  // someone else
        fanout.notify([alice], of: StreamChange(.accountData, 3))
        let token = await waiter.value
        #expect(token == StreamToken([.accountData: 3]))
    }

    @Test func returnsAtOnceWhenPositionsAreAlreadyAhead() async {
        let fanout = Self.fanout()
        let since = StreamToken([.roomEvents: 4])
        let token = await fanout.wait(Self.user(1), since: since, timeout: .seconds(600)) {
            StreamToken([.roomEvents: 4, .receipts: 1])
        }
        #expect(token == StreamToken([.roomEvents: 4, .receipts: 1]))
        #expect(fanout.resident(Self.user(1))?.waiterCount == 0)
    }

    @Test func timesOutWithNothing() async {
        let fanout = Self.fanout()
        let since = StreamToken([.roomEvents: 4])
        #expect(await fanout.wait(Self.user(1), since: since, timeout: .zero) { since } == nil)
        #expect(await fanout.wait(Self.user(1), since: since, timeout: .milliseconds(20)) { since } == nil)
        // An advance not beyond `since` does not wake.
        let waiter = Task { await fanout.wait(Self.user(1), since: since, timeout: .milliseconds(50)) { since } }
        await Self.waitForWaiters(fanout, Self.user(1), 1)
        fanout.notify([Self.user(1)], of: StreamChange(.roomEvents, 4))
        #expect(await waiter.value == nil)
    }

    @Test func cancellationEndsTheWait() async {
        let fanout = Self.fanout()
        let waiter = Task { await fanout.wait(Self.user(1), since: .zero, timeout: .seconds(600)) { .zero } }
        await Self.waitForWaiters(fanout, Self.user(1), 1)
        waiter.cancel()
        #expect(await waiter.value == nil)
        #expect(fanout.resident(Self.user(1))?.waiting.load(ordering: .sequentiallyConsistent) == 0)
    }

    @Test func sweepKeepsNotifiersWithWaiters() async {
        let clock = ManualClock()
        let fanout = NotifierFanout(limits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(60)), clock: clock)
        _ = await fanout.wait(Self.user(1), since: .zero, timeout: .zero) { .zero }
        let waiter = Task { await fanout.wait(Self.user(2), since: .zero, timeout: .seconds(600)) { .zero } }
        await Self.waitForWaiters(fanout, Self.user(2), 1)
        clock.advance(by: .seconds(61))
        #expect(fanout.sweep() == 1)
        #expect(fanout.resident(Self.user(1)) == nil)
        #expect(fanout.resident(Self.user(2)) != nil)
        fanout.notify([Self.user(2)], of: StreamChange(.typing, 1))
        #expect(await waiter.value?[.typing] == 1)
    }

    /// 200 users long-poll in a loop while 4 writers commit 100 positions each, out of
    /// order, notifying everyone after each commit. A lost wake-up leaves a user stuck
    /// until its (10 minute) timeout, which fails the test; every user must reach the end.
    @Test func manyWaitersLoseNoWakeUp() async {
        let fanout = Self.fanout()
        let tracker = StreamTracker(name: "events", current: 0)
        let users = (0..<200).map(Self.user)
        let writers = 4
        let perWriter = 100
        let final = Int64(writers * perWriter)
        await withTaskGroup(of: Bool.self) { group in
            for user in users {
                group.addTask {
                    var since = StreamToken.zero
                    while since[.roomEvents] < final {
                        guard let token = await fanout.wait(user, since: since, timeout: .seconds(600), current: {
                            StreamToken([.roomEvents: tracker.visiblePosition])
                        }) else { return false }
                        #expect(token.isAhead(of: since))
                        since = token
                    }
                    return true
                }
            }
            for _ in 0..<writers {
                group.addTask {
                    for _ in 0..<perWriter {
                        let allocation = tracker.allocate()
                        await Task.yield()
                        tracker.commit(allocation)
                        fanout.notify(users, of: StreamChange(.roomEvents, tracker.visiblePosition))
                    }
                    return true
                }
            }
            var finished = 0
            for await ok in group where ok { finished += 1 }
            #expect(finished == users.count + writers)
        }
    }
}
