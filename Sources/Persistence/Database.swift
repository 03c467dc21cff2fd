import Matrix
import Synchronization
import Logging

/// The store: the one entry point through which the server reads and writes SQL, on SQLite
/// or PostgreSQL behind the same API. Opened once at start-up by the App (which passes it
/// to the actors and stores); `open` applies pending migrations before returning.
///
/// It owns connections, each on a dedicated thread with a job queue: every blocking C call
/// (`sqlite3_step`, `PQexecParams`) runs there, never on Swift's cooperative pool. Callers
/// suspend on a continuation until their body has run.
///
/// - SQLite: WAL mode, one writer connection (writes are serialised, each in a
///   `BEGIN IMMEDIATE` transaction) and `readerCount` reader connections (each read in its
///   own snapshot, concurrent with the writer).
/// - PostgreSQL: a pool of `poolSize` connections, each on its own thread, driven by
///   libpq's blocking API. Why threads rather than libpq's non-blocking API on a libuv loop:
///   a statement holds its connection for its whole duration either way, so the pool size
///   bounds concurrency in both designs and a parked thread costs only its stack; the
///   blocking API keeps each statement one straight call (no hand-written state machine for
///   `PQsendQueryParams`/`PQconsumeInput`/`PQflush`, connection and reset polling), it is
///   the same shell as SQLite's (one pool, one state machine, one set of tests), and the
///   bodies of `read`/`write` stay synchronous code that can issue several statements in a
///   transaction without a hop per statement. The cost is a context switch per job; at the
///   pool sizes we run (tens) that is noise next to a network round trip to the server.
///   The pool's decisions live in `PoolStateMachine`, so moving to the non-blocking API
///   later replaces only the thread shell.
public final class Database: Sendable {
    private enum Backend: Sendable {
        case sqlite(writer: ConnectionPool<SQLiteConnection>, readers: ConnectionPool<SQLiteConnection>?,
                    checkpointer: WALCheckpointer?)
        case postgres(ConnectionPool<PostgresConnection>)
    }

    public let dialect: SQLDialect
    public let configuration: DatabaseConfiguration
    private let backend: Backend
    /// Commit, queue-wait and checkpoint histograms (the Prometheus page shows them).
    public let metrics: StoreMetrics
    /// Write transactions queued or running. Bounded: past `maxPendingWrites` a write fails
    /// at once with 429 (the caller's request is refused, nothing half-done), so an overload
    /// answers instead of growing a queue that delays every writer.
    private let pendingWrites = Atomic<Int>(0)
    public static let maxPendingWrites = 4096
    private let readsStarted = Atomic<Int>(0)
    /// `read` calls since the store opened (a relaxed counter): tests use it to show that a
    /// path answers from memory.
    public var readCount: Int { readsStarted.load(ordering: .relaxed) }

    private init(configuration: DatabaseConfiguration, backend: Backend, metrics: StoreMetrics) {
        self.configuration = configuration
        self.dialect = configuration.dialect
        self.backend = backend
        self.metrics = metrics
    }

    /// Opens the connections, applies the migrations not yet applied (by default the whole
    /// `Schema`; tests pass their own list, and an empty list skips migrating), and returns
    /// the ready store. Throws `DatabaseError` (`.connection`, `.migration`...).
    public static func open(_ configuration: DatabaseConfiguration,
                            migrations: [Migration] = Schema.migrations,
                            logger: Logger = Logger(label: "myelin.persistence")) async throws -> Database {
        let database = try await connect(configuration, migrations: migrations, logger: logger)
        switch configuration {
        case .sqlite(let path, let readerCount, let options):
            logger.info("database open", metadata: [
                "backend": "sqlite", "path": "\(path)", "readers": "\(readerCount)",
                "checkpoint_pages": "\(options.checkpointPages)", "synchronous": "\(options.synchronous.rawValue)"])
        case .postgres(_, let poolSize):
            logger.info("database open", metadata: ["backend": "postgres", "pool_size": "\(poolSize)"])
        }
        return database
    }

    private static func log(_ applied: [Migration], _ dialect: SQLDialect, _ logger: Logger) {
        for migration in applied {
            logger.info("applied schema migration", metadata: [
                "backend": "\(dialect)", "version": "\(migration.version)", "name": "\(migration.name)"])
        }
    }

    private static func connect(_ configuration: DatabaseConfiguration, migrations: [Migration],
                                logger: Logger) async throws -> Database {
        switch configuration {
        case .sqlite(let path, let readerCount, let options):
            let metrics = StoreMetrics(backend: "sqlite")
            // The checkpointer opens first (creating the file in WAL mode when it is new), so
            // that the writer's hook has it from the first commit on.
            let checkpointer: WALCheckpointer? = options.checkpointPages > 0
                ? try await WALCheckpointer.open(path: path, threshold: options.checkpointPages,
                                                 synchronous: options.synchronous, metrics: metrics)
                : nil
            let writer: ConnectionPool<SQLiteConnection>
            do {
                // After a reset the WAL file keeps its size up to this limit (bytes, 4 KiB
                // pages): a burst's WAL does not stay on disk for ever.
                let sizeLimit = options.checkpointPages > 0 ? options.checkpointPages * 4 * 4096 : -1
                writer = try await ConnectionPool<SQLiteConnection>.open(
                    name: "sqlite-writer", count: 1, maxWaiters: DatabaseConfiguration.maxWaiters,
                    connect: { _ in
                        let connection = try SQLiteConnection(
                            path: path, readOnly: false, synchronous: options.synchronous,
                            autocheckpoint: checkpointer == nil, journalSizeLimit: sizeLimit)
                        checkpointer?.installHook(on: connection)
                        return connection
                    },
                    close: { connection in
                        let hooked = connection.isOpen && checkpointer != nil
                        connection.close()
                        if hooked { checkpointer?.releaseHook() }
                    })
            } catch {
                await checkpointer?.close()
                throw error
            }
            do {
                log(try await writer.withConnection { connection in
                    try Migrator.apply(migrations, on: connection, begin: "BEGIN IMMEDIATE")
                }, .sqlite, logger)
            } catch {
                await writer.close()
                await checkpointer?.close()
                throw error
            }
            checkpointer?.setWriterQueue { job in
                Task {
                    // Fails only when the store is closing: nothing to bound then.
                    _ = try? await writer.withConnection { connection in job(connection) }
                }
            }
            // Readers open after the writer created the file and switched it to WAL.
            var readers: ConnectionPool<SQLiteConnection>? = nil
            if readerCount > 0 {
                do {
                    readers = try await ConnectionPool<SQLiteConnection>.open(
                        name: "sqlite-reader", count: readerCount, maxWaiters: DatabaseConfiguration.maxWaiters,
                        connect: { _ in try SQLiteConnection(path: path, readOnly: true) },
                        close: { $0.close() })
                } catch {
                    checkpointer?.setWriterQueue(nil)
                    await writer.close()
                    await checkpointer?.close()
                    throw error
                }
            }
            return Database(configuration: configuration,
                            backend: .sqlite(writer: writer, readers: readers, checkpointer: checkpointer),
                            metrics: metrics)

        case .postgres(let conninfo, let poolSize):
            guard poolSize > 0 else {
                throw DatabaseError(.connection, "the PostgreSQL pool needs at least one connection", backend: .postgres)
            }
            let pool = try await ConnectionPool<PostgresConnection>.open(
                name: "postgres", count: poolSize, maxWaiters: DatabaseConfiguration.maxWaiters,
                connect: { _ in try PostgresConnection(conninfo: conninfo) },
                close: { $0.close() })
            do {
                log(try await pool.withConnection { connection in
                    try Migrator.apply(migrations, on: connection, begin: "BEGIN")
                }, .postgres, logger)
            } catch {
                await pool.close()
                throw error
            }
            return Database(configuration: configuration, backend: .postgres(pool),
                            metrics: StoreMetrics(backend: "postgres"))
        }
    }

    /// Runs `body` on a reader connection and returns its result. On SQLite the body sees
    /// one consistent snapshot (a deferred read transaction); on PostgreSQL each statement
    /// runs in autocommit (no extra round trips), so a body needing a snapshot across
    /// statements should use `write`. Do not write in a read body.
    @discardableResult
    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        readsStarted.add(1, ordering: .relaxed)
        switch backend {
        case .sqlite(let writer, let readers, _):
            return try await (readers ?? writer).withConnection { connection in
                try connection.execute("BEGIN", [])
                defer { if connection.inTransaction { _ = try? connection.execute("ROLLBACK", []) } }
                return try body(connection)
            }
        case .postgres(let pool):
            return try await pool.withConnection { connection in
                try connection.ensureConnected()
                defer { if connection.inTransaction { _ = try? connection.executeScript("ROLLBACK") } }
                return try body(connection)
            }
        }
    }

    /// Runs `body` in one transaction on a writer connection: committed when the body
    /// returns, rolled back when it throws (the error is rethrown). On SQLite writes are
    /// serialised on the single writer; on PostgreSQL up to `poolSize` run concurrently
    /// (READ COMMITTED). A PostgreSQL statement error aborts the whole transaction even if
    /// the body catches it: the commit then fails with that error.
    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        if pendingWrites.add(1, ordering: .relaxed).newValue > Self.maxPendingWrites {
            pendingWrites.subtract(1, ordering: .relaxed)
            throw MatrixError(.limitExceeded, "The server is busy; try again shortly", extra: ["retry_after_ms": .int(1000)])
        }
        defer { pendingWrites.subtract(1, ordering: .relaxed) }
        let queued = ContinuousClock.now
        let metrics = self.metrics
        switch backend {
        case .sqlite(let writer, _, _):
            return try await writer.withConnection { connection in
                metrics.writeQueue.record(microseconds(since: queued))
                return try Self.transaction(connection, begin: "BEGIN IMMEDIATE", metrics: metrics, body)
            }
        case .postgres(let pool):
            return try await pool.withConnection { connection in
                metrics.writeQueue.record(microseconds(since: queued))
                try connection.ensureConnected()
                return try Self.transaction(connection, begin: "BEGIN", metrics: metrics, body)
            }
        }
    }

    /// One write transaction; a committed one is timed into `metrics` (BEGIN to COMMIT done,
    /// and the COMMIT statement alone).
    private static func transaction<C: TransactionalConnection, T>(
        _ connection: C, begin: String, metrics: StoreMetrics, _ body: (any SQLTransaction) throws -> T
    ) throws -> T {
        let started = ContinuousClock.now
        // `execute`, not `executeScript`: SQLite reuses the prepared statements.
        try connection.execute(begin, [])
        let result: T
        do {
            result = try body(connection)
            if let failure = connection.abortedTransactionError() { throw failure }
            let committing = ContinuousClock.now
            try connection.execute("COMMIT", [])
            metrics.commit.record(microseconds(since: committing))
            metrics.transaction.record(microseconds(since: started))
        } catch {
            if connection.inTransaction { _ = try? connection.execute("ROLLBACK", []) }
            throw error
        }
        return result
    }

    /// Stops accepting work, fails queued callers with `DatabaseError.Kind.closed`, lets
    /// running bodies finish, then closes every connection and stops its thread.
    /// Idempotent. Call before the process exits: on SQLite the checkpointer closes last,
    /// after a final TRUNCATE checkpoint, leaving the whole database in its main file.
    public func close() async {
        switch backend {
        case .sqlite(let writer, let readers, let checkpointer):
            checkpointer?.setWriterQueue(nil)
            await readers?.close()
            await writer.close()
            await checkpointer?.close()
        case .postgres(let pool):
            await pool.close()
        }
    }
}

/// What `Database.transaction` needs beyond `SQLTransaction`.
protocol TransactionalConnection: SQLTransaction {
    var inTransaction: Bool { get }
    /// On PostgreSQL, the error to raise when an earlier statement aborted the transaction
    /// (`COMMIT` would silently roll back); `nil` elsewhere.
    func abortedTransactionError() -> DatabaseError?
}

extension SQLiteConnection: TransactionalConnection {
    func abortedTransactionError() -> DatabaseError? { nil }
}

extension PostgresConnection: TransactionalConnection {}
