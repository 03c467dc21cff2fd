import Testing
@testable import Transport

/// The connection lifecycle without sockets: each test drives `ConnectionStateMachine` through
/// the events a connection reports, with loop times chosen by the test, and checks the actions
/// it returns.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine

    static func limits(minRate: UInt64 = 0) -> Machine.Limits {
        Machine.Limits(headerReadTimeoutMs: 100, bodyReadTimeoutMs: 1000, idleTimeoutMs: 5000, maxPipelined: 4,
                       maxHeaderBytes: 8192, minBodyBytesPerSecond: minRate, maxUnsentOutputBytes: 1000)
    }

    /// A started machine that has parsed one request without a body (sequence 0), not yet dispatched.
    static func withOneRequest(now: UInt64 = 10) -> Machine {
        var machine = Machine(limits: limits())
        _ = machine.start(now: now)
        machine.messageBegan(now: now)
        _ = machine.headParsed(bodyLimit: 100, declaredLength: nil, streamed: false)
        machine.bodyBegins(hasBody: false, now: now)
        machine.messageComplete()
        return machine
    }

    @Test func startReadsWithTheHeaderDeadline() {
        var machine = Machine(limits: Self.limits())
        let r1 = machine.start(now: 1000)
        #expect(r1 == .start)
        #expect(machine.reading)
        #expect(machine.deadline == 1100)
        let r2 = machine.startReading()
        #expect(r2 == .none)  // already reading
        let r3 = machine.stopReading()
        #expect(r3 == .stop)
        let r4 = machine.stopReading()
        #expect(r4 == .none)
    }

    @Test func keepAliveRequestIsDispatchedOnceThenTheConnectionIdles() {
        var machine = Self.withOneRequest()
        #expect(machine.input == .betweenMessages)
        #expect(machine.deadline == 0)
        let r5 = machine.afterMessage(keepAlive: true, pending: 1)
        #expect(r5 == .proceed)
        let r6 = machine.dispatch(first: 0, complete: true, now: 20, draining: false)
        #expect(r6 == .dispatch(sequence: 0))
        #expect(machine.response == .dispatched(sequence: 0))
        // One request with the responder at a time: the next waits.
        let r7 = machine.dispatch(first: 1, complete: true, now: 20, draining: false)
        #expect(r7 == .none)
        #expect(machine.awaits(0))
        #expect(!machine.awaits(1))
        machine.responded()
        let r8 = machine.dispatch(first: nil, complete: false, now: 30, draining: false)
        #expect(r8 == .none)
        #expect(machine.deadline == 5030)  // idle
        let r9 = machine.tick(now: 5030, hasUnsentOutput: false)
        #expect(r9 == .close)
    }

    @Test func incompleteBufferedRequestIsNotDispatched() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 100, declaredLength: 10, streamed: false)
        machine.bodyBegins(hasBody: true, now: 0)
        let r10 = machine.dispatch(first: 0, complete: false, now: 0, draining: false)
        #expect(r10 == .none)
        #expect(machine.response == .none)
        #expect(machine.deadline == 1000)  // the body's, not an idle one
    }

    @Test func idleDuringShutdownClosesOnceWritten() {
        var machine = Self.withOneRequest()
        let r11 = machine.dispatch(first: nil, complete: false, now: 20, draining: true)
        #expect(r11 == .closeWhenWritten)
        #expect(machine.phase == .closingAfterWrite)
        #expect(machine.closesAfterWrite)
        let r12 = machine.resumeReadingIfAllowed()
        #expect(r12 == .none)
    }

    @Test func shutdownClosesOnlyAnIdleConnection() {
        var idle = Self.withOneRequest()
        let r13 = idle.shutdownBegan(pending: 0)
        #expect(r13 == (close: true, read: .none))
        var busy = Self.withOneRequest()
        _ = busy.dispatch(first: 0, complete: true, now: 20, draining: false)
        let r14 = busy.shutdownBegan(pending: 1)
        #expect(r14 == (close: false, read: .stop))
    }

    @Test func declaredBodyPastTheLimitIsRefusedAndBodyBytesCounted() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        let r15 = machine.headParsed(bodyLimit: 100, declaredLength: 101, streamed: false)
        #expect(!r15)
        let r16 = machine.headParsed(bodyLimit: 100, declaredLength: nil, streamed: true)
        #expect(r16)
        machine.bodyBegins(hasBody: true, now: 0)
        #expect(machine.input == .body(streamed: true, answered: false))
        let r17 = machine.bodyReceived(count: 60)
        #expect(r17 == .stream)
        let r18 = machine.bodyReceived(count: 40)
        #expect(r18 == .stream)
        let r19 = machine.bodyReceived(count: 1)
        #expect(r19 == .tooLarge)
    }

    @Test func bodyDeadlineIsAbsoluteAndBytesEarnCreditAtTheMinimumRate() {
        var machine = Machine(limits: Self.limits(minRate: 1000))
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 1 << 20, declaredLength: 10_000, streamed: false)
        machine.bodyBegins(hasBody: true, now: 50)
        #expect(machine.deadline == 1050)
        let r20 = machine.bodyReceived(count: 500)
        #expect(r20 == .buffer)
        #expect(machine.deadline == 1550)  // 500 bytes at 1000 B/s earn 500 ms
        let r21 = machine.bodyReceived(count: 0)
        #expect(r21 == .buffer)
        #expect(machine.deadline == 1550)
        let r22 = machine.tick(now: 1549, hasUnsentOutput: false)
        #expect(r22 == .none)
        let r23 = machine.tick(now: 1550, hasUnsentOutput: false)
        #expect(r23 == .reject)  // 408
        #expect(machine.deadline == 0)
    }

    @Test func withoutAMinimumRateReadsEarnNothing() {
        var machine = Machine(limits: Self.limits(minRate: 0))
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 1 << 20, declaredLength: 10_000, streamed: false)
        machine.bodyBegins(hasBody: true, now: 0)
        _ = machine.bodyReceived(count: 5000)
        #expect(machine.deadline == 1000)
    }

    @Test func headTimeoutRejects() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        let r24 = machine.tick(now: 99, hasUnsentOutput: false)
        #expect(r24 == .none)
        let r25 = machine.tick(now: 100, hasUnsentOutput: false)
        #expect(r25 == .reject)
    }

    @Test func timeTheServerStopsReadingIsGivenBackToThePeer() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 1 << 20, declaredLength: 10_000, streamed: true)
        machine.bodyBegins(hasBody: true, now: 0)
        #expect(machine.deadline == 1000)
        let r26 = machine.bodyConsumerFull(now: 200)
        #expect(r26 == .stop)
        #expect(machine.readPausedByBody)
        // No deadline runs while the server is the slow one.
        let r27 = machine.tick(now: 5000, hasUnsentOutput: false)
        #expect(r27 == .none)
        let r28 = machine.bodyConsumerDrained(now: 700)
        #expect(r28 == .start)
        #expect(machine.deadline == 1500)
        #expect(machine.serverPausedAt == 0)
        let r29 = machine.bodyConsumerDrained(now: 800)
        #expect(r29 == .none)  // nothing held any more
    }

    @Test func bothServerPausesMustEndBeforeReadingResumes() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 1 << 20, declaredLength: 10_000, streamed: true)
        machine.bodyBegins(hasBody: true, now: 0)
        let r30 = machine.bodyConsumerFull(now: 100)
        #expect(r30 == .stop)
        let r31 = machine.outputQueued(backlog: 2000, now: 200)
        #expect(r31 == .paused(.none))
        let r32 = machine.bodyConsumerDrained(now: 300)
        #expect(r32 == .none)  // output still holds it
        let r33 = machine.outputLeft(backlog: 400, now: 600)
        #expect(r33 == .resumed(.start))
        #expect(machine.deadline == 1500)  // paused from 100 to 600
    }

    @Test func answeredUploadIsDroppedAndClosedWithoutA408AtItsDeadline() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 1 << 20, declaredLength: 10_000, streamed: true)
        machine.bodyBegins(hasBody: true, now: 0)
        let r34 = machine.dispatch(first: 0, complete: true, now: 0, draining: false)
        #expect(r34 == .dispatch(sequence: 0))
        machine.responded()
        let r35 = machine.bodyOwnerAnswered()
        #expect(r35)
        #expect(machine.input == .body(streamed: true, answered: true))
        let r36 = machine.tick(now: 1000, hasUnsentOutput: false)
        #expect(r36 == .close)
    }

    @Test func bufferedBodyOwnerIsNotMarkedAnswered() {
        var machine = Machine(limits: Self.limits())
        _ = machine.start(now: 0)
        machine.messageBegan(now: 0)
        _ = machine.headParsed(bodyLimit: 1 << 20, declaredLength: 10, streamed: false)
        machine.bodyBegins(hasBody: true, now: 0)
        let r37 = machine.bodyOwnerAnswered()
        #expect(!r37)
    }

    @Test func unsentOutputPausesReadingAndDispatchUntilBelowHalf() {
        var machine = Self.withOneRequest()
        let r38 = machine.outputQueued(backlog: 1000, now: 20)
        #expect(r38 == .none)  // at the bound, not past it
        let r39 = machine.outputQueued(backlog: 1001, now: 20)
        #expect(r39 == .paused(.stop))
        #expect(machine.outputPaused)
        let r40 = machine.outputQueued(backlog: 5000, now: 20)
        #expect(r40 == .none)  // counted once
        let r41 = machine.dispatch(first: 0, complete: true, now: 20, draining: false)
        #expect(r41 == .none)
        let r42 = machine.outputLeft(backlog: 501, now: 30)
        #expect(r42 == .none)
        let r43 = machine.outputLeft(backlog: 500, now: 30)
        #expect(r43 == .resumed(.start))
        #expect(!machine.outputPaused)
        let r44 = machine.dispatch(first: 0, complete: true, now: 30, draining: false)
        #expect(r44 == .dispatch(sequence: 0))
    }

    @Test func pipelinedRequestsPauseTheParserAndResumeAtHalf() {
        var machine = Self.withOneRequest()
        let r45 = machine.afterMessage(keepAlive: true, pending: 4)
        #expect(r45 == .proceed)
        let r46 = machine.afterMessage(keepAlive: true, pending: 5)
        #expect(r46 == .pause)
        let r47 = machine.parserDidPause()
        #expect(r47 == .stop)
        #expect(machine.parserPaused)
        let r48 = machine.resumeReadingIfAllowed()
        #expect(r48 == .none)
        #expect(!machine.shouldResumeParser(pending: 3))
        #expect(machine.shouldResumeParser(pending: 2))
        machine.parserWillResume()
        let r49 = machine.resumeReadingIfAllowed()
        #expect(r49 == .start)
    }

    @Test func requestWithoutKeepAliveEndsTheInput() {
        var machine = Self.withOneRequest()
        let r50 = machine.afterMessage(keepAlive: false, pending: 1)
        #expect(r50 == .pauseAndStop(.stop))
    }

    @Test func rejectionAndUpgradeHoldReadingStopped() {
        var rejected = Self.withOneRequest()
        let r51 = rejected.reject()
        #expect(r51 == .stop)
        #expect(rejected.isRejected)
        #expect(rejected.deadline == 0)
        let r52 = rejected.resumeReadingIfAllowed()
        #expect(r52 == .none)
        var upgraded = Self.withOneRequest()
        let r53 = upgraded.inputEnded()
        #expect(r53 == .stop)
        let r54 = upgraded.resumeReadingIfAllowed()
        #expect(r54 == .none)
    }

    @Test func idleDeadlineWaitsForOutputStillGoingOut() {
        var machine = Self.withOneRequest()
        _ = machine.dispatch(first: 0, complete: true, now: 0, draining: false)
        machine.responded()
        _ = machine.dispatch(first: nil, complete: false, now: 0, draining: false)
        machine.writeStarted(bytes: 100, now: 4000)
        let r55 = machine.tick(now: 5000, hasUnsentOutput: false)
        #expect(r55 == .none)
        #expect(machine.deadline == 10_000)  // moved on by the idle timeout
        machine.writeFinished(bytes: 100, progressed: true, now: 6000)
        let r56 = machine.tick(now: 10_000, hasUnsentOutput: true)
        #expect(r56 == .none)
        let r57 = machine.tick(now: 15_000, hasUnsentOutput: false)
        #expect(r57 == .close)
    }

    @Test func writeStallIsJudgedFromTheLastProgress() {
        var machine = Self.withOneRequest()
        machine.writeStarted(bytes: 300, now: 1000)
        machine.writeStarted(bytes: 200, now: 2000)  // the first write's time counts
        #expect(machine.writesInFlight == 2)
        #expect(machine.writeBacklog == 500)
        let r58 = machine.writeStalled(queued: 500, now: 3000)
        #expect(!r58)
        let r59 = machine.writeStalled(queued: 400, now: 5000)
        #expect(!r59)  // the queue shrank: progress
        let r60 = machine.writeStalled(queued: 400, now: 9999)
        #expect(!r60)
        let r61 = machine.writeStalled(queued: 400, now: 10_000)
        #expect(r61)
        machine.writeFinished(bytes: 300, progressed: true, now: 10_000)
        #expect(machine.writeBacklog == 200)
        let r62 = machine.writeStalled(queued: 200, now: 10_001)
        #expect(!r62)
    }

    @Test func streamedResponseHoldsDispatchUntilItEnds() {
        var machine = Self.withOneRequest()
        _ = machine.dispatch(first: 0, complete: true, now: 0, draining: false)
        machine.responded()
        machine.responseStreams(sequence: 0, chunked: true)
        #expect(machine.streamingSequence == 0)
        #expect(machine.streamingChunked)
        let r63 = machine.dispatch(first: 1, complete: true, now: 0, draining: false)
        #expect(r63 == .none)
        let r64 = machine.streamFinished(failed: false)
        #expect(!r64)
        #expect(machine.streamingSequence == nil)
        #expect(!machine.streamingChunked)
        let r65 = machine.dispatch(first: 1, complete: true, now: 0, draining: false)
        #expect(r65 == .dispatch(sequence: 1))
    }

    @Test func failedStreamClosesOnceWritten() {
        var machine = Self.withOneRequest()
        _ = machine.dispatch(first: 0, complete: true, now: 0, draining: false)
        machine.responded()
        machine.responseStreams(sequence: 0, chunked: false)
        let r66 = machine.streamFinished(failed: true)
        #expect(r66)
        #expect(machine.phase == .closingAfterWrite)
    }

    @Test func closeHappensOnceAndEndsEverything() {
        var machine = Self.withOneRequest()
        _ = machine.dispatch(first: 0, complete: true, now: 0, draining: false)
        let r67 = machine.close()
        #expect(r67)
        let r68 = machine.close()
        #expect(!r68)
        #expect(machine.isClosed)
        #expect(!machine.reading)
        #expect(machine.deadline == 0)
        #expect(!machine.awaits(0))  // a late answer is dropped
        let r69 = machine.startReading()
        #expect(r69 == .none)
        let r70 = machine.tick(now: .max, hasUnsentOutput: false)
        #expect(r70 == .none)
    }
}
