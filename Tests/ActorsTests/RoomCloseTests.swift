import Matrix
import Persistence
import Testing
@testable import Actors

/// `Rooms.close` (an admin deleting a room): sends racing the close either commit before it
/// returns or are refused; after it nothing is written to the room, and every later
/// activation of the room is empty.
struct RoomCloseTests {
    @Test(arguments: Backend.enabled)
    func closingARoomStopsEveryWriter(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let alice = testUser("alice")
            let (roomID, _) = try await rooms.createRoom(creator: alice)
            let room = roomID.rawValue
            func messages() async throws -> Int64 {
                try await database.read { db in
                    try db.queryFirst("SELECT COUNT(*) FROM events WHERE room_id = ? AND type = 'm.room.message'", .text(room))?.int(0) ?? 0
                }
            }
            let senders = (0..<40).map { n in
                Task { () -> Bool in (try? await rooms.send(message(alice, "m\(n)"), in: roomID)) != nil }
            }
            try await Task.sleep(for: .milliseconds(5))
            await rooms.close(roomID)
            let atClose = try await messages()
            var acknowledged = 0
            for sender in senders where await sender.value { acknowledged += 1 }
            // Every acknowledged send was committed before `close` returned; none after.
            #expect(Int64(acknowledged) == atClose)
            #expect(try await messages() == atClose)
            #expect(rooms.isClosed(roomID))
            let refused = await #expect(throws: MatrixError.self) { try await rooms.send(message(alice, "late"), in: roomID) }
            #expect(refused?.code == .notFound)
            #expect(try await rooms.room(roomID).snapshot == nil)
            #expect(try await messages() == atClose)
            await rooms.registry.deactivateAll()
        }
    }
}
