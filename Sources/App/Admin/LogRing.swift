import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The newest log lines of the process, in memory, for the admin `logs` endpoint: a ring of
/// at most `capacity` lines (the oldest is overwritten), each message cut at
/// `maxMessageBytes`. Written by `RingLogHandler` under a lock (one append per line that
/// passes the level, which the transport's per-request access log does not go through).
///
/// `LogRing.process` is the ring of the daemon's whole logging system (installed by
/// `Serve.bootstrapLogging`); a `MyelinApp` built around a logger that does not write to
/// a ring (tests) keeps its own, fed by its own logger.
final class LogRing: Sendable {
    struct Line: Sendable {
        let sequence: Int
        let timestampMs: Int64
        let level: Logger.Level
        let label: String
        let message: String
    }

    static let process = LogRing()
    static let defaultCapacity = 2_000
    static let maxMessageBytes = 4_096

    let capacity: Int
    private let state: Mutex<(lines: [Line], next: Int, written: Int)>

    init(capacity: Int = LogRing.defaultCapacity) {
        self.capacity = max(1, capacity)
        state = Mutex(([], 0, 0))
    }

    func append(level: Logger.Level, label: String, message: String) {
        var text = message
        if text.utf8.count > Self.maxMessageBytes {
            text = String(decoding: text.utf8.prefix(Self.maxMessageBytes), as: UTF8.self) + "…"
        }
        let now = Clock.nowMilliseconds()
        state.withLock { s in
            let line = Line(sequence: s.written, timestampMs: now, level: level, label: label, message: text)
            s.written += 1
            if s.lines.count < capacity {
                s.lines.append(line)
            } else {
                s.lines[s.next] = line
            }
            s.next = (s.next + 1) % capacity
        }
    }

    /// The newest `limit` lines at `minimum` level or above, oldest first.
    func recent(limit: Int, minimum: Logger.Level) -> [Line] {
        let ordered: [Line] = state.withLock { s in
            s.lines.count < capacity ? s.lines : Array(s.lines[s.next...] + s.lines[..<s.next])
        }
        var out: [Line] = []
        for line in ordered.reversed() where line.level >= minimum {
            if out.count >= limit { break }
            out.append(line)
        }
        return out.reversed()
    }

    /// Lines held now (at most `capacity`).
    var count: Int { state.withLock { $0.lines.count } }

    /// `logger` unchanged if it already writes to a ring, else a logger with the same label
    /// that writes to `self` at `level` and above, and to the original handler at its own
    /// level.
    func attach(to logger: Logger, level: Logger.Level) -> Logger {
        if logger.handler is RingLogHandler { return logger }
        let inner = logger.handler
        return Logger(label: logger.label) { label in RingLogHandler(inner: inner, ring: self, ringLevel: level, label: label) }
    }

    /// The ring a logger writes to, if it does.
    static func ring(of logger: Logger) -> LogRing? { (logger.handler as? RingLogHandler)?.ring }
}

/// A `LogHandler` that records every line of `ringLevel` or above into a `LogRing` and
/// passes those of the inner handler's level on to it (standard error).
struct RingLogHandler: LogHandler {
    var inner: any LogHandler
    let ring: LogRing
    var ringLevel: Logger.Level
    let label: String

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    /// The lower of both levels (the logger only calls `log` at or above it); setting it
    /// sets both, as `logger.logLevel = ...` means.
    var logLevel: Logger.Level {
        get { min(inner.logLevel, ringLevel) }
        set {
            inner.logLevel = newValue
            ringLevel = newValue
        }
    }

    func log(event: LogEvent) {
        if event.level >= ringLevel {
            var text = "\(event.message)"
            let merged = inner.metadata.merging(event.metadata ?? [:]) { $1 }
            if !merged.isEmpty {
                text += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            }
            ring.append(level: event.level, label: label, message: text)
        }
        if event.level >= inner.logLevel { inner.log(event: event) }
    }
}
