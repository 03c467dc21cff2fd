import CLibUV
import CTaskAllocator
import Glibc

/// Requests to the responder and their answers back: one request of a connection with the
/// responder at a time, run by the connection's runner task.
extension Connection {
    /// A request handed to the connection's runner, with its place on the connection.
    struct Dispatched: Sendable {
        let request: HTTPRequest
        let sequence: UInt64
    }

    /// Requests that take longer than this end their runner (see `startRunner`).
    static let runnerKeepNanoseconds: UInt64 = 2_000_000

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Hands the next complete request to the responder when none is in flight; with none
    /// pending, the connection turns idle.
    func dispatchNext() {
        let first = pending.first
        switch state.dispatch(first: first?.sequence, complete: first?.complete ?? false, now: now, draining: loop.draining) {
        case .none:
            return
        case .closeWhenWritten:
            markDirty()
        case .dispatch(let sequence):
            let first = first.unsafelyUnwrapped
            if let response = rejectedResponses.removeValue(forKey: sequence) {
                deliver(sequence: sequence, response: response)
                return
            }
            let request = HTTPRequest(head: first.head, body: first.body, remoteAddress: remoteAddress, requestID: first.requestID)
            let next = Dispatched(request: request, sequence: sequence)
            if let runner = idleRunner {
                idleRunner = nil
                runner.resume(returning: next)
            } else {
                startRunner(with: next)
            }
        }
    }

    /// One task runs every request of a connection in turn (a connection has at most one
    /// request in flight), so a request costs the resumption of a waiting task instead of the
    /// creation of a new one.
    private func startRunner(with first: Dispatched) {
        let responder = loop.server.responder
        let loop = self.loop
        let id = self.id
        let executor: any TaskExecutor = loop.server.workers ?? loop.handlers
        Task(executorPreference: executor) {
            Connection.reserveTaskFrames()
            var next: Dispatched? = first
            while let sequence = next?.sequence {
                let response: HTTPResponse
                let started = Connection.monotonicNanoseconds()
                do {
                    // The request (and its body) is not kept while the runner waits.
                    let request = next!.request
                    next = nil
                    response = await responder.respond(to: request)
                }
                if Connection.monotonicNanoseconds() - started > Connection.runnerKeepNanoseconds {
                    // A long request (a long-poll, a large sync) leaves this task's stack grown:
                    // end the runner rather than hold that memory while the connection waits.
                    // The next request starts a new one.
                    loop.runOnLoop { loop.connections[id]?.deliver(sequence: sequence, response: response) }
                    return
                }
                // The answer is written on the loop's thread, not awaited there: with handlers on
                // the loops the runner is on that thread already and writes it now; on the
                // worker pool it queues it to the loop and stays on the pool thread. Either way
                // it then waits for the connection's next request.
                next = await withUnsafeContinuation { runner in
                    let answer: @Sendable () -> Void = {
                        guard let connection = loop.connections[id], !connection.closing else {
                            runner.resume(returning: nil)
                            return
                        }
                        // Set before delivering: delivery may dispatch a pipelined request.
                        connection.idleRunner = runner
                        connection.deliver(sequence: sequence, response: response)
                    }
                    // On the loop's thread (handlers on the loops) the answer is written now.
                    loop.runOnLoop(answer)
                }
            }
        }
    }

    /// Bytes of async frames a runner reserves at its start (see `reserveTaskFrames`).
    static let runnerFrameReserve = 4 * 1024

    /// Gives the current task's allocator one empty slab of `runnerFrameReserve` bytes for
    /// the frames of the requests the runner runs. Swift's task allocator otherwise adds a
    /// slab of ~1 KB (a `malloc`) whenever the next frame does not fit the current slab, so
    /// the frames a waiting long-poll holds (~3.8 KB from this runner down to the notifier,
    /// read from the binary's async function pointers) took 5–8 slabs with gaps between
    /// them, and a sync ~19 `malloc`s (9 with the reserve and the smaller frames of `Sync`). The allocator keeps an emptied
    /// slab for the next frames, so one allocation and its release leave the reserve in
    /// place; a request deeper than the reserve gets more slabs as before.
    static func reserveTaskFrames() {
        let reserve = myelin_task_alloc(runnerFrameReserve)
        myelin_task_dealloc(reserve)
    }

    /// Writes the response to the request in flight (loop thread).
    func deliver(sequence: UInt64, response: HTTPResponse) {
        guard state.awaits(sequence), let index = pending.firstIndex(where: { $0.sequence == sequence }) else { return }
        let entry = pending.remove(at: index)
        state.responded()
        if state.readPausedByBody || bodyStream != nil { bodyOwnerAnswered(entry) }
        let lastOnConnection = !entry.keepAlive || (loop.draining && pending.isEmpty)
        write(response, for: entry, close: lastOnConnection)
        if case .paused(let read) = state.outputQueued(backlog: backlog, now: now) {
            loop.outputPauses &+= 1
            perform(read)
        }
        if lastOnConnection {
            state.closeAfterWrite()
            pending.removeAll()
            markDirty()
            return
        }
        if state.shouldResumeParser(pending: pending.count) { resumeParser() }
        dispatchNext()
    }

    /// `entry`, answered, may be the request whose streamed body is still arriving or whose
    /// consumer holds reading stopped: its handler will read no more of it.
    private func bodyOwnerAnswered(_ entry: Pending) {
        guard case .stream = entry.body else { return }
        if entry.sequence == nextSequence &- 1 && state.bodyOwnerAnswered() {
            // Answered before its body arrived (e.g. refused unread): the rest is read and
            // dropped, within the same deadline. Closing instead could reset the connection
            // before the peer reads the answer.
            bodyStream?.finish(.connectionClosed)
            bodyStream = nil
        }
        // Its consumer is gone and will never drain what it left unread. (If the pause was
        // a later request's, its next push pauses again.)
        perform(state.bodyConsumerDrained(now: now))
    }

    /// Ends a streamed or file response; a failed stream closes the connection, since the
    /// peer cannot otherwise tell a truncated body.
    func finishStream(failed: Bool) {
        if state.streamingChunked && !failed { queueRaw(Array("0\r\n\r\n".utf8)) }
        if state.streamFinished(failed: failed) {
            markDirty()
            return
        }
        if state.shouldResumeParser(pending: pending.count) { resumeParser() }
        dispatchNext()
    }
}

