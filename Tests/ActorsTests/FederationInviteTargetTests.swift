import Matrix
import Testing
@testable import Actors

/// Which servers a member event goes to besides the joined ones (`FederationDestinations.reachesTarget`).
@Suite("Member events and their target's server")
struct FederationInviteTargetTests {
    static func member(_ user: String, _ membership: String, replaces: String? = nil) throws -> (PersistedEvent, PDU) {
        let json: JSON = ["type": "m.room.member", "room_id": "!r:a.test", "sender": "@alice:a.test", "state_key": .string(user),
                          "content": ["membership": .string(membership)], "origin_server_ts": 1, "depth": 3,
                          "prev_events": [], "auth_events": []]
        let pdu = try PDU(json: json, roomVersion: try RoomVersion.named("10"))
        let event = PersistedEvent(eventID: pdu.eventID, streamOrdering: 5, depth: 3, type: "m.room.member", stateKey: user,
                                   bytes: json.encoded(), sender: "@alice:a.test", replacesState: replaces)
        return (event, pdu)
    }

    @Test("An invite to a server never in the room is not sent to it as a PDU (it gets /invite only)")
    func inviteToANewServer() throws {
        let b = try ServerName(parsing: "b.test")
        let (invite, pdu) = try Self.member("@bob:b.test", "invite")
        let state: AuthState = [StateKey("m.room.member", "@bob:b.test"): pdu]
        #expect(!FederationDestinations.reachesTarget(invite, server: b, joinedBefore: [], state: state))
        #expect(!FederationDestinations.reachesTarget(invite, server: b, joinedBefore: nil, state: state))
    }

    @Test("An invite goes to a server that was in the room: a user invited back, another member, a joined server")
    func inviteToAKnownServer() throws {
        let b = try ServerName(parsing: "b.test")
        let (back, pdu) = try Self.member("@bob:b.test", "invite", replaces: "$leave")
        #expect(FederationDestinations.reachesTarget(back, server: b, joinedBefore: [], state: [StateKey("m.room.member", "@bob:b.test"): pdu]))
        let (invite, _) = try Self.member("@bob:b.test", "invite")
        let (_, carol) = try Self.member("@carol:b.test", "leave")
        #expect(FederationDestinations.reachesTarget(invite, server: b, joinedBefore: [],
                                                     state: [StateKey("m.room.member", "@bob:b.test"): pdu,
                                                             StateKey("m.room.member", "@carol:b.test"): carol]))
        #expect(FederationDestinations.reachesTarget(invite, server: b, joinedBefore: [b], state: [:]))
    }

    @Test("A kick or ban reaches the target's server")
    func kickReachesTarget() throws {
        let b = try ServerName(parsing: "b.test")
        let (kick, _) = try Self.member("@bob:b.test", "leave")
        let (ban, _) = try Self.member("@bob:b.test", "ban")
        #expect(FederationDestinations.reachesTarget(kick, server: b, joinedBefore: [], state: [:]))
        #expect(FederationDestinations.reachesTarget(ban, server: b, joinedBefore: nil, state: [:]))
    }
}
