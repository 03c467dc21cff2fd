#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One versioned step of the schema, with its SQL for each dialect. `Schema.migrations`
/// is the ordered list; `Database.open` applies the ones not yet recorded in
/// `schema_migrations`, each in its own transaction, so re-opening is a no-op.
///
/// A migration is written once as `DDL` and rendered for each dialect; only a step whose
/// statements really differ between the dialects (a virtual table, a table rebuilt where
/// PostgreSQL alters in place) gives one text per dialect.
///
/// A migration, once released, never changes: later issues append new versions.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let sqlite: String
    public let postgres: String

    /// The same statements on both dialects.
    public init(version: Int, name: String, _ ddl: DDL) {
        self.init(version: version, name: name, sqlite: ddl, postgres: ddl)
    }

    /// Statements that differ between the dialects.
    public init(version: Int, name: String, sqlite: DDL, postgres: DDL) {
        self.version = version
        self.name = name
        self.sqlite = sqlite.render(for: .sqlite)
        self.postgres = postgres.render(for: .postgres)
    }

    public func sql(for dialect: SQLDialect) -> String {
        switch dialect {
        case .sqlite: return sqlite
        case .postgres: return postgres
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of every `*_ts` column (as Synapse).
public func currentTimeMillis() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

/// Applies migrations on one connection that is outside any transaction.
enum Migrator {
    /// Returns the migrations this call applied (none when another process or an earlier
    /// start-up already did).
    @discardableResult
    static func apply(_ migrations: [Migration], on connection: any SQLTransaction,
                      begin: String) throws -> [Migration] {
        guard !migrations.isEmpty else { return [] }
        let sorted = migrations.sorted { $0.version < $1.version }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.version == b.version {
            throw DatabaseError(.migration, "two migrations have version \(a.version)")
        }
        let dialect = connection.dialect
        if dialect == .postgres {
            // Several processes may open the same database at once: the first takes the lock
            // and migrates, the others wait, then find every version recorded.
            try connection.execute("SELECT pg_advisory_lock(hashtext('myelin.schema_migrations.' || coalesce(current_schema(), '')))")
        }
        if dialect == .sqlite {
            // Another opener may hold the write lock for the whole schema (one transaction,
            // below): wait for it rather than fail after the ordinary busy timeout.
            try connection.executeScript("PRAGMA busy_timeout = \(SQLiteConnection.migrationBusyTimeoutMilliseconds)")
        }
        defer {
            if dialect == .sqlite {
                _ = try? connection.executeScript("PRAGMA busy_timeout = \(SQLiteConnection.busyTimeoutMilliseconds)")
            }
            if dialect == .postgres {
                _ = try? connection.execute("SELECT pg_advisory_unlock(hashtext('myelin.schema_migrations.' || coalesce(current_schema(), '')))")
            }
        }
        // In a write transaction from the start: on SQLite, a deferred one that read the schema
        // before another opener created the table gets SQLITE_BUSY at once, without waiting.
        try connection.executeScript(begin)
        do {
            try connection.executeScript("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version \(DDL.Term.bigint.render(for: dialect)) PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    applied_ts \(DDL.Term.bigint.render(for: dialect)) NOT NULL
                )
                """)
            try connection.executeScript("COMMIT")
        } catch {
            _ = try? connection.executeScript("ROLLBACK")
            throw error
        }
        let known = sorted.last!.version
        if let newest = try connection.queryFirst("SELECT MAX(version) FROM schema_migrations")?.optionalInt(0),
           newest > known {
            throw DatabaseError(.migration,
                                "the database schema is at version \(newest), newer than this build knows (\(known))",
                                backend: dialect)
        }
        // SQLite applies every pending migration in one write transaction: several openers at
        // once then take the write lock once each, instead of once per migration, where a
        // loaded machine could starve one of them past the busy timeout. PostgreSQL, already
        // serialised by the advisory lock, commits migration by migration.
        let oneTransaction = dialect == .sqlite
        var applied: [Migration] = []
        if oneTransaction { try connection.executeScript(begin) }
        do {
            for migration in sorted {
                if !oneTransaction { try connection.executeScript(begin) }
                do {
                    // Checked inside the transaction: on SQLite `BEGIN IMMEDIATE` holds the write
                    // lock, so a second process racing us sees our row or waits.
                    let done = try connection.queryFirst(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", .int(Int64(migration.version))) != nil
                    if !done {
                        try connection.executeScript(migration.sql(for: dialect))
                        try connection.execute(
                            "INSERT INTO schema_migrations (version, name, applied_ts) VALUES (?, ?, ?)",
                            .int(Int64(migration.version)), .text(migration.name), .int(currentTimeMillis()))
                    }
                    if !oneTransaction { try connection.executeScript("COMMIT") }
                    if !done { applied.append(migration) }
                } catch {
                    if var error = error as? DatabaseError {
                        error.kind = .migration
                        error.message = "migration \(migration.version) (\(migration.name)): \(error.message)"
                        throw error
                    }
                    throw error
                }
            }
            if oneTransaction { try connection.executeScript("COMMIT") }
        } catch {
            _ = try? connection.executeScript("ROLLBACK")
            throw error
        }
        return applied
    }
}
