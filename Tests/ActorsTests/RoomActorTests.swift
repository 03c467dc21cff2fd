import Matrix
import Persistence
import Synchronization
import Testing
@testable import Actors

struct RoomActorTests {
    @Test(arguments: Backend.enabled)
    func createsRoomsOfEveryVersion(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let alice = testUser("alice")
            for version in RoomVersion.all {
                let (roomID, created) = try await rooms.createRoom(creator: alice, version: version)
                #expect(created.count == 5, "version \(version)")
                #expect(roomID.isHashBased == version.hashBasedRoomIDs, "version \(version)")
                if version.hashBasedRoomIDs { #expect(roomID.createEventID == created[0].eventID) }
                let sent = try await rooms.send(message(alice, "hello"), in: roomID)
                #expect(sent.depth == 6)
                let snapshot = try #require(await rooms.room(roomID).snapshot)
                #expect(snapshot.roomVersion == version.id)
                #expect(snapshot.state.count == 5)
                #expect(snapshot.extremities == [sent.eventID])
                #expect(snapshot.nextDepth == 7)
                // The stored bytes are a PDU of the room with the right id.
                let pdu = try PDU(bytes: sent.bytes, roomVersion: version)
                #expect(pdu.eventID == sent.eventID)
                #expect(pdu.prevEvents == [created[4].eventID])
            }
            await rooms.registry.deactivateAll()
        }
    }

    /// Version 12 room ids are create-event hashes: rooms created at once by one user must
    /// still differ. Their members' clients are woken through the notifier fan-out.
    @Test func roomsCreatedTogetherGetDistinctIDsAndWakeMembers() async throws {
        try await withStore(.sqlite) { database in
            let fanout = NotifierFanout(limits: RegistryLimits(maxResident: 100, idleTimeout: .seconds(60)))
            let rooms = try await makeRooms(database, fanout: fanout)
            let alice = testUser("alice")
            let waiter = Task { await fanout.wait(alice, since: .zero, timeout: .seconds(600)) { .zero } }
            while fanout.resident(alice)?.waiterCount != 1 { await Task.yield() }
            let ids = try await withThrowingTaskGroup(of: RoomID.self) { group in
                for _ in 0..<50 { group.addTask { try await rooms.createRoom(creator: alice).0 } }
                var ids = Set<RoomID>()
                for try await id in group { ids.insert(id) }
                return ids
            }
            #expect(ids.count == 50)
            let woken = await waiter.value
            #expect((woken?[.roomEvents] ?? 0) > 0)
            await rooms.registry.deactivateAll()
        }
    }

    @Test(arguments: Backend.enabled)
    func rejectsWhatTheAuthRulesForbid(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let (roomID, _) = try await rooms.createRoom(creator: testUser("alice"))
            do {
                _ = try await rooms.send(message(testUser("mallory"), "hi"), in: roomID)
                Issue.record("a non-member could send")
            } catch let error as MatrixError {
                #expect(error.code == .forbidden)
            }
            let unknown = try RoomID(parsing: "!nowhere:example.org")
            await #expect(throws: MatrixError.self) { try await rooms.send(message(testUser("alice"), "x"), in: unknown) }
            // The room goes on.
            let sent = try await rooms.send(message(testUser("alice"), "still here"), in: roomID)
            #expect(sent.depth == 6)
            await rooms.registry.deactivateAll()
        }
    }

    /// 100 rooms × 100 concurrent senders: every acknowledged event is stored exactly once,
    /// each room's events form one chain (prev_events = the previous event, depth + 1) in
    /// stream order, and acknowledgements carry increasing positions in that order.
    @Test(arguments: Backend.enabled)
    func hundredRoomsHundredConcurrentSenders(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let alice = testUser("alice")
            var roomIDs: [RoomID] = []
            for _ in 0..<100 { roomIDs.append(try await rooms.createRoom(creator: alice, version: .recommendedDefault).0) }
            let acks = try await withThrowingTaskGroup(of: (RoomID, PersistedEvent).self) { group in
                for roomID in roomIDs {
                    for sender in 0..<100 {
                        group.addTask { (roomID, try await rooms.send(message(alice, "m\(sender)"), in: roomID)) }
                    }
                }
                var acks: [RoomID: [PersistedEvent]] = [:]
                for try await (roomID, event) in group { acks[roomID, default: []].append(event) }
                return acks
            }
            var allPositions = Set<Int64>()
            for roomID in roomIDs {
                let acked = try #require(acks[roomID]).sorted { $0.streamOrdering < $1.streamOrdering }
                #expect(acked.count == 100)
                #expect(Set(acked.map(\.eventID)).count == 100)
                let key = roomID.rawValue
                let stored = try await database.read { db in try RoomEventStore.events(db, roomID: key, after: 0, limit: 10_000) }
                #expect(stored.count == 105)
                // Acknowledged in stream order = depth order = the stored order.
                #expect(acked.map(\.eventID.rawValue) == stored.suffix(100).map(\.eventID))
                #expect(acked.map(\.depth) == Array(6...105))
                var previous: EventID?
                for row in stored {
                    let pdu = try PDU(bytes: row.json, roomVersion: .recommendedDefault)
                    #expect(pdu.eventID.rawValue == row.eventID)
                    if let previous { #expect(pdu.prevEvents == [previous]) }
                    previous = pdu.eventID
                    #expect(allPositions.insert(row.streamOrdering).inserted)
                }
                let snapshot = try #require(await rooms.room(roomID).snapshot)
                #expect(snapshot.extremities == [try #require(previous)])
            }
            // No gap a sync reader could see: the stream is visible up to the last position.
            #expect(rooms.context.events.visiblePosition == allPositions.max())
            await rooms.registry.deactivateAll()
        }
    }

    /// Deactivation loses nothing: a rebuilt room reports the same state, extremities and
    /// next depth, continues the chain, and historical states read back as they were.
    @Test(arguments: Backend.enabled)
    func reactivationRebuildsTheSameRoom(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database, recent: 8)
            let alice = testUser("alice")
            let (roomID, _) = try await rooms.createRoom(creator: alice, joinRule: "public")
            var statesAt: [(EventID, [StateKey: EventID])] = []
            // More state changes than the delta cap, so snapshots and deltas both occur.
            for i in 0..<(RoomActor.maxStateDeltaDepth * 2 + 5) {
                let user = testUser("u\(i)")
                let joined = try await rooms.send(EventDraft(type: "m.room.member", sender: user, stateKey: user.rawValue,
                                                             content: ["membership": "join"]), in: roomID)
                _ = try await rooms.send(message(user, "hi \(i)"), in: roomID)
                statesAt.append((joined.eventID, try #require(await rooms.room(roomID).snapshot).state))
            }
            let actor = try await rooms.room(roomID)
            let before = try #require(await actor.snapshot)
            let ringBefore = try #require(await actor.recentEvents(after: before.lastStreamOrdering - 5))
            #expect(await actor.recentEvents(after: 0) == nil)
            await rooms.registry.deactivateAll()
            await #expect(throws: RoomActorUnavailable.self) { try await actor.send(message(alice, "late")) }

            let again = try await rooms.room(roomID)
            #expect(again !== actor)
            let after = try #require(await again.snapshot)
            #expect(after == before)
            #expect(await again.recentEvents(after: before.lastStreamOrdering - 5) == ringBefore)
            let next = try await rooms.send(message(alice, "after"), in: roomID)
            #expect(next.depth == before.nextDepth)

            for (eventID, expected) in statesAt {
                let id = eventID.rawValue
                let entries = try await database.read { db -> [RoomEventStore.StateEntry] in
                    let row = try #require(try RoomEventStore.events(db, ids: [id]).first)
                    return try RoomEventStore.state(db, group: row.stateGroup)
                }
                var state: [StateKey: EventID] = [:]
                for entry in entries { state[StateKey(entry.type, entry.stateKey)] = try EventID(parsing: entry.eventID) }
                #expect(state == expected)
            }
            await rooms.registry.deactivateAll()
        }
    }
}
