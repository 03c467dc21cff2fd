import Testing
@testable import Persistence

@Suite("Pool state machine")
struct PoolStateMachineTests {
    @Test func leasesIdleConnectionsThenQueues() {
        var pool = PoolStateMachine(connectionCount: 2, maxWaiters: 10)
        #expect(pool.lease(1) == .run(on: 0))
        #expect(pool.lease(2) == .run(on: 1))
        #expect(pool.lease(3) == .wait)
        #expect(pool.lease(4) == .wait)
        #expect(pool.idleCount == 0)
        #expect(pool.leasedCount == 2)
        #expect(pool.waitingCount == 2)
    }

    @Test func releaseServesTheOldestWaiterFirst() {
        var pool = PoolStateMachine(connectionCount: 1, maxWaiters: 10)
        #expect(pool.lease(1) == .run(on: 0))
        #expect(pool.lease(2) == .wait)
        #expect(pool.lease(3) == .wait)
        #expect(pool.release(0) == .run(2, on: 0))
        #expect(pool.release(0) == .run(3, on: 0))
        #expect(pool.release(0) == .idle)
        #expect(pool.idleCount == 1)
        #expect(pool.leasedCount == 0)
        #expect(pool.lease(4) == .run(on: 0))
    }

    @Test func idleConnectionsAreReusedMostRecentFirst() {
        var pool = PoolStateMachine(connectionCount: 3, maxWaiters: 10)
        #expect(pool.lease(1) == .run(on: 0))
        #expect(pool.lease(2) == .run(on: 1))
        #expect(pool.release(0) == .idle)
        #expect(pool.release(1) == .idle)
        #expect(pool.lease(3) == .run(on: 1))
        #expect(pool.lease(4) == .run(on: 0))
        #expect(pool.lease(5) == .run(on: 2))
    }

    @Test func theWaitQueueIsBounded() {
        var pool = PoolStateMachine(connectionCount: 1, maxWaiters: 2)
        #expect(pool.lease(1) == .run(on: 0))
        #expect(pool.lease(2) == .wait)
        #expect(pool.lease(3) == .wait)
        #expect(pool.lease(4) == .reject(.poolExhausted))
        #expect(pool.release(0) == .run(2, on: 0))
        #expect(pool.lease(5) == .wait)
    }

    @Test func cancellingAWaiterRemovesOnlyIt() {
        var pool = PoolStateMachine(connectionCount: 1, maxWaiters: 10)
        #expect(pool.lease(1) == .run(on: 0))
        #expect(pool.lease(2) == .wait)
        #expect(pool.lease(3) == .wait)
        #expect(pool.cancel(2) == true)
        #expect(pool.cancel(2) == false)
        #expect(pool.cancel(1) == false) // running, not waiting
        #expect(pool.cancel(99) == false)
        #expect(pool.waitingCount == 1)
        #expect(pool.release(0) == .run(3, on: 0))
        #expect(pool.release(0) == .idle)
    }

    @Test func shutdownFailsWaitersAndRefusesNewLeases() {
        var pool = PoolStateMachine(connectionCount: 1, maxWaiters: 10)
        #expect(pool.lease(1) == .run(on: 0))
        #expect(pool.lease(2) == .wait)
        #expect(pool.lease(3) == .wait)
        #expect(pool.shutdown() == [2, 3])
        #expect(pool.shutdown() == [])
        #expect(pool.isShutDown)
        #expect(pool.lease(4) == .reject(.closed))
        // The running request still gives its connection back.
        #expect(pool.release(0) == .idle)
    }

    @Test func manyWaitersStayInOrderThroughCompaction() {
        var pool = PoolStateMachine(connectionCount: 1, maxWaiters: 1000)
        #expect(pool.lease(0) == .run(on: 0))
        for request in 1...300 { #expect(pool.lease(UInt64(request)) == .wait) }
        var served: [UInt64] = []
        for _ in 1...300 {
            if case .run(let request, on: 0) = pool.release(0) { served.append(request) }
            if served.count % 50 == 0 { #expect(pool.cancel(UInt64(served.count + 1000)) == false) }
        }
        #expect(served == Array(1...300))
        #expect(pool.release(0) == .idle)
    }
}
