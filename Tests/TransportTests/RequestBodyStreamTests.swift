import Testing
@testable import Transport

/// The streamed request body's buffer: what the consumer took is released at once.
@Suite("Request body stream")
struct RequestBodyStreamTests {
    /// A consumer a little slower than the socket never empties the queue. The chunks it
    /// took were kept by their slots until the queue emptied — a 1 GiB upload held about
    /// 400 MiB this way (docs/media.md).
    @Test func takenChunksAreReleasedWhileTheQueueNeverEmpties() async throws {
        let stream = RequestBodyStream(highWater: 1 << 30, resumeProducer: {})
        let chunk = [UInt8](repeating: 7, count: 1000)
        _ = stream.push(chunk)
        var taken = 0
        for _ in 0..<500 {
            _ = stream.push(chunk)  // the producer stays one chunk ahead
            taken += try #require(try await stream.next()).count
            let held = stream.state.withLock { s in s.chunks.reduce(0) { $0 + $1.count } }
            #expect(held <= 2 * chunk.count, "bytes held after \(taken) taken: \(held)")
            let slots = stream.state.withLock { $0.chunks.count }
            #expect(slots <= 130)
        }
        stream.finish()
        #expect(try await stream.next()?.count == 1000)
        #expect(try await stream.next() == nil)
    }
}

/// The last response of a `Connection: close` request whose body streams (a file, a stream):
/// the connection closes after the body, not after the head.
@Suite("Connection close after a streamed body")
struct CloseAfterStreamedBodyTests {
    @Test func closingWaitsForTheStreamedBody() {
        var machine = ConnectionStateMachine(limits: ConnectionStateMachineTests.limits())
        _ = machine.start(now: 10)
        machine.responseStreams(sequence: 1, chunked: false)
        machine.closeAfterWrite()
        #expect(!machine.closesAfterWrite, "the head is written; the body still streams")
        let closes = machine.streamFinished(failed: false)
        #expect(closes)
        #expect(machine.closesAfterWrite)
    }
}
