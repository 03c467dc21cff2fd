/// Where the store lives and how many connections it may use: the `database:` section of the
/// configuration file, parsed by the App and passed to `Database.open`.
public enum DatabaseConfiguration: Sendable, Hashable {
    /// An SQLite file in WAL mode: one writer connection and `readerCount` reader
    /// connections, each on a thread of its own. `readerCount` 0 sends reads to the writer.
    case sqlite(path: String, readerCount: Int = 4)
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
