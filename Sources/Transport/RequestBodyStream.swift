import Synchronization

/// The body of a streamed request: chunks pushed by the connection's loop thread, consumed
/// by the handler as an `AsyncSequence`. When more than `highWater` bytes wait unread the
/// connection stops reading from its socket; it resumes once the consumer drains below half.
public final class RequestBodyStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    public typealias Failure = any Error

    public enum StreamError: Error, Sendable { case connectionClosed, tooLarge }

    struct State {
        var chunks: [[UInt8]] = []
        var head = 0
        var buffered = 0
        var finished = false
        var failure: StreamError?
        var waiter: CheckedContinuation<[UInt8]?, any Error>?
        var pausedProducer = false
    }

    let state = Mutex(State())
    let highWater: Int
    /// Called (from the consumer's thread) when a paused producer may read again.
    let resumeProducer: @Sendable () -> Void

    init(highWater: Int = 256 * 1024, resumeProducer: @escaping @Sendable () -> Void) {
        self.highWater = highWater
        self.resumeProducer = resumeProducer
    }

    /// Producer side (loop thread). Returns false when the producer should stop reading.
    func push(_ chunk: [UInt8]) -> Bool {
        let (waiter, keepReading): (CheckedContinuation<[UInt8]?, any Error>?, Bool) = state.withLock { s in
            if let w = s.waiter {
                s.waiter = nil
                return (w, true)
            }
            s.chunks.append(chunk)
            s.buffered += chunk.count
            if s.buffered > highWater {
                s.pausedProducer = true
                return (nil, false)
            }
            return (nil, true)
        }
        waiter?.resume(returning: chunk)
        return keepReading
    }

    func finish(_ failure: StreamError? = nil) {
        let waiter: CheckedContinuation<[UInt8]?, any Error>? = state.withLock { s in
            guard !s.finished else { return nil }
            s.finished = true
            s.failure = failure
            if failure != nil {
                // Nobody will read what is buffered (the request was answered or its peer
                // left): release it now rather than when the last reference goes.
                s.chunks = []
                s.head = 0
                s.buffered = 0
            }
            let w = s.waiter
            s.waiter = nil
            return w
        }
        if let waiter {
            if let failure { waiter.resume(throwing: failure) } else { waiter.resume(returning: nil) }
        }
    }

    private enum Step { case chunk([UInt8], resume: Bool), end, fail(StreamError), wait }

    /// Takes the next chunk if one is buffered (under the lock), noting whether the paused
    /// producer may read again.
    private func take(_ s: inout State) -> Step {
        if s.head < s.chunks.count {
            let c = s.chunks[s.head]
            // The slot lets go of the chunk at once: a consumer that never quite catches up
            // (the queue never empties) would otherwise keep every chunk it already took
            // alive until the body ends — a whole upload in memory.
            s.chunks[s.head] = []
            s.head += 1
            if s.head == s.chunks.count {
                s.chunks.removeAll(keepingCapacity: true)
                s.head = 0
            } else if s.head >= 64 && s.head * 2 >= s.chunks.count {
                s.chunks.removeFirst(s.head)
                s.head = 0
            }
            s.buffered -= c.count
            var resume = false
            if s.pausedProducer && s.buffered <= highWater / 2 { s.pausedProducer = false; resume = true }
            return .chunk(c, resume: resume)
        }
        if s.finished { return s.failure.map { .fail($0) } ?? .end }
        return .wait
    }

    func next() async throws -> [UInt8]? {
        switch state.withLock({ take(&$0) }) {
        case .chunk(let c, let resume):
            if resume { resumeProducer() }
            return c
        case .end: return nil
        case .fail(let e): throw e
        case .wait:
            return try await withCheckedThrowingContinuation { continuation in
                // Checked again under the lock: a chunk may have arrived meanwhile.
                let step: Step = state.withLock { s in
                    let step = take(&s)
                    if case .wait = step { s.waiter = continuation }
                    return step
                }
                switch step {
                case .chunk(let c, let resume):
                    if resume { resumeProducer() }
                    continuation.resume(returning: c)
                case .end: continuation.resume(returning: nil)
                case .fail(let e): continuation.resume(throwing: e)
                case .wait: break
                }
            }
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: RequestBodyStream
        public mutating func next() async throws -> [UInt8]? { try await stream.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }
}
