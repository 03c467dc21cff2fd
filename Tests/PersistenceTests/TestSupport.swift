import Foundation
import Synchronization
import Testing
@testable import Persistence

/// The storage backends a test runs on: SQLite always, PostgreSQL when
/// `MYELIN_TEST_POSTGRES` holds a conninfo (`scripts/with-postgres.sh` sets it).
enum Backend: String, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    static var postgresConninfo: String? {
        guard let value = ProcessInfo.processInfo.environment["MYELIN_TEST_POSTGRES"], !value.isEmpty else { return nil }
        return value
    }

    static var enabled: [Backend] { postgresConninfo == nil ? [.sqlite] : [.sqlite, .postgres] }

    var testDescription: String { rawValue }
}

/// Creates an empty place for a database (a temporary directory for SQLite, a fresh schema
/// for PostgreSQL), hands its configuration to `body`, and removes it afterwards.
func withScratch<T>(_ backend: Backend, connections: Int = 4,
                    _ body: (DatabaseConfiguration) async throws -> T) async throws -> T {
    switch backend {
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("myelin-persistence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await body(.sqlite(path: directory.appendingPathComponent("myelin.db").path,
                                      readerCount: connections))
    case .postgres:
        let base = try #require(Backend.postgresConninfo)
        let schema = "myelin_test_\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
        let admin = try await Database.open(.postgres(conninfo: base, poolSize: 1), migrations: [])
        try await admin.write { try $0.executeScript("CREATE SCHEMA \(schema)") }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(.postgres(conninfo: "\(base) options='-csearch_path=\(schema)'",
                                                       poolSize: connections)))
        } catch {
            result = .failure(error)
        }
        try? await admin.write { try $0.executeScript("DROP SCHEMA \(schema) CASCADE") }
        await admin.close()
        return try result.get()
    }
}

/// Opens a migrated database in a scratch place, runs `body`, closes it and cleans up.
func withDatabase<T>(_ backend: Backend, connections: Int = 4,
                     _ body: (Database) async throws -> T) async throws -> T {
    try await withScratch(backend, connections: connections) { configuration in
        let database = try await Database.open(configuration)
        do {
            let result = try await body(database)
            await database.close()
            return result
        } catch {
            await database.close()
            throw error
        }
    }
}

/// A table for tests that need rows of their own, in each dialect.
func createScratchTable(_ db: any SQLTransaction, _ name: String = "scratch") throws {
    let integer = db.dialect == .postgres ? "BIGINT" : "INTEGER"
    let real = db.dialect == .postgres ? "DOUBLE PRECISION" : "REAL"
    let blob = db.dialect == .postgres ? "BYTEA" : "BLOB"
    try db.executeScript("""
        CREATE TABLE \(name) (
            id \(integer) PRIMARY KEY NOT NULL,
            i \(integer),
            d \(real),
            t TEXT,
            b \(blob)
        )
        """)
}

struct TestFailure: Error, Equatable {}

/// A value shared between test tasks (escaping closures cannot capture a local `Mutex`).
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
