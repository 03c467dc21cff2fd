import Matrix
import Persistence
import Synchronization
import Testing
@testable import Actors

/// A remote server in memory: answers transactions (200) or is unreachable, and keeps the
/// PDUs it accepted, deduplicated by event id as a real server would, plus every duplicate
/// it saw.
final class FakeRemote: FederationRequesting {
    struct State {
        var up = true
        var eventIDs: [String] = []
        var bodies: [String] = []
        var duplicates = 0
        var transactions = 0
        var failedAttempts = 0
        var edus: [JSON] = []
    }
    let state = Mutex(State())

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        try state.withLock { state in
            guard state.up else {
                state.failedAttempts += 1
                throw FederationRequestError(.unreachable, "down")
            }
            #expect(method == "PUT" && path.hasPrefix("/_matrix/federation/v1/send/"))
            #expect(body?["origin"]?.stringValue == "example.org")
            #expect((body?["pdus"]?.arrayValue?.count ?? 0) <= 50)
            state.transactions += 1
            for pdu in body?["pdus"]?.arrayValue ?? [] {
                let id = PDUIdentity.eventID(of: pdu)
                if state.eventIDs.contains(id) { state.duplicates += 1 } else {
                    state.eventIDs.append(id)
                    state.bodies.append(pdu["content"]?["body"]?.stringValue ?? "")
                }
            }
            state.edus += body?["edus"]?.arrayValue ?? []
            return FederationReply(status: 200, json: ["pdus": [:]])
        }
    }

    func setUp(_ up: Bool) { state.withLock { $0.up = up } }
    var snapshot: State { state.withLock { $0 } }
}

/// A PDU's identity for the fake remote: the canonical bytes stand in for the event id
/// (every test event differs by its content or prev events).
enum PDUIdentity {
    static func eventID(of pdu: JSON) -> String { pdu.encodedString }
}

struct FederationDestinationActorTests {
    static let remote = try! ServerName(parsing: "remote.test")

    func makeDestinations(_ database: Database, _ rooms: Rooms) -> FederationDestinations {
        FederationDestinations(database: database, events: rooms.context.events, localServer: rooms.context.serverName,
                               limits: .init(backoffInitial: .milliseconds(5), backoffMax: .milliseconds(20)),
                               registryLimits: RegistryLimits(maxResident: 10, idleTimeout: .seconds(600)))
    }

    /// A room of local alice that remote bob has joined (as the room would hold it after a
    /// federated join), its rooms wired to fresh destinations connected to `fake`.
    func roomWithRemoteMember(_ database: Database, _ fake: FakeRemote) async throws
        -> (rooms: Rooms, destinations: FederationDestinations, roomID: RoomID, alice: UserID, bob: UserID) {
        let base = try await makeRooms(database)
        let destinations = makeDestinations(database, base)
        destinations.connect(fake)
        var context = base.context
        context.federation = destinations
        let rooms = Rooms(context: context, limits: RegistryLimits(maxResident: 100, idleTimeout: .seconds(600)))
        let alice = testUser("alice")
        let bob = try UserID(parsing: "@bob:remote.test")
        let (roomID, _) = try await rooms.createRoom(creator: alice, joinRule: "public")
        _ = try await rooms.send(EventDraft(type: EventType.roomMember, sender: bob, stateKey: bob.rawValue,
                                            content: ["membership": "join"]), in: roomID)
        return (rooms, destinations, roomID, alice, bob)
    }

    /// Waits (bounded) until `condition` holds; the test then asserts on the state itself.
    func eventually(_ condition: () async -> Bool) async {
        for _ in 0..<500 where !(await condition()) { try? await Task.sleep(for: .milliseconds(10)) }
    }

    @Test(arguments: Backend.enabled)
    func anUnreachableRemoteGetsEveryMissingEventAfterARestartInOrderOnce(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let fake = FakeRemote()
            let made = try await roomWithRemoteMember(database, fake)
            let (rooms, roomID, alice, bob) = (made.rooms, made.roomID, made.alice, made.bob)
            var destinations = made.destinations
            let destination = try await destinations.registry.get(Self.remote)
            for index in 1...3 { _ = try await rooms.send(message(alice, "up \(index)"), in: roomID) }
            await eventually { fake.snapshot.bodies.count >= 3 }
            #expect(fake.snapshot.bodies == ["up 1", "up 2", "up 3"])

            fake.setUp(false)
            for index in 1...4 { _ = try await rooms.send(message(alice, "down \(index)"), in: roomID) }
            await eventually { fake.snapshot.failedAttempts >= 2 }
            #expect(await destination.failures >= 2)
            #expect(fake.snapshot.bodies.count == 3)
            // A remote message by bob is not ours to send.
            _ = try await rooms.send(message(bob, "from bob"), in: roomID)

            // "Restart": the destinations are dropped with their memory; a new set is built
            // over the same store, as after a process restart.
            await destinations.registry.deactivateAll()
            fake.setUp(true)
            destinations = makeDestinations(database, rooms)
            destinations.connect(fake)
            try await destinations.resumeAll()
            await eventually { fake.snapshot.bodies.count >= 7 }
            let seen = fake.snapshot
            #expect(seen.bodies == ["up 1", "up 2", "up 3", "down 1", "down 2", "down 3", "down 4"])
            #expect(seen.duplicates == 0)
            // The position is persisted right after the 200 the fake answered.
            let visible = rooms.context.events.visiblePosition
            await eventually { (try? await database.federationOutbox.position(of: Self.remote)) == visible }
            #expect(try await database.federationOutbox.position(of: Self.remote) == visible)
            await destinations.registry.deactivateAll()
        }
    }

    @Test(arguments: Backend.enabled)
    func aCatchUpSendsTheNewest50EventsOfARoomInOneTransaction(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let fake = FakeRemote()
            let (rooms, destinations, roomID, alice, _) = try await roomWithRemoteMember(database, fake)
            _ = try await destinations.registry.get(Self.remote)
            fake.setUp(false)
            for index in 1...60 { _ = try await rooms.send(message(alice, "m\(index)"), in: roomID) }
            // Two more failed attempts: the second one read the store after the last send.
            let failedBefore = fake.snapshot.failedAttempts
            await eventually { fake.snapshot.failedAttempts >= failedBefore + 2 }
            fake.setUp(true)
            await eventually { fake.snapshot.bodies.count >= 50 }
            let seen = fake.snapshot
            // At most 50 per room in a catch-up: the oldest ten are left to get_missing_events.
            #expect(seen.bodies == (11...60).map { "m\($0)" })
            #expect(seen.duplicates == 0)
            #expect(seen.transactions == 1)
            await destinations.registry.deactivateAll()
        }
    }

    /// An invite goes to a server outside the room by `PUT /invite`: no transaction carries
    /// it (a remote that does not know the room may never answer one). Events after the
    /// invitee joins do reach it.
    @Test(arguments: Backend.enabled)
    func anInviteIsNotSentInATransactionToTheInviteesServer(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let fake = FakeRemote()
            let base = try await makeRooms(database)
            let destinations = makeDestinations(database, base)
            destinations.connect(fake)
            var context = base.context
            context.federation = destinations
            let rooms = Rooms(context: context, limits: RegistryLimits(maxResident: 100, idleTimeout: .seconds(600)))
            let alice = testUser("alice")
            let carol = try UserID(parsing: "@carol:remote.test")
            let (roomID, _) = try await rooms.createRoom(creator: alice)
            _ = try await rooms.send(EventDraft(type: EventType.roomMember, sender: alice, stateKey: carol.rawValue,
                                                content: ["membership": "invite"]), in: roomID)
            _ = try await rooms.send(EventDraft(type: EventType.roomMember, sender: carol, stateKey: carol.rawValue,
                                                content: ["membership": "join"]), in: roomID)
            _ = try await rooms.send(message(alice, "hello"), in: roomID)
            await eventually { fake.snapshot.bodies.contains("hello") }
            // The invite has no body: sent, it would show as "" before "hello".
            #expect(fake.snapshot.bodies == ["hello"])
            await destinations.registry.deactivateAll()
        }
    }
}
