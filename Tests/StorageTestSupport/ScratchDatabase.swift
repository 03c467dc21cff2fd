import Foundation
import Persistence

/// The storage backends a test runs on: SQLite always, PostgreSQL when
/// `MYELIN_TEST_POSTGRES` holds a conninfo (`scripts/with-postgres.sh` sets it).
/// Shared by the storage tests of Persistence and Actors.
public enum Backend: String, Sendable {
    case sqlite
    case postgres

    public static var postgresConninfo: String? {
        guard let value = ProcessInfo.processInfo.environment["MYELIN_TEST_POSTGRES"], !value.isEmpty else { return nil }
        return value
    }

    public static var enabled: [Backend] { postgresConninfo == nil ? [.sqlite] : [.sqlite, .postgres] }
}

public struct ScratchError: Error, CustomStringConvertible {
    public var description: String { "MYELIN_TEST_POSTGRES is not set" }
}

/// Creates an empty place for a database (a temporary directory for SQLite, a fresh schema
/// for PostgreSQL), hands its configuration to `body`, and removes it afterwards. `body` may
/// open it several times (re-activation, restart).
public func withScratch<T>(_ backend: Backend, connections: Int = 4,
                           _ body: (DatabaseConfiguration) async throws -> T) async throws -> T {
    switch backend {
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("myelin-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await body(.sqlite(path: directory.appendingPathComponent("myelin.db").path,
                                      readerCount: connections))
    case .postgres:
        return try await withPostgresSchema { conninfo in
            try await body(.postgres(conninfo: conninfo, poolSize: connections))
        }
    }
}

/// Creates a fresh schema in the PostgreSQL database of `MYELIN_TEST_POSTGRES`, hands `body`
/// a conninfo whose `search_path` is that schema (so that servers or stores opened with it do
/// not share ids with other tests), and drops the schema afterwards, whatever `body` did.
public func withPostgresSchema<T>(_ body: (String) async throws -> T) async throws -> T {
    guard let base = Backend.postgresConninfo else { throw ScratchError() }
    let schema = "myelin_test_\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
    let admin = try await Database.open(.postgres(conninfo: base, poolSize: 1), migrations: [])
    try await admin.write { try $0.executeScript("CREATE SCHEMA \(schema)") }
    let result: Result<T, any Error>
    do {
        result = .success(try await body("\(base) options='-csearch_path=\(schema)'"))
    } catch {
        result = .failure(error)
    }
    try? await admin.write { try $0.executeScript("DROP SCHEMA \(schema) CASCADE") }
    await admin.close()
    return try result.get()
}
