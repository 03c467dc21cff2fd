import CSQLite

/// One SQLite connection (`sqlite3*`) with its cache of prepared statements.
///
/// Created, used and closed on exactly one `ConnectionThread` (opened with
/// `SQLITE_OPEN_NOMUTEX`: SQLite does no locking of its own for it). `Database` opens one
/// writer and N readers on the same file in WAL mode.
final class SQLiteConnection: SQLTransaction {
    let dialect = SQLDialect.sqlite
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    private static let statementCacheLimit = 256

    /// How long a statement waits for another connection's write lock before `SQLITE_BUSY`.
    static let busyTimeoutMilliseconds: Int32 = 10_000
    /// The same while migrating: another opener (another process) may be applying the whole
    /// schema to a new file, which takes longer than one write on a loaded machine.
    static let migrationBusyTimeoutMilliseconds: Int32 = 300_000

    /// The read-write connection's page cache at most, in KiB.
    static let writerCacheKiB = 16_384

    /// `SQLITE_TRANSIENT`: SQLite copies bound text and blobs before `bind` returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// `synchronous` and `autocheckpoint` apply to read-write connections (`SQLiteOptions`):
    /// with `autocheckpoint` false, SQLite never checkpoints inside this connection's commits
    /// (the `WALCheckpointer` does it on its own connection).
    init(path: String, readOnly: Bool, synchronous: SQLiteOptions.Synchronous = .normal,
         autocheckpoint: Bool = true, journalSizeLimit: Int = -1) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE))
            | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw DatabaseError(.connection, "cannot open \(path): \(message)",
                                backend: .sqlite, code: String(rc))
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        // Another process (or `myelin` admin commands) may hold the write lock briefly.
        sqlite3_busy_timeout(db, Self.busyTimeoutMilliseconds)
        do {
            if !readOnly {
                let mode = try query("PRAGMA journal_mode = WAL", [])
                guard let first = mode.first, (try? first.text(0))?.lowercased() == "wal" else {
                    throw DatabaseError(.connection, "cannot switch \(path) to WAL mode", backend: .sqlite)
                }
                // In WAL mode, NORMAL loses no committed transaction on a process crash, only
                // possibly the ones since the last checkpoint on power loss; FULL syncs the WAL
                // at every commit (docs/architecture.md, "Durability").
                try executeScript("PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
                if !autocheckpoint { try executeScript("PRAGMA wal_autocheckpoint = 0") }
                // The WAL file keeps its largest size after a reset unless limited.
                try executeScript("PRAGMA journal_size_limit = \(journalSizeLimit)")
                // The writer's page cache (allocated as pages are read, so an idle server does
                // not hold it): a message's writes touch a page per recipient in the per-user
                // indexes, which SQLite's default 2 MiB no longer holds in a server of
                // thousands of users, and each miss is a read from the file.
                try executeScript("PRAGMA cache_size = -\(Self.writerCacheKiB)")
            }
            try executeScript("PRAGMA foreign_keys = ON")
        } catch {
            close()
            throw error
        }
    }

    func close() {
        for statement in statements.values { sqlite3_finalize(statement) }
        statements.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    deinit { close() }

    var isOpen: Bool { handle != nil }

    private func error(_ rc: Int32, _ sql: String?) -> DatabaseError {
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
        let kind: DatabaseError.Kind
        switch rc {
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY (macros Swift does not import).
        case SQLITE_CONSTRAINT | (8 << 8), SQLITE_CONSTRAINT | (6 << 8): kind = .uniqueViolation
        case _ where rc & 0xff == SQLITE_CONSTRAINT: kind = .constraintViolation
        case _ where rc & 0xff == SQLITE_CANTOPEN || rc & 0xff == SQLITE_IOERR: kind = .connection
        default: kind = .statement
        }
        return DatabaseError(kind, message, backend: .sqlite, code: String(rc), sql: sql)
    }

    private func prepare(_ sql: String) throws -> OpaquePointer {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .sqlite, sql: sql) }
        if let cached = statements[sql] { return cached }
        var statement: OpaquePointer?
        // The tail points into the C string, so it is read while that string is alive (a
        // String passed directly would be a temporary freed when the call returns).
        let (rc, hasMore): (Int32, Bool) = sql.withCString { text in
            var tail: UnsafePointer<CChar>?
            let rc = sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, &tail)
            let hasMore = tail.map { String(cString: $0).contains(where: { !$0.isWhitespace && $0 != ";" }) } ?? false
            return (rc, hasMore)
        }
        guard rc == SQLITE_OK, let statement else { throw error(rc, sql) }
        if hasMore {
            sqlite3_finalize(statement)
            throw DatabaseError(.statement, "more than one statement; use executeScript",
                                backend: .sqlite, sql: sql)
        }
        if statements.count >= Self.statementCacheLimit {
            for old in statements.values { sqlite3_finalize(old) }
            statements.removeAll()
        }
        statements[sql] = statement
        return statement
    }

    private func bind(_ statement: OpaquePointer, _ bindings: [SQLValue], _ sql: String) throws {
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard expected == bindings.count else {
            throw DatabaseError(.statement, "statement has \(expected) placeholders, \(bindings.count) values bound",
                                backend: .sqlite, sql: sql)
        }
        for (offset, value) in bindings.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .int(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .double(let v): rc = sqlite3_bind_double(statement, index, v)
            case .text(let v): rc = sqlite3_bind_text(statement, index, v, -1, Self.transient)
            case .blob(let v):
                rc = v.withUnsafeBytes { bytes in
                    // A zero-length blob must still bind as a blob, not NULL.
                    bytes.baseAddress == nil
                        ? sqlite3_bind_zeroblob(statement, index, 0)
                        : sqlite3_bind_blob(statement, index, bytes.baseAddress, Int32(bytes.count), Self.transient)
                }
            }
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }
    }

    /// Steps the statement to completion, collecting rows when `collect` is set.
    private func run(_ sql: String, _ bindings: [SQLValue], collect: Bool) throws -> [SQLRow] {
        let statement = try prepare(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        try bind(statement, bindings, sql)
        let count = Int(sqlite3_column_count(statement))
        var columns: [String] = []
        if collect {
            columns = (0..<count).map { String(cString: sqlite3_column_name(statement, Int32($0))) }
        }
        var rows: [SQLRow] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            guard collect else { continue }
            var values: [SQLValue] = []
            values.reserveCapacity(count)
            for column in 0..<Int32(count) {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: values.append(.int(sqlite3_column_int64(statement, column)))
                case SQLITE_FLOAT: values.append(.double(sqlite3_column_double(statement, column)))
                case SQLITE_TEXT:
                    let text = sqlite3_column_text(statement, column)
                    let length = Int(sqlite3_column_bytes(statement, column))
                    values.append(.text(text.map {
                        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
                    } ?? ""))
                case SQLITE_BLOB:
                    let blob = sqlite3_column_blob(statement, column)
                    let length = Int(sqlite3_column_bytes(statement, column))
                    values.append(.blob(blob.map {
                        Array(UnsafeRawBufferPointer(start: $0, count: length))
                    } ?? []))
                default: values.append(.null)
                }
            }
            rows.append(SQLRow(columns: columns, values: values))
        }
        return rows
    }

    func query(_ sql: String, _ bindings: [SQLValue]) throws -> [SQLRow] {
        try run(sql, bindings, collect: true)
    }

    @discardableResult
    func execute(_ sql: String, _ bindings: [SQLValue]) throws -> Int {
        _ = try run(sql, bindings, collect: false)
        return Int(sqlite3_changes64(handle))
    }

    func executeScript(_ sql: String) throws {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .sqlite, sql: sql) }
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(message)
            var error = self.error(rc, sql)
            error.message = text
            throw error
        }
    }

    /// Registers `callback` to run after each commit with the number of frames (pages) now in
    /// the WAL. Replaces SQLite's automatic checkpoint (which is itself such a hook).
    func setWALHook(context: UnsafeMutableRawPointer,
                    _ callback: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?,
                                                UnsafePointer<CChar>?, Int32) -> Int32) {
        guard let handle else { return }
        sqlite3_wal_hook(handle, callback, context)
    }

    /// Runs a checkpoint of the main database (`SQLITE_CHECKPOINT_PASSIVE`, `_RESTART`,
    /// `_TRUNCATE`); returns the frames in the WAL and the frames written back, as SQLite
    /// reports them (-1, -1 when the database is not in WAL mode), and whether SQLite answered
    /// `SQLITE_BUSY`: another connection was checkpointing, or (blocking modes) a reader or
    /// writer stayed busy past the busy timeout. That is not an error: the checkpoint did what
    /// it could.
    func checkpoint(mode: Int32) throws -> (log: Int, checkpointed: Int, busy: Bool) {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .sqlite) }
        var log: Int32 = -1, checkpointed: Int32 = -1
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, mode, &log, &checkpointed)
        guard rc == SQLITE_OK || rc & 0xff == SQLITE_BUSY else { throw error(rc, "checkpoint") }
        return (Int(log), Int(checkpointed), rc != SQLITE_OK)
    }

    /// Whether the connection is inside a transaction (for rollback after a failed COMMIT).
    var inTransaction: Bool {
        handle.map { sqlite3_get_autocommit($0) == 0 } ?? false
    }
}
