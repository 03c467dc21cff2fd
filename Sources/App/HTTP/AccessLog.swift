import Dispatch
import Transport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The access log: one line per request, in the format of the other log lines
/// (`2026-12-06T04:40:12+0000 info myelin.access: 127.0.0.1 #12 GET /path 200 85µs`).
///
/// Cheap by construction, because every request writes one: the handler's thread appends the
/// line's bytes to a buffer under a lock (no `Logger` metadata, no per-line timestamp
/// formatting — the second's prefix is formatted once per second), and a serial queue writes
/// the buffer to standard error in one `write` every 100 ms, or sooner when 64 KiB are waiting.
/// No request ever waits for the file. Past 8 MiB waiting (a stalled stderr) lines are counted
/// and dropped, never queued without bound. Owned by `MyelinApp`; `flush()` at shutdown.
final class AccessLog: Sendable {
    private struct State {
        var buffer: [UInt8] = []
        var flushScheduled = false
        var dropped = 0
        var second: Int = -1
        var prefix: [UInt8] = []
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "myelin.access-log")
    private let fd: Int32
    static let flushBytes = 64 << 10
    static let maxBufferedBytes = 8 << 20

    init(fd: Int32 = 2) {
        self.fd = fd
        scheduleTick()
    }

    /// Every 100 ms on `queue`, for as long as the log exists.
    private func scheduleTick() {
        queue.asyncAfter(deadline: .now() + .milliseconds(100)) { [weak self] in
            guard let self else { return }
            self.writeOut()
            self.scheduleTick()
        }
    }

    /// Appends one request's line.
    func record(address: String, requestID: UInt64, method: HTTPMethod, target: String, status: Int, micros: Int64) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let second = Int(now.tv_sec)
        let scheduleFlush: Bool = state.withLock { s in
            if s.buffer.count > Self.maxBufferedBytes {
                s.dropped += 1
                return false
            }
            if s.second != second {
                s.second = second
                s.prefix = Self.prefix(forSecond: now.tv_sec)
            }
            s.buffer.append(contentsOf: s.prefix)
            s.buffer.append(contentsOf: address.utf8)
            s.buffer.append(contentsOf: " #".utf8)
            Self.appendDecimal(Int64(truncatingIfNeeded: requestID), to: &s.buffer)
            s.buffer.append(0x20)
            Self.appendMethod(method, to: &s.buffer)
            s.buffer.append(0x20)
            MyelinApp.appendRedacted(target, to: &s.buffer)
            s.buffer.append(0x20)
            Self.appendDecimal(Int64(status), to: &s.buffer)
            s.buffer.append(0x20)
            Self.appendDecimal(micros, to: &s.buffer)
            s.buffer.append(contentsOf: "µs\n".utf8)
            if s.buffer.count >= Self.flushBytes && !s.flushScheduled {
                s.flushScheduled = true
                return true
            }
            return false
        }
        if scheduleFlush { queue.async { self.writeOut() } }
    }

    /// Writes what is buffered now (and waits for it): at shutdown, and in tests.
    func flush() { queue.sync { writeOut() } }

    /// On `queue`: takes the buffer and writes it out.
    private func writeOut() {
        let (bytes, dropped): ([UInt8], Int) = state.withLock { s in
            s.flushScheduled = false
            let taken = s.buffer
            s.buffer = []
            s.buffer.reserveCapacity(min(taken.count, Self.flushBytes * 2))
            let dropped = s.dropped
            s.dropped = 0
            return (taken, dropped)
        }
        var out = bytes
        if dropped > 0 { out += Array("access log: \(dropped) lines dropped (standard error did not keep up)\n".utf8) }
        out.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    /// `2026-12-06T04:40:12+0000 info myelin.access: ` for one second (UTC, as the other lines).
    static func prefix(forSecond seconds: time_t) -> [UInt8] {
        var t = seconds
        var parts = tm()
        gmtime_r(&t, &parts)
        var text = [CChar](repeating: 0, count: 64)
        let n = strftime(&text, 64, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return text.prefix(n).map { UInt8(bitPattern: $0) } + Array(" info myelin.access: ".utf8)
    }

    static func appendMethod(_ method: HTTPMethod, to out: inout [UInt8]) {
        switch method {
        case .get: out.append(contentsOf: "GET".utf8)
        case .head: out.append(contentsOf: "HEAD".utf8)
        case .post: out.append(contentsOf: "POST".utf8)
        case .put: out.append(contentsOf: "PUT".utf8)
        case .delete: out.append(contentsOf: "DELETE".utf8)
        case .options: out.append(contentsOf: "OPTIONS".utf8)
        case .patch: out.append(contentsOf: "PATCH".utf8)
        case .other(let name): out.append(contentsOf: name.utf8)
        }
    }

    static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for index in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[index]) }
        }
    }
}
