import Matrix
import Persistence
import Testing
@testable import Actors

struct SessionActorTests {
    static func key(_ user: Int, _ device: Int) -> SessionKey {
        SessionKey(user: testUser("s\(user)"), device: try! DeviceID(parsing: "D\(device)"))
    }

    /// 10 devices × 100 requests each produce one flush of 10 rows holding the newest
    /// sighting of each device.
    @Test(arguments: Backend.enabled)
    func lastSeenIsBatched(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let keys = (0..<10).map { Self.key($0, $0) }
            try await database.write { db in
                for key in keys {
                    try db.execute("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, 0)",
                                   .text(key.user.rawValue), .text(key.device.rawValue))
                }
            }
            let batcher = LastSeenBatcher(database: database)
            let registry = Registry<SessionKey, SessionActor>(limits: RegistryLimits(maxResident: 100, idleTimeout: .seconds(900))) { key in
                SessionActor(key: key, lastSeen: batcher)
            }
            await withThrowingTaskGroup(of: Void.self) { group in
                for key in keys {
                    group.addTask {
                        for request in 0..<100 {
                            // A new IP every 10 requests; the same one in between is coalesced.
                            try await registry.get(key).seen(at: Int64(1_000 + request), ip: "10.0.0.\(request / 10)",
                                                             userAgent: "test")
                        }
                    }
                }
            }
            #expect(batcher.pendingCount == 10)
            try await batcher.flush()
            #expect(batcher.rowsWritten == 10)
            #expect(batcher.pendingCount == 0)
            try await batcher.flush()
            #expect(batcher.rowsWritten == 10)
            let rows = try await database.read { db in
                try db.query("SELECT last_seen_ts, last_seen_ip, last_seen_user_agent FROM devices")
            }
            #expect(rows.count == 10)
            for row in rows {
                #expect(try row.int(0) == 1_090)
                #expect(try row.text(1) == "10.0.0.9")
                #expect(try row.text(2) == "test")
            }
            await registry.deactivateAll()
        }
    }

    @Test func lazyLoadingSendsEachMemberOnce() async throws {
        try await withStore(.sqlite) { database in
        let session = SessionActor(key: Self.key(1, 1), lastSeen: LastSeenBatcher(database: database))
        let room = try RoomID(parsing: "!r:example.org")
        let a = testUser("a"), b = testUser("b"), c = testUser("c")
        #expect(await session.membersToSend(in: room, among: [a, b]) == [a, b])
        #expect(await session.membersToSend(in: room, among: [b, c, c]) == [c])
        await session.forgetMembersSent(in: room)
        #expect(await session.membersToSend(in: room, among: [a]) == [a])
        await session.acknowledgeToDevice(upTo: 7)
        await session.acknowledgeToDevice(upTo: 3)
        #expect(await session.toDevicePosition == 7)
        }
    }
}
