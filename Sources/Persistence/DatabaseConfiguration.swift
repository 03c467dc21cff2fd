/// Where the store lives and how many connections it may use: the `database:` section of the
/// configuration file, parsed by the App and passed to `Database.open`.
public enum DatabaseConfiguration: Sendable, Hashable {
    /// An SQLite file in WAL mode: one writer connection and `readerCount` reader
    /// connections, each on a thread of its own. `readerCount` 0 sends reads to the writer.
    case sqlite(path: String, readerCount: Int = 4, options: SQLiteOptions = SQLiteOptions())
    /// A PostgreSQL database reached with a libpq connection string
    /// (`host=... port=... user=... dbname=...` or a `postgresql://` URI), through a pool
    /// of `poolSize` connections, each on a thread of its own.
    case postgres(conninfo: String, poolSize: Int = 10)

    public var dialect: SQLDialect {
        switch self {
        case .sqlite: return .sqlite
        case .postgres: return .postgres
        }
    }

    /// How many callers may wait for a busy pool before new ones fail with
    /// `DatabaseError.Kind.poolExhausted` instead of queueing without bound.
    public static let maxWaiters = 10_000
}

/// How the SQLite store syncs and checkpoints (`database.sqlite.checkpoint_pages` and
/// `database.sqlite.synchronous` in the configuration file).
public struct SQLiteOptions: Sendable, Hashable {
    /// `NORMAL`: a commit writes the WAL without syncing it (durable against a crash of the
    /// process; the WAL is synced by the next checkpoint). `FULL`: each commit syncs the WAL
    /// (durable against power loss too).
    public enum Synchronous: String, Sendable, Hashable, CaseIterable {
        case normal, full
    }

    /// Un-checkpointed WAL pages that start a background PASSIVE checkpoint on the
    /// checkpointer's own connection and thread (`WALCheckpointer`). 0 leaves checkpointing
    /// to SQLite's automatic checkpoint, which runs inside the commit that passes 1,000
    /// pages, holding the writer (the behaviour before issue 22, kept for comparison).
    public var checkpointPages: Int
    public var synchronous: Synchronous

    /// Bounds of `checkpointPages` when not 0 (pages of 4 KiB: 256 KiB to 4 GiB).
    public static let checkpointPagesRange = 64...1_000_000

    public init(checkpointPages: Int = 1_000, synchronous: Synchronous = .normal) {
        self.checkpointPages = checkpointPages == 0 ? 0
            : min(max(checkpointPages, Self.checkpointPagesRange.lowerBound), Self.checkpointPagesRange.upperBound)
        self.synchronous = synchronous
    }
}
