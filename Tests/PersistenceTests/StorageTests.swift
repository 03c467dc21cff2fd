#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Persistence

@Suite("Storage")
struct StorageTests {
    @Test(arguments: Backend.enabled)
    func valuesRoundTrip(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let rows: [[SQLValue]] = [
                [1, .int(Int64.max), 1.5, "plain", .blob([0, 1, 2, 255])],
                [2, .int(Int64.min), -0.25, "ünïcödé ✓ 🐝 'quoted' ? $1", .blob([])],
                [3, .null, .null, .null, .null],
                [4, 0, 1e300, "", .blob(Array(repeating: 0x5c, count: 1000))],
            ]
            try await database.write { db in
                try createScratchTable(db)
                for row in rows {
                    try db.execute("INSERT INTO scratch (id, i, d, t, b) VALUES (?, ?, ?, ?, ?)", row)
                }
            }
            let read = try await database.read { db in
                try db.query("SELECT id, i, d, t, b FROM scratch ORDER BY id").map(\.values)
            }
            #expect(read == rows)
            let named = try await database.read { db in
                try db.queryFirst("SELECT id, t AS label FROM scratch WHERE id = ?", 1)
            }
            #expect(try named?.text("label") == "plain")
            #expect(try named?.int("id") == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func typedAccessReportsMismatches(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let row = try await database.read { db in
                try db.queryFirst("SELECT 'text' AS t, NULL AS n")!
            }
            #expect(throws: DatabaseError.self) { try row.int(0) }
            #expect(throws: DatabaseError.self) { try row.text(1) }
            #expect(throws: DatabaseError.self) { try row.text("missing") }
            #expect(try row.optionalText(1) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func writeRollsBackWhenTheBodyThrows(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { try createScratchTable($0) }
            await #expect(throws: TestFailure.self) {
                try await database.write { db in
                    try db.execute("INSERT INTO scratch (id, t) VALUES (?, ?)", 1, "never")
                    throw TestFailure()
                }
            }
            let count = try await database.read { try $0.queryFirst("SELECT COUNT(*) FROM scratch")!.int(0) }
            #expect(count == 0)
            // The writer is usable afterwards.
            try await database.write { try $0.execute("INSERT INTO scratch (id, t) VALUES (?, ?)", 1, "kept") }
            #expect(try await database.read { try $0.queryFirst("SELECT t FROM scratch")!.text(0) } == "kept")
        }
    }

    @Test(arguments: Backend.enabled)
    func badSQLIsAnErrorNotACrash(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let syntax = await #expect(throws: DatabaseError.self) {
                try await database.read { try $0.query("SELEC nonsense FROM nowhere") }
            }
            #expect(syntax?.kind == .statement)
            #expect(syntax?.backend == backend.dialect)
            #expect(syntax?.sql == "SELEC nonsense FROM nowhere")

            let missing = await #expect(throws: DatabaseError.self) {
                try await database.write { try $0.execute("INSERT INTO no_such_table VALUES (?)", 1) }
            }
            #expect(missing?.kind == .statement)

            let arity = await #expect(throws: DatabaseError.self) {
                try await database.read { try $0.query("SELECT ? + ?", 1) }
            }
            #expect(arity != nil)

            try await database.tokens.insertAccessToken(AccessTokenRecord(tokenHash: "h", userID: "@a:t", deviceID: "D"))
            let duplicate = await #expect(throws: DatabaseError.self) {
                try await database.tokens.insertAccessToken(AccessTokenRecord(tokenHash: "h", userID: "@b:t", deviceID: "E"))
            }
            #expect(duplicate?.kind == .uniqueViolation)

            // Still healthy.
            #expect(try await database.read { try $0.queryFirst("SELECT 1 + 1")!.int(0) } == 2)
        }
    }

    @Test(arguments: Backend.enabled)
    func aStatementErrorCaughtInsideAWriteStillFailsTheWrite(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { try createScratchTable($0) }
            // On PostgreSQL the failed statement aborts the transaction; on SQLite only the
            // statement fails. Either way nothing half-done is reported as committed silently.
            let outcome: Result<Void, any Error> = await Result {
                try await database.write { db in
                    try db.execute("INSERT INTO scratch (id, t) VALUES (?, ?)", 1, "a")
                    _ = try? db.execute("INSERT INTO scratch (id, t) VALUES (?, ?)", 1, "duplicate")
                    try db.execute("INSERT INTO scratch (id, t) VALUES (?, ?)", 2, "b")
                }
            }
            let count = try await database.read { try $0.queryFirst("SELECT COUNT(*) FROM scratch")!.int(0) }
            switch backend {
            case .sqlite:
                #expect(throws: Never.self) { try outcome.get() }
                #expect(count == 2)
            case .postgres:
                #expect(throws: DatabaseError.self) { try outcome.get() }
                #expect(count == 0)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentWritersLoseNothing(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { db in
                try createScratchTable(db)
                try db.execute("INSERT INTO scratch (id, i) VALUES (-1, 0)")
            }
            let tasks = 50
            let inserts = 20
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<tasks {
                    group.addTask {
                        for insert in 0..<inserts {
                            let id = Int64(task * inserts + insert)
                            try await database.write { db in
                                try db.execute("INSERT INTO scratch (id, i) VALUES (?, ?)", .int(id), .int(Int64(task)))
                                // A shared counter: a lost update would show in its total.
                                try db.execute("UPDATE scratch SET i = i + 1 WHERE id = -1")
                            }
                        }
                    }
                    // Readers run alongside the writers.
                    if task % 10 == 0 {
                        group.addTask {
                            for _ in 0..<5 {
                                _ = try await database.read { try $0.queryFirst("SELECT COUNT(*) FROM scratch")!.int(0) }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let (rows, counter, distinct) = try await database.read { db in
                (try db.queryFirst("SELECT COUNT(*) FROM scratch WHERE id >= 0")!.int(0),
                 try db.queryFirst("SELECT i FROM scratch WHERE id = -1")!.int(0),
                 try db.queryFirst("SELECT COUNT(DISTINCT i) FROM scratch WHERE id >= 0")!.int(0))
            }
            #expect(rows == Int64(tasks * inserts))
            #expect(counter == Int64(tasks * inserts))
            #expect(distinct == Int64(tasks))
        }
    }

    @Test(arguments: Backend.enabled)
    func closedDatabaseRefusesWork(_ backend: Backend) async throws {
        try await withScratch(backend) { (configuration) async throws in
            let database = try await Database.open(configuration)
            await database.close()
            await database.close()
            let error = await #expect(throws: DatabaseError.self) {
                try await database.read { try $0.query("SELECT 1") }
            }
            #expect(error?.kind == .closed)
        }
    }

    @Test(arguments: Backend.enabled)
    func aWaitingCallerCanBeCancelled(_ backend: Backend) async throws {
        try await withDatabase(backend, connections: 1) { (database) async throws in
            let release = Shared(false)
            let started = Shared(false)
            // Occupies the only writer connection (SQLite) / pool connection (PostgreSQL).
            let blocker = Task {
                try await database.write { _ in
                    started.withLock { $0 = true }
                    while !release.value { sched_yield() }
                }
            }
            while !started.value { await Task.yield() }
            let waiter = Task { try await database.write { _ in 1 } }
            // Give the waiter time to queue; cancelling earlier is also correct (it fails fast).
            try await Task.sleep(for: .milliseconds(50))
            waiter.cancel()
            let result = await waiter.result
            #expect(throws: CancellationError.self) { try result.get() }
            release.withLock { $0 = true }
            try await blocker.value
            #expect(try await database.write { _ in 2 } == 2)
        }
    }

    @Test(arguments: Backend.enabled)
    func readsProceedWhileAWriteIsInProgress(_ backend: Backend) async throws {
        try await withDatabase(backend, connections: 2) { (database) async throws in
            try await database.write { db in
                try createScratchTable(db)
                try db.execute("INSERT INTO scratch (id, t) VALUES (1, 'committed')")
            }
            let release = Shared(false)
            let started = Shared(false)
            let writer = Task {
                try await database.write { db in
                    try db.execute("UPDATE scratch SET t = 'uncommitted' WHERE id = 1")
                    started.withLock { $0 = true }
                    while !release.value { sched_yield() }
                }
            }
            while !started.value { await Task.yield() }
            // Served by another connection while the write transaction is open, and sees
            // only committed data.
            let seen = try await database.read { try $0.queryFirst("SELECT t FROM scratch WHERE id = 1")!.text(0) }
            #expect(seen == "committed")
            release.withLock { $0 = true }
            try await writer.value
            #expect(try await database.read { try $0.queryFirst("SELECT t FROM scratch WHERE id = 1")!.text(0) }
                    == "uncommitted")
        }
    }

    @Test(arguments: Backend.enabled)
    func anUnreachableDatabaseIsAnError(_ backend: Backend) async throws {
        let configuration: DatabaseConfiguration = switch backend {
        case .sqlite: .sqlite(path: "/nonexistent-myelin-dir/sub/myelin.db", readerCount: 2)
        case .postgres: .postgres(conninfo: "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=5", poolSize: 2)
        }
        let error = await #expect(throws: DatabaseError.self) { try await Database.open(configuration) }
        #expect(error?.kind == .connection)
    }

    @Test func placeholdersBecomeNumberedOutsideLiterals() {
        #expect(PostgresConnection.translatePlaceholders("SELECT ?, ? FROM t WHERE a = ?")
                == "SELECT $1, $2 FROM t WHERE a = $3")
        #expect(PostgresConnection.translatePlaceholders("SELECT '?', \"a?\", ? -- ?\n, ? /* ? */ , 'it''s ?', ?")
                == "SELECT '?', \"a?\", $1 -- ?\n, $2 /* ? */ , 'it''s ?', $3")
        #expect(PostgresConnection.translatePlaceholders("SELECT 1") == "SELECT 1")
    }
}

extension Backend {
    var dialect: SQLDialect { self == .sqlite ? .sqlite : .postgres }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
