import CLibUV
import CLLHTTP
import Glibc

/// Responses onto the wire, the writes that carry them, output backpressure, timeouts and
/// closing.
extension Connection {
    // MARK: Responses

    func write(_ response: HTTPResponse, for entry: Pending, close: Bool) {
        var head = output
        output = []
        // Room for the whole answer at once: growing past a guess costs a reallocation and,
        // from 1 KiB, a consolidation of malloc's free lists.
        var needed = head.count + 160 + loop.dateHeader.count + loop.server.commonHeaderBytes.count
        if case .bytes(let bytes) = response.body { needed += bytes.count }
        for field in response.headers.fields { needed += field.name.utf8.count + field.value.utf8.count + 4 }
        if head.capacity < needed { head.reserveCapacity(needed) }
        StatusLine.append(response.status, to: &head)
        head.append(contentsOf: loop.dateHeader)
        head.append(contentsOf: loop.server.commonHeaderBytes)
        if let contentType = response.contentType {
            head.append(contentsOf: "Content-Type: ".utf8)
            head.append(contentsOf: contentType.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        for field in response.headers.fields {
            head.append(contentsOf: field.name.utf8)
            head.append(contentsOf: ": ".utf8)
            head.append(contentsOf: field.value.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        if close { head.append(contentsOf: "Connection: close\r\n".utf8) }
        let noBody = entry.isHead || response.status == 204 || response.status == 304
        switch response.body {
        case .empty:
            if response.status != 204 && response.status != 304 { head.append(contentsOf: "Content-Length: 0\r\n".utf8) }
            head.append(contentsOf: "\r\n".utf8)
            queueRaw(head)
        case .bytes(let bytes):
            head.append(contentsOf: "Content-Length: ".utf8)
            StatusLine.appendDecimal(bytes.count, to: &head)
            head.append(contentsOf: "\r\n\r\n".utf8)
            if !noBody { head.append(contentsOf: bytes) }
            queueRaw(head)
        case .file(let path, let offset, let length):
            head.append(contentsOf: "Content-Length: ".utf8)
            head.append(contentsOf: String(length).utf8)
            head.append(contentsOf: "\r\n\r\n".utf8)
            queueRaw(head)
            if !noBody && length > 0 {
                state.responseStreams(sequence: entry.sequence, chunked: false)
                FileSender.start(connection: self, path: path, offset: offset, length: length, sequence: entry.sequence)
            }
        case .stream(let length, let chunks):
            if let length {
                head.append(contentsOf: "Content-Length: ".utf8)
                head.append(contentsOf: String(length).utf8)
                head.append(contentsOf: "\r\n".utf8)
            } else {
                head.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
            }
            head.append(contentsOf: "\r\n".utf8)
            queueRaw(head)
            if !noBody {
                state.responseStreams(sequence: entry.sequence, chunked: length == nil)
                let actor = loop.actor!
                let id = self.id
                let sequence = entry.sequence
                Task.detached {
                    var failed = false
                    do {
                        for try await chunk in chunks where !chunk.isEmpty {
                            if await !actor.writeChunk(connection: id, sequence: sequence, chunk: chunk) { return }
                        }
                    } catch {
                        failed = true
                    }
                    await actor.finishStream(connection: id, sequence: sequence, failed: failed)
                }
            }
        }
    }

    func writeStreamChunk(_ chunk: [UInt8]) {
        if state.streamingChunked {
            queueRaw(Array(String(chunk.count, radix: 16).utf8) + [0x0D, 0x0A])
            queueRaw(chunk)
            queueRaw([0x0D, 0x0A])
        } else {
            queueRaw(chunk)
        }
    }

    // MARK: Writing

    /// Queues plaintext for the socket (on a TLS connection, `flush` encrypts it).
    func queueRaw(_ bytes: [UInt8]) {
        if output.isEmpty && output.capacity < bytes.count { output = bytes } else { output.append(contentsOf: bytes) }
        markDirty()
    }

    func markDirty() {
        guard !isDirty else { return }
        isDirty = true
        loop.dirty.append(self)
    }

    /// Writes queued output to the socket: `uv_try_write` first, `uv_write` for what the
    /// socket did not take.
    func flush() {
        isDirty = false
        guard !state.isClosed else { return }
        if let tls, state.writesInFlight == 0 {
            // With no write in flight, `output` holds plaintext only: it becomes ciphertext.
            guard encryptOutput(tls) else { return }
        }
        if !output.isEmpty && state.writesInFlight == 0 {
            let written: Int = output.withUnsafeMutableBytes { raw in
                var buf = uv_buf_init(raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(raw.count))
                return Int(uv_try_write(stream, &buf, 1))
            }
            if written == output.count {
                output.removeAll(keepingCapacity: output.capacity <= 64 * 1024)
            } else if written < 0 && written != Int(UV_EAGAIN.rawValue) {
                close()
                return
            } else {
                let rest = written > 0 ? Array(output[written...]) : output
                output = []
                startWrite(rest)
            }
        }
        if output.isEmpty && state.writesInFlight == 0 {
            resumeDrainWaiters()
            if state.closesAfterWrite { close() } else { fileSender?.writeDrained() }
        }
        if !state.isClosed { outputLeft() }
    }

    private func startWrite(_ bytes: [UInt8]) {
        let request = WriteRequest(bytes: bytes, connection: self)
        state.writeStarted(bytes: bytes.count, now: now)
        let rc = request.submit(stream)
        if rc != 0 {
            state.writeFinished(bytes: bytes.count, progressed: false, now: 0)
            close()
        }
    }

    func writeFinished(_ request: WriteRequest, status: Int32) {
        state.writeFinished(bytes: request.count, progressed: status >= 0, now: now)
        if status < 0 { close(); return }
        outputLeft()
        if state.isClosed { return }
        if state.writesInFlight == 0 {
            if !output.isEmpty || (tls?.pendingCiphertext ?? 0) > 0 { markDirty() } else {
                resumeDrainWaiters()
                if state.closesAfterWrite { close() }
                else if let sender = fileSender { sender.writeDrained() }
            }
        }
    }

    /// After output left for the socket: stops or resumes reading and dispatching.
    @inline(__always)
    private func outputLeft() {
        switch state.outputLeft(backlog: backlog, now: now) {
        case .none:
            break
        case .paused(let read):
            loop.outputPauses &+= 1
            perform(read)
        case .resumed(let read):
            perform(read)
            dispatchNext()
        }
    }

    private func resumeDrainWaiters() {
        guard !drainWaiters.isEmpty else { return }
        let waiters = drainWaiters
        drainWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Timeouts, shutdown and closing

    /// The loop's sweep: deadlines, and while writes are in flight, the write stall (a peer
    /// that reads nothing of its answers for the idle timeout is dropped, so that connections
    /// that never read cannot hold their output, and themselves, for ever).
    func sweep(now: UInt64) {
        switch state.tick(now: now, hasUnsentOutput: !output.isEmpty) {
        case .none: break
        case .close: close()
        case .reject: reject(.timeout)
        }
        if state.writesInFlight > 0 && !state.isClosed
            && state.writeStalled(queued: uv_stream_get_write_queue_size(stream), now: now) {
            close()
        }
        shedBuffers()
    }

    /// Frees the buffers a connection only needs while bytes move: the parser's head arena
    /// and header table (outside a head) and the emptied output buffer (no write in flight).
    /// A connection held by a long-poll, or idle between requests, then costs its handles and
    /// state only; the next head or response grows them again (a malloc each, at most once
    /// per sweep for a busy connection).
    func shedBuffers() {
        guard !state.isClosed else { return }
        if !state.isReadingHead && myelin_http_held_bytes(parser) > 0 { myelin_http_shed(parser) }
        if output.isEmpty && output.capacity > 0 && state.writesInFlight == 0 { output = [] }
    }

    /// Bytes held by the buffers `shedBuffers` frees (tests).
    var sheddableBytes: Int { myelin_http_held_bytes(parser) + output.capacity }

    func drainForShutdown() {
        let (close, read) = state.shutdownBegan(pending: pending.count)
        if close { self.close() } else { perform(read) }
    }

    func close() {
        guard state.close() else { return }
        if let runner = idleRunner {
            idleRunner = nil
            runner.resume(returning: nil)
        }
        bodyStream?.finish(.connectionClosed)
        bodyStream = nil
        resumeDrainWaiters()
        fileSender?.cancel()
        if let tls { sendCloseNotify(tls) }
        // The handle keeps the connection alive until libuv is done with it (a refused
        // connection is in no table).
        tcp.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let connection = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeRetainedValue()
            connection.closed()
        }
    }

    /// Closes a connection refused at accept (a blocked address) with a reset: nothing of it
    /// was read, nothing is written, and this side keeps no TIME_WAIT for it.
    func closeRefused() {
        guard state.close() else { return }
        tcp.pointee.data = Unmanaged.passRetained(self).toOpaque()
        let rc = uv_tcp_close_reset(tcp) { handle in
            let connection = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeRetainedValue()
            connection.closed()
        }
        if rc != 0 {
            uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { handle in
                let connection = Unmanaged<Connection>.fromOpaque(handle!.pointee.data).takeRetainedValue()
                connection.closed()
            }
        }
    }

    private func closed() {
        tcp.deallocate()
        if admitted { loop.server.releaseConnection() }
        if countedForPeer { loop.server.releasePeer(peer) }
        loop.connections.removeValue(forKey: id)
        loop.closeIfDrained()
    }
}

/// One `uv_write` and the bytes it must keep alive until its callback.
final class WriteRequest {
    let request: UnsafeMutablePointer<uv_write_t>
    let storage: UnsafeMutableRawBufferPointer
    let connection: Connection
    var count: Int { storage.count }

    init(bytes: [UInt8], connection: Connection) {
        storage = .allocate(byteCount: bytes.count, alignment: 1)
        storage.copyBytes(from: bytes)
        self.connection = connection
        request = .allocate(capacity: 1)
    }

    deinit {
        request.deallocate()
        storage.deallocate()
    }

    func submit(_ stream: UnsafeMutablePointer<uv_stream_t>) -> Int32 {
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
        var buf = uv_buf_init(storage.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(storage.count))
        let rc = uv_write(request, stream, &buf, 1) { req, status in
            let me = Unmanaged<WriteRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
            me.connection.writeFinished(me, status: status)
        }
        if rc != 0 { Unmanaged<WriteRequest>.fromOpaque(request.pointee.data).release() }
        return rc
    }
}

/// Status lines and decimal numbers written straight into the output buffer.
enum StatusLine {
    static let common: [Int: [UInt8]] = {
        var table: [Int: [UInt8]] = [:]
        for status in [200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 502, 503] {
            table[status] = Array("HTTP/1.1 \(status) \(reasonPhrase(status))\r\n".utf8)
        }
        return table
    }()

    static func append(_ status: Int, to out: inout [UInt8]) {
        if status == 200 {
            out.append(contentsOf: "HTTP/1.1 200 OK\r\n".utf8)
        } else if let line = common[status] {
            out.append(contentsOf: line)
        } else {
            out.append(contentsOf: "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n".utf8)
        }
    }

    static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value < 10 { out.append(UInt8(48 + value)); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = value
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            while n > 0 && count < 20 {
                raw[19 - count] = UInt8(48 + n % 10)
                n /= 10
                count += 1
            }
            out.append(contentsOf: raw[(20 - count)...])
        }
    }
}
