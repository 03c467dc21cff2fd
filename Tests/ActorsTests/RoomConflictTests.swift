import Matrix
import Persistence
import Testing
@testable import Actors

/// Remote events on a fork of the room's DAG (server-server API, "Checks performed on receipt
/// of a PDU", "Rejection", "Soft failure", "Room State Resolution"), driven through
/// `RoomActor.receive` with events a remote server would have built on its own view.
struct RoomConflictTests {
    let alice = testUser("alice")
    let bob = try! UserID(parsing: "@bob:remote.test")
    let mallory = try! UserID(parsing: "@mallory:remote.test")

    /// Builds a remote event on `state` citing `prev` (signatures are not checked by the actor).
    func remote(_ type: String, _ sender: UserID, _ stateKey: String? = nil, _ content: [String: JSON], on state: AuthState,
                prev: [EventID], depth: Int64, room: RoomID, version: RoomVersion, checked: Bool = true) throws -> PDU {
        let builder = EventBuilder(roomVersion: version, signingKey: testSigningKey, serverName: try ServerName(parsing: "remote.test"))
        if checked {
            return try builder.build(type: type, sender: sender, stateKey: stateKey, content: content, roomID: room,
                                     prevEvents: prev, depth: depth, originServerTS: 1_000 + depth, state: state)
        }
        // An event the auth rules refuse: built citing another member's join as the sender's.
        var lenient = state
        lenient[.member(sender.rawValue)] = state[.member(bob.rawValue)]
        return try builder.build(type: type, sender: sender, stateKey: stateKey, content: content, roomID: room,
                                 prevEvents: prev, depth: depth, originServerTS: 1_000 + depth, state: lenient)
    }

    func after(_ state: AuthState, _ pdu: PDU) -> AuthState {
        var s = state
        if let key = pdu.stateEntry { s[key] = pdu }
        return s
    }

    /// SyTest "An event which redacts an event in a different room should be ignored": a
    /// remote redaction naming another room's event is held aside, out of the timeline, and
    /// that event keeps its content.
    @Test(arguments: Backend.enabled)
    func aRemoteRedactionOfAnotherRoomsEventIsSoftFailed(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let version = RoomVersion.v10
            let (roomA, _) = try await rooms.createRoom(creator: alice, version: version, joinRule: "public")
            let target = try await rooms.send(message(alice, "keep me"), in: roomA)
            let (roomB, _) = try await rooms.createRoom(creator: alice, version: version, joinRule: "public")
            let actor = try await rooms.room(roomB)
            var state = try #require(await actor.currentState)
            var shape = try #require(await actor.snapshot)
            let join = try remote("m.room.member", bob, bob.rawValue, ["membership": "join"], on: state,
                                  prev: shape.extremities, depth: shape.nextDepth, room: roomB, version: version)
            #expect(try await actor.receive([join])[join.eventID] == .persisted)
            state = try #require(await actor.currentState)
            shape = try #require(await actor.snapshot)
            let builder = EventBuilder(roomVersion: version, signingKey: testSigningKey, serverName: try ServerName(parsing: "remote.test"))
            let redaction = try builder.build(type: "m.room.redaction", sender: bob, content: [:], roomID: roomB,
                                              prevEvents: shape.extremities, depth: shape.nextDepth, originServerTS: 2_000,
                                              state: state, redacts: target.eventID)
            guard case .softFailed = try await actor.receive([redaction])[redaction.eventID] else {
                Issue.record("a redaction of another room's event should be soft-failed"); return
            }
            #expect(!((await actor.recentEvents(after: 0) ?? []).map(\.eventID).contains(redaction.eventID)))
            let row = try #require(try await database.read { db in try RoomEventStore.event(db, eventID: target.eventID.rawValue) })
            #expect(try JSON.parse(row.clientJSON)["content"]?["body"]?.stringValue == "keep me")
        }
    }

    @Test(arguments: Backend.enabled)
    func softFailedAndRejectedEventsStayOutOfTheTimelineButKeepTheirPlaceInTheDAG(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let version = RoomVersion.v10
            let (roomID, _) = try await rooms.createRoom(creator: alice, version: version)
            _ = try await rooms.send(EventDraft(type: "m.room.join_rules", sender: alice, stateKey: "", content: ["join_rule": "public"]), in: roomID)
            let actor = try await rooms.room(roomID)
            func snapshot() async throws -> RoomSnapshot {
                guard let shape = await actor.snapshot else { throw MatrixError(.notFound, "the room vanished") }
                return shape
            }
            var state = try #require(await actor.currentState)
            var s0 = try await snapshot()

            // Bob of remote.test joins, then gets power 50 with the right to change power levels.
            let join = try remote("m.room.member", bob, bob.rawValue, ["membership": "join"], on: state,
                                  prev: s0.extremities, depth: s0.nextDepth, room: roomID, version: version)
            #expect(try await actor.receive([join])[join.eventID] == .persisted)
            _ = try await rooms.send(EventDraft(type: "m.room.power_levels", sender: alice, stateKey: "",
                                                content: ["users": [alice.rawValue: 100, bob.rawValue: 50],
                                                          "events": ["m.room.power_levels": 50]]), in: roomID)
            state = try #require(await actor.currentState)
            s0 = try await snapshot()

            // The fork: Alice demotes Bob here; Bob, not knowing, changes the power levels there.
            let demotion = try await rooms.send(EventDraft(type: "m.room.power_levels", sender: alice, stateKey: "",
                                                           content: ["users": [alice.rawValue: 100, bob.rawValue: 0],
                                                                     "events": ["m.room.power_levels": 50]]), in: roomID)
            let bobPL = try remote("m.room.power_levels", bob, "", ["users": [alice.rawValue: 100, bob.rawValue: 50],
                                                                    "events": ["m.room.power_levels": 50, "m.room.name": 50]],
                                   on: state, prev: s0.extremities, depth: s0.nextDepth, room: roomID, version: version)
            guard case .softFailed = try await actor.receive([bobPL])[bobPL.eventID] else {
                Issue.record("Bob's power levels should soft-fail against the current state"); return
            }
            #expect(try await snapshot().extremities == [demotion.eventID])
            #expect(await actor.currentState?[.powerLevels]?.eventID == demotion.eventID)
            // Known: received again it is a duplicate.
            #expect(try await actor.receive([bobPL])[bobPL.eventID] == .duplicate)

            // Bob's message citing his soft-failed event: its state is the state after it; the
            // message is allowed and accepted, and the room's state is the resolution of both
            // branches: Alice (100) outranks Bob (50), her demotion applies first, his change fails.
            let bobBranch = after(state, bobPL)
            let bobMessage = try remote("m.room.message", bob, nil, ["msgtype": "m.text", "body": "hi"], on: bobBranch,
                                     prev: [bobPL.eventID], depth: s0.nextDepth + 1, room: roomID, version: version)
            #expect(try await actor.receive([bobMessage])[bobMessage.eventID] == .persisted)
            #expect(Set(try await snapshot().extremities) == [demotion.eventID, bobMessage.eventID])
            #expect(await actor.currentState?[.powerLevels]?.eventID == demotion.eventID)

            // A local event now merges both extremities.
            let merge = try await rooms.send(message(alice, "merge"), in: roomID)
            let merged = try PDU(bytes: merge.bytes, roomVersion: version)
            #expect(Set(merged.prevEvents) == [demotion.eventID, bobMessage.eventID])
            #expect(try await snapshot().extremities == [merge.eventID])

            // Rejected: Mallory never joined. Stored as rejected, never state nor extremity;
            // a later event citing it starts from the state before it.
            let current = try #require(await actor.currentState)
            let intruder = try remote("m.room.message", mallory, nil, ["msgtype": "m.text", "body": "intruder"], on: current, prev: [merge.eventID],
                                      depth: merge.depth + 1, room: roomID, version: version, checked: false)
            guard case .rejected = try await actor.receive([intruder])[intruder.eventID] else {
                Issue.record("Mallory's topic should be rejected"); return
            }
            #expect(try await actor.receive([intruder])[intruder.eventID] == .duplicate)
            #expect(try await snapshot().extremities == [merge.eventID])
            let rejected = try await database.read { db in try EventStateStore.rejected(db, ids: [intruder.eventID.rawValue]) }
            #expect(rejected == [intruder.eventID.rawValue])
            let afterIntruder = try remote("m.room.message", bob, nil, ["msgtype": "m.text", "body": "still here"], on: current,
                                           prev: [intruder.eventID], depth: merge.depth + 2, room: roomID, version: version)
            #expect(try await actor.receive([afterIntruder])[afterIntruder.eventID] == .persisted)
            #expect(await actor.currentState?.mapValues(\.eventID) == current.mapValues(\.eventID))
            #expect(Set(try await snapshot().extremities) == [merge.eventID, afterIntruder.eventID])

            // The timeline holds neither the soft-failed nor the rejected event, also after reactivation.
            await rooms.registry.deactivateAll()
            let again = try await rooms.room(roomID)
            let ids = (await again.recentEvents(after: 0) ?? []).map(\.eventID)
            #expect(!ids.contains(bobPL.eventID) && !ids.contains(intruder.eventID))
            #expect(ids.contains(bobMessage.eventID) && ids.contains(afterIntruder.eventID))
            #expect(await again.currentState?[.powerLevels]?.eventID == demotion.eventID)
            #expect(Set(await again.forwardExtremities) == [merge.eventID, afterIntruder.eventID])

            // A prev event known only as an outlier has no state here: the caller supplies the
            // state before it (its /state_ids answer); without it the event cannot be checked.
            let shape = try #require(await again.snapshot)
            let known = try #require(await again.currentState)
            let fetched = try remote("m.room.message", bob, nil, ["msgtype": "m.text", "body": "fetched"], on: known,
                                     prev: shape.extremities, depth: shape.nextDepth, room: roomID, version: version)
            try await again.storeOutliers([fetched])
            let child = try remote("m.room.message", bob, nil, ["msgtype": "m.text", "body": "child"], on: known,
                                   prev: [fetched.eventID], depth: shape.nextDepth + 1, room: roomID, version: version)
            guard case .rejected = try await again.receive([child])[child.eventID] else {
                Issue.record("an event whose prev events have no state here cannot be checked"); return
            }
            let supplied = try await again.receive([child], statesAtPrevs: [fetched.eventID: known.mapValues(\.eventID)])
            #expect(supplied[child.eventID] == .persisted)
            // As Synapse: the outlier is not an extremity, so the child joins the others.
            #expect(Set(await again.forwardExtremities) == [merge.eventID, afterIntruder.eventID, child.eventID])
            // The outlier arriving for real is not taken for a duplicate.
            #expect(try await again.receive([fetched])[fetched.eventID] == .persisted)
            await rooms.registry.deactivateAll()
        }
    }
}
