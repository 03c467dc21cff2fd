import Synchronization

/// Histograms of the store's write path and of SQLite's WAL checkpoints, kept by `Database`
/// (one instance per open store) and rendered on the Prometheus page by the App
/// (`metrics.path`), in the same families on SQLite and PostgreSQL.
///
/// What each measures (all on the connection's thread, with the monotonic clock):
/// - `myelin_db_write_queue_seconds`: from `Database.write` being called to its body starting
///   on a writer connection (waiting behind other writes, or for a pool connection);
/// - `myelin_db_transaction_seconds`: from `BEGIN` to `COMMIT` returning (the body included);
/// - `myelin_db_commit_seconds`: the `COMMIT` statement alone: the part that waits on the
///   disk (an fsync under `synchronous = FULL` or PostgreSQL's WAL flush; an automatic
///   checkpoint when SQLite runs it inside the commit);
/// - `myelin_db_checkpoint_seconds` and `myelin_db_checkpoint_pages` (SQLite): each
///   checkpoint run by the background checkpointer, and the pages it wrote back;
/// - `myelin_db_wal_pages` (SQLite): the WAL's size in pages after the last commit.
public final class StoreMetrics: Sendable {
    public let writeQueue = StoreHistogram(bounds: StoreHistogram.microsecondBounds)
    public let transaction = StoreHistogram(bounds: StoreHistogram.microsecondBounds)
    public let commit = StoreHistogram(bounds: StoreHistogram.microsecondBounds)
    public let checkpoint = StoreHistogram(bounds: StoreHistogram.microsecondBounds)
    public let checkpointPages = StoreHistogram(bounds: [0, 10, 100, 1_000, 10_000, 100_000])
    let walPages = Atomic<Int>(0)
    /// Checkpoints by mode (`passive`, `restart`, `truncate`) that SQLite reported done.
    private let checkpointsByMode = Mutex<[String: Int]>([:])
    private let backend: String

    init(backend: String) { self.backend = backend }

    func countCheckpoint(mode: String) {
        checkpointsByMode.withLock { $0[mode, default: 0] += 1 }
    }

    /// Checkpoints by mode since the store opened.
    public var checkpoints: [String: Int] { checkpointsByMode.withLock { $0 } }

    /// The WAL's size in pages after the last commit (SQLite; 0 on PostgreSQL).
    public var lastWALPages: Int { walPages.load(ordering: .relaxed) }

    /// The families in Prometheus' text format (0.0.4), each histogram labelled with the
    /// backend; durations in seconds.
    public func prometheus() -> String {
        let label = "backend=\"\(backend)\""
        var out = ""
        writeQueue.render(into: &out, name: "myelin_db_write_queue_seconds", labels: label, seconds: true,
                          help: "Time a write transaction waited for the writer connection.")
        transaction.render(into: &out, name: "myelin_db_transaction_seconds", labels: label, seconds: true,
                           help: "Write transactions, BEGIN to COMMIT done.")
        commit.render(into: &out, name: "myelin_db_commit_seconds", labels: label, seconds: true,
                      help: "The COMMIT statement of write transactions.")
        checkpoint.render(into: &out, name: "myelin_db_checkpoint_seconds", labels: label, seconds: true,
                          help: "WAL checkpoints run by the background checkpointer (SQLite).")
        checkpointPages.render(into: &out, name: "myelin_db_checkpoint_pages", labels: label, seconds: false,
                               help: "Pages written back to the database file per checkpoint (SQLite).")
        out += "# HELP myelin_db_checkpoints_total Checkpoints run, by mode (SQLite).\n"
        out += "# TYPE myelin_db_checkpoints_total counter\n"
        let counts = checkpoints
        for mode in ["passive", "restart", "truncate"] {
            out += "myelin_db_checkpoints_total{\(label),mode=\"\(mode)\"} \(counts[mode] ?? 0)\n"
        }
        out += "# HELP myelin_db_wal_pages Pages in the WAL after the last commit (SQLite).\n"
        out += "# TYPE myelin_db_wal_pages gauge\nmyelin_db_wal_pages{\(label)} \(lastWALPages)\n"
        return out
    }
}

/// A fixed-bucket histogram of non-negative integers (microseconds or counts), updated from
/// any thread under a mutex held for a few instructions.
public final class StoreHistogram: Sendable {
    private struct State {
        var counts: [Int]
        var sum = 0
    }

    /// Upper bounds, increasing; one more bucket counts what lies past the last.
    public let bounds: [Int]
    private let state: Mutex<State>

    /// 1-2-5 steps from 10 µs to 60 s: a quantile read from them is exact to within a step.
    public static let microsecondBounds: [Int] = [
        10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
        200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 60_000_000,
    ]

    public init(bounds: [Int]) {
        self.bounds = bounds
        state = Mutex(State(counts: Array(repeating: 0, count: bounds.count + 1)))
    }

    /// The bucket of `value`: the first whose bound is at least `value`.
    func bucket(of value: Int) -> Int {
        var low = 0, high = bounds.count
        while low < high {
            let mid = (low + high) / 2
            if value <= bounds[mid] { high = mid } else { low = mid + 1 }
        }
        return low
    }

    public func record(_ value: Int) {
        let value = max(0, value)
        let index = bucket(of: value)
        state.withLock { state in
            state.counts[index] &+= 1
            state.sum &+= value
        }
    }

    /// Observations per bucket (not cumulative) and their sum.
    public func snapshot() -> (counts: [Int], sum: Int) {
        state.withLock { ($0.counts, $0.sum) }
    }

    public var count: Int { snapshot().counts.reduce(0, &+) }

    func render(into out: inout String, name: String, labels: String, seconds: Bool, help: String) {
        let (counts, sum) = snapshot()
        func number(_ value: Int) -> String { seconds ? Self.seconds(micros: value) : String(value) }
        out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative = 0
        for (index, bound) in bounds.enumerated() {
            cumulative &+= counts[index]
            out += "\(name)_bucket{\(labels),le=\"\(number(bound))\"} \(cumulative)\n"
        }
        cumulative &+= counts[bounds.count]
        out += "\(name)_bucket{\(labels),le=\"+Inf\"} \(cumulative)\n"
        out += "\(name)_sum{\(labels)} \(number(sum))\n"
        out += "\(name)_count{\(labels)} \(cumulative)\n"
    }

    /// `micros` as a decimal number of seconds, without Foundation's formatting (the
    /// metrics page's request histogram uses it too).
    public static func seconds(micros: Int) -> String {
        let whole = micros / 1_000_000, fraction = micros % 1_000_000
        if fraction == 0 { return "\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}

/// Microseconds elapsed since `start` on the monotonic clock, bounded to `Int`.
func microseconds(since start: ContinuousClock.Instant) -> Int {
    let elapsed = ContinuousClock.now - start
    let (seconds, attoseconds) = elapsed.components
    guard seconds >= 0 else { return 0 }
    guard seconds < Int64(Int.max / 1_000_000) - 1 else { return Int.max }
    return Int(seconds) * 1_000_000 + Int(attoseconds / 1_000_000_000_000)
}
