import Foundation
@_exported import StorageTestSupport
import Synchronization
import Testing
@testable import Persistence

extension Backend: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
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
