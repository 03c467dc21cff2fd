import Foundation
import Matrix
import Persistence
import Testing
@testable import Actors

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

/// A migrated scratch database (temporary SQLite file or fresh PostgreSQL schema); `body`
/// may open it several times (re-activation, restart) through `configuration`.
func withScratchDatabase<T>(_ backend: Backend, _ body: (DatabaseConfiguration) async throws -> T) async throws -> T {
    switch backend {
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myelin-actors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await body(.sqlite(path: directory.appendingPathComponent("myelin.db").path, readerCount: 4))
    case .postgres:
        let base = try #require(Backend.postgresConninfo)
        let schema = "myelin_actors_\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
        let admin = try await Database.open(.postgres(conninfo: base, poolSize: 1), migrations: [])
        try await admin.write { try $0.executeScript("CREATE SCHEMA \(schema)") }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(.postgres(conninfo: "\(base) options='-csearch_path=\(schema)'", poolSize: 4)))
        } catch {
            result = .failure(error)
        }
        try? await admin.write { try $0.executeScript("DROP SCHEMA \(schema) CASCADE") }
        await admin.close()
        return try result.get()
    }
}

/// A `Rooms` over an open database, as the App would build it.
func makeRooms(_ database: Database, signingKey: SigningKey = testSigningKey, recent: Int = 16,
               maxResident: Int = 10_000, publish: @escaping @Sendable (PublishedEvents) -> Void = { _ in }) async throws -> Rooms {
    let events = try await RoomContext.loadEventStream(database)
    let context = RoomContext(database: database, events: events, serverName: try ServerName(parsing: "example.org"),
                              signingKey: signingKey, recentEventsLimit: recent, publish: publish)
    return Rooms(context: context, limits: RegistryLimits(maxResident: maxResident, idleTimeout: .seconds(600)))
}

let testSigningKey = SigningKey.generate(version: "test")

func testUser(_ name: String) -> UserID { try! UserID(parsing: "@\(name):example.org") }

func message(_ sender: UserID, _ body: String) -> EventDraft {
    EventDraft(type: "m.room.message", sender: sender, content: ["msgtype": "m.text", "body": .string(body)])
}

/// A migrated scratch database, open for `body` and closed afterwards.
func withStore<T>(_ backend: Backend, _ body: (Database) async throws -> T) async throws -> T {
    try await withScratchDatabase(backend) { configuration in
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
