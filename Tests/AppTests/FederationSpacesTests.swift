import Actors
import Matrix
import Persistence
import Testing
import TestSupport
@testable import App

/// Spaces, third-party invites and server ACLs over federation (issue 17, item 5), between
/// two in-process servers (`withTwoServers`).
@Suite("Spaces, ACLs and third-party invites over federation")
struct FederationSpacesTests {
    /// A signed request from B to A, as B's federation client would make it.
    static func fromB(_ b: MyelinServer, _ aPort: Int, _ method: String, _ path: String, _ body: JSON? = nil) async throws -> FederationReply {
        let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey, ports: [try ServerName(parsing: "a.test"): aPort])
        return try await link.request(try ServerName(parsing: "a.test"), method: method, path: path, body: body)
    }

    static func child(_ room: String, suggested: Bool = false) -> JSON {
        ["type": "m.space.child", "state_key": .string(room), "content": ["via": ["a.test"], "suggested": .bool(suggested)]]
    }

    @Test("A space of A lists to a user of B the children only A holds; suggested_only and join rules filter")
    func hierarchyThroughFederation() async throws {
        try await withTwoServers { _, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            func create(_ body: JSON) async throws -> String {
                try #require(try await alice.call("POST", "/createRoom", body).json["room_id"]?.stringValue)
            }
            let one = try await create(["preset": "public_chat", "name": "Child one"])
            let two = try await create(["preset": "public_chat", "name": "Child two"])
            let hidden = try await create(["preset": "private_chat", "name": "Hidden"])
            let space = try await create(["preset": "public_chat", "name": "Space", "creation_content": ["type": "m.space"],
                                          "initial_state": [Self.child(one, suggested: true), Self.child(two), Self.child(hidden)]])
            // Restricted to the space's members: visible to B once B has a member in the space.
            let members = try await create(["preset": "public_chat", "name": "Members only", "initial_state": [
                ["type": "m.room.join_rules", "state_key": "", "content": [
                    "join_rule": "restricted", "allow": [["type": "m.room_membership", "room_id": .string(space)]]]]]])
            let linked = try await alice.call("PUT", "/rooms/\(space)/state/m.space.child/\(members)", ["via": ["a.test"]])
            #expect(linked.status == 200)
            // Before joining: B is not in the space, so the whole walk comes from A.
            let path = "/_matrix/client/v1/rooms/\(FederationLink.segment(space))/hierarchy"
            let unjoined = try await bob.call("GET", path + "?via=a.test")
            #expect(Set((unjoined.json["rooms"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }) == ["Space", "Child one", "Child two"],
                    "\(unjoined.json)")
            let privateSpace = try await create(["preset": "private_chat", "creation_content": ["type": "m.space"]])
            #expect(try await bob.call("GET", "/_matrix/client/v1/rooms/\(FederationLink.segment(privateSpace))/hierarchy?via=a.test").status == 403)

            let joined = try await bob.call("POST", "/join/\(FederationLink.segment(space))?server_name=a.test", [:])
            #expect(joined.status == 200, "\(joined.json)")

            let all = try await bob.call("GET", path)
            #expect(all.status == 200, "\(all.json)")
            let rooms = all.json["rooms"]?.arrayValue ?? []
            let names = Set(rooms.compactMap { $0["name"]?.stringValue })
            #expect(names == ["Space", "Child one", "Child two", "Members only"], "\(all.json)")
            let root = rooms.first { $0["room_id"]?.stringValue == space }
            #expect(root?["children_state"]?.arrayValue?.count == 4)
            #expect(root?["room_type"]?.stringValue == "m.space")
            let suggested = try await bob.call("GET", path + "?suggested_only=true")
            #expect(Set((suggested.json["rooms"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }) == ["Space", "Child one"],
                    "\(suggested.json)")

            // The federation endpoint itself: the invite-only child is inaccessible to B.
            let answer = try await Self.fromB(b, aPort, "GET", "/_matrix/federation/v1/hierarchy/\(FederationLink.segment(space))")
            #expect(answer.status == 200)
            #expect(answer.json?["room"]?["room_id"]?.stringValue == space)
            #expect(Set((answer.json?["children"]?.arrayValue ?? []).compactMap { $0["room_id"]?.stringValue }) == [one, two, members])
            #expect(answer.json?["inaccessible_children"]?.arrayValue == [.string(hidden)])
            let refused = try await Self.fromB(b, aPort, "GET", "/_matrix/federation/v1/hierarchy/\(FederationLink.segment(hidden))")
            #expect(refused.status == 404 && refused.json?["errcode"]?.stringValue == "M_NOT_FOUND")

            // Previews of rooms B is not in (room summary, MSC3266) come from A's hierarchy.
            let summary = { (room: String) in
                try await bob.call("GET", "/_matrix/client/v1/room_summary/\(FederationLink.segment(room))?via=a.test")
            }
            let preview = try await summary(two)
            #expect(preview.status == 200 && preview.json["name"]?.stringValue == "Child two", "\(preview.json)")
            #expect(preview.json["join_rule"]?.stringValue == "public" && preview.json["num_joined_members"]?.intValue == 1)
            #expect(preview.json["children_state"] == nil)
            #expect(try await summary(hidden).status == 404)
        }
    }

    @Test("GET /publicRooms?server= lists the other server's public rooms for a user, and needs a token")
    func remotePublicRoomsNeedAToken() async throws {
        try await withTwoServers { _, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat", "visibility": "public",
                                                                                 "name": "Listed"]).json["room_id"]?.stringValue)
            let listed = try await bob.call("GET", "/publicRooms?server=a.test")
            #expect(listed.status == 200)
            #expect(listed.json["chunk"]?.arrayValue?.contains { $0["room_id"]?.stringValue == room && $0["name"]?.stringValue == "Listed" } == true,
                    "\(listed.json)")
            let anonymous = try await bob.call("GET", "/publicRooms?server=a.test", token: .some(nil))
            #expect(anonymous.status == 401 && anonymous.errcode == "M_MISSING_TOKEN", "\(anonymous.json)")
            // This server's own list stays open.
            #expect(try await bob.call("GET", "/publicRooms", token: .some(nil)).status == 200)
        }
    }

    @Test("exchange_third_party_invite and 3pid/onbind are refused with a Matrix error, not a 404")
    func thirdPartyInvitesRefused() async throws {
        try await withTwoServers { _, aPort, b, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let exchange = try await Self.fromB(b, aPort, "PUT",
                                                "/_matrix/federation/v1/exchange_third_party_invite/\(FederationLink.segment(room))",
                                                ["type": "m.room.member", "room_id": .string(room)])
            #expect(exchange.status == 403 && exchange.json?["errcode"]?.stringValue == "M_FORBIDDEN", "\(String(describing: exchange.json))")
            let onbind = try await Self.fromB(b, aPort, "PUT", "/_matrix/federation/v1/3pid/onbind", ["address": "a@b.c"])
            #expect(onbind.status == 403 && onbind.json?["errcode"]?.stringValue == "M_FORBIDDEN")
        }
    }

    @Test("A room whose server ACL denies B refuses B's make_join and hierarchy, and ignores B's typing")
    func serverACLDeniesRequestsAndEDUs() async throws {
        try await withTwoServers { a, aPort, b, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let open = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let closed = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat", "initial_state": [
                ["type": "m.room.server_acl", "state_key": "", "content": ["allow": ["*"], "deny": ["b.test"]]]]]).json["room_id"]?.stringValue)
            for room in [open, closed] {
                try await a.app.database.write { db in
                    try MembershipStore.setMembership(db, .init(roomID: room, userID: "@bob:b.test", membership: "join",
                                                                eventID: "$bobjoin" + room, streamOrdering: 1))
                }
            }
            let made = { (room: String) in
                try await Self.fromB(b, aPort, "GET",
                                     "/_matrix/federation/v1/make_join/\(FederationLink.segment(room))/\(FederationLink.segment("@carol:b.test"))?"
                                     + RoomVersion.all.map { "ver=\($0.id)" }.joined(separator: "&"))
            }
            let allowed = try await made(open), denied = try await made(closed)
            #expect(allowed.status == 200)
            #expect(denied.status == 403 && denied.json?["errcode"]?.stringValue == "M_FORBIDDEN")
            let hierarchy = try await Self.fromB(b, aPort, "GET", "/_matrix/federation/v1/hierarchy/\(FederationLink.segment(closed))")
            #expect(hierarchy.status == 403)

            let beta = try ServerName(parsing: "b.test")
            await a.app.receiveEDUs([open, closed].map { room in
                ["edu_type": "m.typing", "content": ["room_id": .string(room), "user_id": "@bob:b.test", "typing": true]]
            }, origin: beta)
            let sync = try await alice.call("GET", "/sync?timeout=0")
            func typers(_ room: String) -> [JSON] {
                (sync.json["rooms"]?["join"]?[room]?["ephemeral"]?["events"]?.arrayValue ?? [])
                    .first { $0["type"]?.stringValue == "m.typing" }?["content"]?["user_ids"]?.arrayValue ?? []
            }
            #expect(typers(open) == ["@bob:b.test"])
            #expect(typers(closed).isEmpty)
        }
    }
}
