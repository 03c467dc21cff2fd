import Matrix
import Testing
@testable import Persistence

/// The destinations' persisted state on both backends: positions never move back, the
/// rooms a server has joined members in, local events after a position (newest per room),
/// and the to-device outbox (once per client transaction, deleted after delivery).
@Suite struct FederationOutboxStoreTests {
    @Test(arguments: Backend.enabled)
    func positionsRoomsEventsAndToDevice(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.federationOutbox
            let remote = try ServerName(parsing: "remote.test:8448"), local = try ServerName(parsing: "local.test")
            #expect(try await store.position(of: remote) == nil)
            try await store.setPosition(5, of: remote)
            try await store.setPosition(3, of: remote)  // never back
            #expect(try await store.position(of: remote) == 5)
            #expect(try await store.destinationsWithPosition(below: 6) == [remote])
            #expect(try await store.destinationsWithPosition(below: 5).isEmpty)

            try await database.write { db in
                for (index, (room, sender)) in [("!a:local.test", "@l:local.test"), ("!a:local.test", "@r:remote.test:8448"),
                                                ("!a:local.test", "@l:local.test"), ("!b:local.test", "@l:local.test"),
                                                ("!c:local.test", "@l:local.test")].enumerated() {
                    try db.execute("""
                        INSERT INTO events (stream_ordering, event_id, room_id, type, sender, depth, state_group, json)
                        VALUES (?, ?, ?, 'm.room.message', ?, 1, 1, ?)
                        """, .int(Int64(index + 1)), .text("$e\(index + 1)"), .text(room), .text(sender),
                        .blob(Array("{\"n\":\(index + 1)}".utf8)))
                }
                try MembershipStore.setMembership(db, .init(roomID: "!a:local.test", userID: "@r:remote.test:8448",
                                                            membership: "join", eventID: "$j", streamOrdering: 1))
                try MembershipStore.setMembership(db, .init(roomID: "!b:local.test", userID: "@r:remote.test:8448",
                                                            membership: "leave", eventID: "$k", streamOrdering: 1))
                // A server whose name ends like ours is not ours.
                try MembershipStore.setMembership(db, .init(roomID: "!c:local.test", userID: "@x:xremote.test:8448",
                                                            membership: "join", eventID: "$m", streamOrdering: 1))
            }
            let rooms = try await store.rooms(joinedBy: remote)
            #expect(rooms.map(\.rawValue) == ["!a:local.test"])
            let all = try await store.pendingEvents(in: rooms + [try RoomID(parsing: "!b:local.test")], after: 0, upTo: 5,
                                                    localServer: local, perRoom: 10, limit: 10)
            #expect(all.map(\.position) == [1, 3, 4])  // the remote's own event is not ours to send
            let newest = try await store.pendingEvents(in: rooms, after: 0, upTo: 5, localServer: local, perRoom: 1, limit: 10)
            #expect(newest.map(\.position) == [3])
            #expect(try await store.pendingEvents(in: rooms, after: 3, upTo: 5, localServer: local, perRoom: 10, limit: 10).isEmpty)

            let sender = try UserID(parsing: "@l:local.test")
            let edu: JSON = ["edu_type": "m.direct_to_device", "content": ["message_id": "1"]]
            #expect(try await store.queueToDevice(from: sender, device: "D", txnID: "t1", edus: [(remote, edu)]))
            #expect(try await !store.queueToDevice(from: sender, device: "D", txnID: "t1", edus: [(remote, edu)]))
            let queued = try await store.toDevice(for: remote, limit: 10)
            #expect(queued.map(\.edu) == [edu])
            #expect(try await store.destinationsWithToDevice() == [remote])
            try await store.deleteToDevice(queued.map(\.id))
            #expect(try await store.toDevice(for: remote, limit: 10).isEmpty)
        }
    }
}
