import Testing
@testable import Persistence

/// Above every real version, so that it is always the newest.
private let extra = Migration(
    version: 10_000, name: "test extra",
    sqlite: "CREATE TABLE test_extra (id INTEGER PRIMARY KEY NOT NULL)",
    postgres: "CREATE TABLE test_extra (id BIGINT PRIMARY KEY NOT NULL)")

private func appliedVersions(_ database: Database) async throws -> [Int64] {
    try await database.read { db in
        try db.query("SELECT version FROM schema_migrations ORDER BY version").map { try $0.int(0) }
    }
}

@Suite("Migrations")
struct MigrationTests {
    @Test(arguments: Backend.enabled)
    func fromEmptyCreatesEveryTable(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            #expect(try await appliedVersions(database) == Schema.migrations.map { Int64($0.version) })
            let counts = try await database.read { db in
                try ["users", "devices", "access_tokens"].map {
                    try db.queryFirst("SELECT COUNT(*) FROM \($0)")!.int(0)
                }
            }
            #expect(counts == [0, 0, 0])
        }
    }

    @Test(arguments: Backend.enabled)
    func reopeningIsIdempotentAndKeepsData(_ backend: Backend) async throws {
        try await withScratch(backend) { (configuration) async throws in
            let first = try await Database.open(configuration)
            try await first.accounts.createUser(UserRecord(userID: "@alice:test"))
            let appliedTs = try await first.read { try $0.queryFirst("SELECT applied_ts FROM schema_migrations")!.int(0) }
            await first.close()

            let second = try await Database.open(configuration)
            #expect(try await appliedVersions(second) == Schema.migrations.map { Int64($0.version) })
            let appliedAgain = try await second.read { try $0.queryFirst("SELECT applied_ts FROM schema_migrations")!.int(0) }
            #expect(appliedAgain == appliedTs)
            #expect(try await second.accounts.user(id: id("@alice:test")) != nil)
            await second.close()
        }
    }

    @Test(arguments: Backend.enabled)
    func laterMigrationAppliesOnReopen(_ backend: Backend) async throws {
        try await withScratch(backend) { (configuration) async throws in
            let first = try await Database.open(configuration, migrations: Schema.migrations)
            await first.close()
            let second = try await Database.open(configuration, migrations: Schema.migrations + [extra])
            #expect(try await appliedVersions(second) == Schema.migrations.map { Int64($0.version) } + [10_000])
            try await second.write { try $0.execute("INSERT INTO test_extra (id) VALUES (?)", 7) }
            await second.close()
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentOpensApplyEachMigrationOnce(_ backend: Backend) async throws {
        try await withScratch(backend) { (configuration) async throws in
            // Separate databases: on PostgreSQL separate sessions as from two processes,
            // serialised by the advisory lock; on SQLite separate writers, by BEGIN IMMEDIATE.
            let databases = try await withThrowingTaskGroup(of: Database.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await Database.open(configuration, migrations: Schema.migrations + [extra]) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for database in databases {
                #expect(try await appliedVersions(database) == Schema.migrations.map { Int64($0.version) } + [10_000])
                await database.close()
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func failingMigrationRollsBackAndReports(_ backend: Backend) async throws {
        let broken = Migration(
            version: 10_000, name: "broken",
            sqlite: "CREATE TABLE half_done (id INTEGER); CREATE TABLE oops (",
            postgres: "CREATE TABLE half_done (id BIGINT); CREATE TABLE oops (")
        try await withScratch(backend) { (configuration) async throws in
            let error = await #expect(throws: DatabaseError.self) {
                try await Database.open(configuration, migrations: Schema.migrations + [broken])
            }
            #expect(error?.kind == .migration)
            #expect(error?.message.contains("broken") == true)

            let database = try await Database.open(configuration)
            #expect(try await appliedVersions(database) == Schema.migrations.map { Int64($0.version) })
            await #expect(throws: DatabaseError.self) {
                try await database.read { try $0.query("SELECT * FROM half_done") }
            }
            await database.close()
        }
    }

    @Test(arguments: Backend.enabled)
    func schemaNewerThanTheBuildIsRefused(_ backend: Backend) async throws {
        try await withScratch(backend) { (configuration) async throws in
            let newer = try await Database.open(configuration, migrations: Schema.migrations + [extra])
            await newer.close()
            let error = await #expect(throws: DatabaseError.self) {
                try await Database.open(configuration, migrations: Schema.migrations)
            }
            #expect(error?.kind == .migration)
        }
    }
}
