import Foundation
@_exported import StorageTestSupport
import Matrix
import Persistence
import Testing
@testable import Actors

extension Backend: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}

/// A migrated scratch database; `body` may open it several times through `configuration`.
func withScratchDatabase<T>(_ backend: Backend, _ body: (DatabaseConfiguration) async throws -> T) async throws -> T {
    try await withScratch(backend, body)
}

/// A `Rooms` over an open database, as the App would build it.
func makeRooms(_ database: Database, signingKey: SigningKey = testSigningKey, recent: Int = 16,
               maxResident: Int = 10_000, fanout: NotifierFanout? = nil,
               timelines: TimelineService = TimelineService()) async throws -> Rooms {
    let events = try await RoomContext.loadEventStream(database)
    let context = RoomContext(database: database, events: events, serverName: try ServerName(parsing: "example.org"),
                              signingKey: signingKey, recentEventsLimit: recent, timelines: timelines,
                              fanout: fanout)
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
