import Matrix
import Persistence
import Testing
import TestSupport
@testable import App

/// The room administration API over a running server (real sockets) on SQLite and, when the
/// environment provides one, PostgreSQL: listing and inspecting rooms, deleting (v1 and v2)
/// with purge and block, the new room for the kicked users, `shutdown_room`, history purges,
/// event reports and server notices.
@Suite("Admin rooms")
struct AdminRoomsTests {
    static let v1 = "/_synapse/admin/v1"
    static let v2 = "/_synapse/admin/v2"

    struct Fixture {
        let port: Int
        let server: MyelinServer
        let admin: MatrixTestClient
        let alice: MatrixTestClient
        let bob: MatrixTestClient
        var store: AdminRoomStore { server.app.database.adminRooms }
    }

    static func withFixture(_ backend: String, _ configure: @escaping (inout Configuration) -> Void = { _ in },
                            _ body: (Fixture) async throws -> Void) async throws {
        try await MediaTest.withServer(backend, {
            $0.registration.sharedSecret = "s3cret"
            configure(&$0)
        }) { server, port in
            let token = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            let admin = try MatrixTestClient(port: port, token: token)
            let alice = try await MatrixTestClient.registered(port: port, "alice").client
            let bob = try await MatrixTestClient.registered(port: port, "bob").client
            try await body(Fixture(port: port, server: server, admin: admin, alice: alice, bob: bob))
        }
    }

    static func p(_ text: String) -> String { HostileInputTests.path(text) }

    static func send(_ client: MatrixTestClient, _ room: String, _ body: String) async throws -> String {
        let reply = try await HostileInputTests.send(client, room, ["msgtype": "m.text", "body": .string(body)], txn: body)
        #expect(reply.status == 200, "\(reply.json)")
        return try #require(reply.json["event_id"]?.stringValue)
    }

    /// A public room of alice's that bob joined, with a few messages.
    static func sharedRoom(_ f: Fixture, name: String = "Alpha", alias: String? = nil) async throws -> String {
        var body: [String: JSON] = ["preset": "public_chat", "name": .string(name)]
        if let alias { body["room_alias_name"] = .string(alias) }
        let room = try await HostileInputTests.createRoom(f.alice, .object(body))
        #expect(try await f.bob.call("POST", "/join/\(p(room))").status == 200)
        return room
    }

    /// Polls until `condition` holds (at most ~20 s): background tasks finish when they finish.
    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<400 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    @Test(arguments: MediaTest.backends)
    func listDetailsMembersStateAndMessages(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let alpha = try await Self.sharedRoom(f, name: "Alpha", alias: "alpha")
            for n in 1...3 { _ = try await Self.send(f.alice, alpha, "m\(n)") }
            let beta = try await HostileInputTests.createRoom(f.alice, ["name": "Beta"])

            let all = try await f.admin.call("GET", "\(Self.v1)/rooms?order_by=name")
            #expect(all.status == 200, "\(all.json)")
            #expect(all.json["total_rooms"]?.intValue == 2)
            let rooms = all.json["rooms"]?.arrayValue ?? []
            #expect(rooms.compactMap { $0["room_id"]?.stringValue } == [alpha, beta])
            let first = try #require(rooms.first)
            #expect(first["name"]?.stringValue == "Alpha")
            #expect(first["canonical_alias"]?.stringValue == "#alpha:localhost")
            #expect(first["joined_members"]?.intValue == 2)
            #expect(first["joined_local_members"]?.intValue == 2)
            #expect(first["creator"]?.stringValue == "@alice:localhost")
            #expect(first["join_rules"]?.stringValue == "public")
            #expect(first["federatable"]?.boolValue == true)
            #expect((first["state_events"]?.intValue ?? 0) >= 6)
            #expect(first["version"]?.stringValue != nil)

            let page = try await f.admin.call("GET", "\(Self.v1)/rooms?order_by=joined_members&limit=1")
            #expect(page.json["rooms"]?.arrayValue?.first?["room_id"]?.stringValue == alpha)
            #expect(page.json["next_batch"]?.intValue == 1)
            let second = try await f.admin.call("GET", "\(Self.v1)/rooms?order_by=joined_members&limit=1&from=1")
            #expect(second.json["rooms"]?.arrayValue?.first?["room_id"]?.stringValue == beta)
            #expect(second.json["next_batch"] == nil)
            #expect(second.json["prev_batch"]?.intValue == 0)
            let reversed = try await f.admin.call("GET", "\(Self.v1)/rooms?order_by=name&dir=b")
            #expect(reversed.json["rooms"]?.arrayValue?.first?["room_id"]?.stringValue == beta)
            let publicRooms = try await f.admin.call("GET", "\(Self.v1)/rooms?public_rooms=true")
            #expect(publicRooms.json["total_rooms"]?.intValue == 0)  // created public_chat, but not listed
            #expect(try await f.alice.call("PUT", "/directory/list/room/\(Self.p(alpha))", ["visibility": "public"]).status == 200)
            let listed = try await f.admin.call("GET", "\(Self.v1)/rooms?public_rooms=true")
            #expect(listed.json["rooms"]?.arrayValue?.compactMap { $0["room_id"]?.stringValue } == [alpha])
            #expect(listed.json["rooms"]?.arrayValue?.first?["public"]?.boolValue == true)
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms?empty_rooms=true").json["total_rooms"]?.intValue == 0)
            let search = try await f.admin.call("GET", "\(Self.v1)/rooms?search_term=ALP")
            #expect(search.json["total_rooms"]?.intValue == 1)
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms?order_by=nonsense").status == 400)
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms?limit=-1").status == 400)
            #expect(try await f.alice.call("GET", "\(Self.v1)/rooms").status == 403)

            let details = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))")
            #expect(details.status == 200, "\(details.json)")
            #expect(details.json["name"]?.stringValue == "Alpha")
            #expect((details.json["joined_local_devices"]?.intValue ?? 0) >= 2)
            #expect(details.json["forgotten"]?.boolValue == false)
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p("!nope:localhost"))").status == 404)

            let members = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/members")
            #expect(members.json["members"]?.arrayValue?.compactMap(\.stringValue) == ["@alice:localhost", "@bob:localhost"])
            #expect(members.json["total"]?.intValue == 2)

            let state = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/state")
            let types = Set((state.json["state"]?.arrayValue ?? []).compactMap { $0["type"]?.stringValue })
            #expect(types.isSuperset(of: ["m.room.create", "m.room.member", "m.room.name", "m.room.power_levels"]))

            let extremities = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p("#alpha:localhost"))/forward_extremities")
            #expect(extremities.json["count"]?.intValue == 1, "\(extremities.json)")
            let newest = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages?dir=b&limit=1")
            #expect(extremities.json["results"]?.arrayValue?.first?["event_id"] == newest.json["chunk"]?.arrayValue?.first?["event_id"])

            let m2 = try #require((try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages?dir=b&limit=2"))
                .json["chunk"]?.arrayValue?.last?["event_id"]?.stringValue)
            let around = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/context/\(Self.p(m2))?limit=2")
            #expect(around.status == 200, "\(around.json)")
            #expect(around.json["event"]?["content"]?["body"]?.stringValue == "m2")
            #expect(around.json["events_before"]?.arrayValue?.first?["content"]?["body"]?.stringValue == "m1")
            #expect(around.json["events_after"]?.arrayValue?.first?["content"]?["body"]?.stringValue == "m3")
            #expect((around.json["state"]?.arrayValue ?? []).contains { $0["type"]?.stringValue == "m.room.create" })
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(beta))/context/\(Self.p(m2))").status == 404)
            let nearest = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/timestamp_to_event?ts=0&dir=f")
            #expect(nearest.status == 200, "\(nearest.json)")
            #expect(nearest.json["event_id"]?.stringValue != nil)

            // The admin is no member, and reads the history anyway.
            let messages = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages?dir=b&limit=2")
            #expect(messages.status == 200, "\(messages.json)")
            let bodies = (messages.json["chunk"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue }
            #expect(bodies == ["m3", "m2"])
            let end = try #require(messages.json["end"]?.stringValue)
            let older = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages?dir=b&limit=1&from=\(end)")
            #expect((older.json["chunk"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue } == ["m1"])
            let filtered = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages?dir=f&limit=50&filter="
                                                  + HostileInputTests.query(#"{"types":["m.room.name"]}"#))
            #expect((filtered.json["chunk"]?.arrayValue ?? []).map { $0["type"]?.stringValue } == ["m.room.name"])
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages?dir=x").status == 400)
            #expect(try await f.bob.call("GET", "\(Self.v1)/rooms/\(Self.p(alpha))/messages").status == 403)
        }
    }

    @Test(arguments: MediaTest.backends)
    func deleteV1PurgesBlocksAndMembersSeeTheLeave(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await Self.sharedRoom(f, alias: "doomed")
            let first = try await Self.send(f.alice, room, "hello")
            _ = try await f.bob.call("POST", "/rooms/\(Self.p(room))/receipt/m.read/\(Self.p(first))", .object([:]))
            // Bob has synced; his next sync must tell him he left.
            let since = try #require(try await f.bob.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            #expect(try await f.server.app.database.adminRooms.rows(in: "events", room: RoomID(parsing: room)) > 0)

            let deleted = try await f.admin.call("DELETE", "\(Self.v1)/rooms/\(Self.p(room))", ["block": true, "purge": true])
            #expect(deleted.status == 200, "\(deleted.json)")
            #expect(deleted.json["deleted"]?.boolValue == true)
            #expect(Set(deleted.json["kicked_users"]?.arrayValue?.compactMap(\.stringValue) ?? []) == ["@alice:localhost", "@bob:localhost"])
            #expect(deleted.json["failed_to_kick_users"]?.arrayValue?.isEmpty == true)
            #expect(deleted.json["local_aliases"]?.arrayValue?.compactMap(\.stringValue) == ["#doomed:localhost"])
            #expect(deleted.json["new_room_id"] == .null)

            let sync = try await f.bob.call("GET", "/sync?timeout=0&since=\(since)")
            let left = try #require(sync.json["rooms"]?["leave"]?[room], "\(sync.json)")
            let leave = left["timeline"]?["events"]?.arrayValue?.last
            #expect(leave?["content"]?["membership"]?.stringValue == "leave")
            #expect(leave?["state_key"]?.stringValue == "@bob:localhost")
            #expect(sync.json["rooms"]?["join"]?[room] == nil)

            // Gone from storage.
            let roomID = try RoomID(parsing: room)
            for table in ["events", "rooms", "state_groups", "room_aliases", "receipts", "room_forward_extremities", "event_txns"] {
                #expect(try await f.store.rows(in: table, room: roomID) == 0, "\(table)")
            }
            #expect(try await f.server.app.database.read { db in
                try db.queryFirst("SELECT COUNT(*) FROM room_memberships WHERE room_id = ? AND membership <> 'leave'", .text(room))?.int(0)
            } == 0)
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(room))").status == 404)
            // Blocked: no local user joins or is invited back; nothing is written to it.
            let join = try await f.alice.call("POST", "/join/\(Self.p(room))")
            #expect(join.status == 403, "\(join.json)")
            #expect(join.errcode == "M_FORBIDDEN")
            let sent = try await HostileInputTests.send(f.alice, room, ["msgtype": "m.text", "body": "late"], txn: "late")
            #expect(sent.status != 200)
            #expect(try await f.store.rows(in: "events", room: roomID) == 0)
            let blocked = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(room))/block")
            #expect(blocked.json["block"]?.boolValue == true)
            #expect(blocked.json["user_id"]?.stringValue == "@root:localhost")
            // The room list no longer has it; a second sync no longer mentions it.
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms").json["total_rooms"]?.intValue == 0)
            let next = try #require(sync.json["next_batch"]?.stringValue)
            let later = try await f.bob.call("GET", "/sync?timeout=0&since=\(next)")
            #expect(later.json["rooms"]?["leave"]?[room] == nil)
            #expect(try await f.alice.call("GET", "/joined_rooms").json["joined_rooms"]?.arrayValue?.isEmpty == true)
        }
    }

    @Test(arguments: MediaTest.backends)
    func aMemberLongPollingSyncSeesTheLeaveOfAPurgedRoom(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await Self.sharedRoom(f)
            _ = try await Self.send(f.alice, room, "hello")
            let since = try #require(try await f.bob.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            // Bob's client long-polls on its own connection while the admin deletes the room.
            let poller = try MatrixTestClient(port: f.port, token: f.bob.token)
            let watcher = Task { () throws -> Bool in
                var token = since
                for _ in 0..<20 {
                    let reply = try await poller.call("GET", "/sync?timeout=5000&since=\(token)")
                    let events = reply.json["rooms"]?["leave"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
                    if events.contains(where: { $0["state_key"]?.stringValue == "@bob:localhost"
                        && $0["content"]?["membership"]?.stringValue == "leave" }) { return true }
                    token = try #require(reply.json["next_batch"]?.stringValue)
                }
                return false
            }
            let deleted = try await f.admin.call("DELETE", "\(Self.v1)/rooms/\(Self.p(room))", .object([:]))
            #expect(deleted.status == 200, "\(deleted.json)")
            #expect(try await watcher.value)
            #expect(try await f.store.rows(in: "events", room: RoomID(parsing: room)) == 0)
            // Without `block`, the room is not blocked (and no longer exists to join).
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(room))/block").json["block"]?.boolValue == false)
        }
    }

    @Test(arguments: MediaTest.backends)
    func deleteV2MovesTheKickedUsersIntoANewRoom(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await Self.sharedRoom(f, alias: "moving")
            _ = try await Self.send(f.bob, room, "spam")
            let started = try await f.admin.call("DELETE", "\(Self.v2)/rooms/\(Self.p(room))", [
                "new_room_user_id": "@root:localhost", "room_name": "Moved away", "message": "This room was closed"])
            #expect(started.status == 200, "\(started.json)")
            let id = try #require(started.json["delete_id"]?.stringValue)
            var status = JSON.null
            #expect(try await Self.eventually {
                status = try await f.admin.call("GET", "\(Self.v2)/rooms/delete_status/\(id)").json
                return status["status"]?.stringValue == "complete"
            }, "\(status)")
            #expect(status["room_id"]?.stringValue == room)
            let result = try #require(status["shutdown_room"])
            #expect(Set(result["kicked_users"]?.arrayValue?.compactMap(\.stringValue) ?? []) == ["@alice:localhost", "@bob:localhost"])
            #expect(result["local_aliases"]?.arrayValue?.compactMap(\.stringValue) == ["#moving:localhost"])
            let newRoom = try #require(result["new_room_id"]?.stringValue)

            let byRoom = try await f.admin.call("GET", "\(Self.v2)/rooms/\(Self.p(room))/delete_status")
            #expect(byRoom.json["results"]?.arrayValue?.first?["delete_id"]?.stringValue == id)
            #expect(byRoom.json["results"]?.arrayValue?.first?["status"]?.stringValue == "complete")
            #expect(try await f.admin.call("GET", "\(Self.v2)/rooms/delete_status/nope").status == 404)
            // A deletion a previous run of the server left unfinished reads as failed.
            try await f.store.createTask(id: "interrupted", kind: "delete_room", room: RoomID(parsing: room), status: "active", ts: 1)
            let interrupted = try await f.admin.call("GET", "\(Self.v2)/rooms/delete_status/interrupted")
            #expect(interrupted.json["status"]?.stringValue == "failed")
            #expect(interrupted.json["error"]?.stringValue != nil)

            // Bob is in the new room, reads the message there, and the alias points to it.
            let joined = try await f.bob.call("GET", "/joined_rooms").json["joined_rooms"]?.arrayValue?.compactMap(\.stringValue)
            #expect(joined == [newRoom])
            let history = try await f.bob.call("GET", "/rooms/\(Self.p(newRoom))/messages?dir=b&limit=20")
            #expect((history.json["chunk"]?.arrayValue ?? []).contains { $0["content"]?["body"]?.stringValue == "This room was closed" })
            let name = try await f.bob.call("GET", "/rooms/\(Self.p(newRoom))/state/m.room.name")
            #expect(name.json["name"]?.stringValue == "Moved away")
            let alias = try await f.bob.call("GET", "/directory/room/\(Self.p("#moving:localhost"))")
            #expect(alias.json["room_id"]?.stringValue == newRoom)
            // The moved users may not speak there.
            #expect(try await HostileInputTests.send(f.bob, newRoom, ["msgtype": "m.text", "body": "x"], txn: "x").status == 403)
            #expect(try await f.store.rows(in: "events", room: RoomID(parsing: room)) == 0)
            // Not blocked: the room id could be used again (it no longer exists here).
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(room))/block").json["block"]?.boolValue == false)
        }
    }

    @Test(arguments: MediaTest.backends)
    func shutdownRoomKeepsHistoryAndBlocks(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await Self.sharedRoom(f)
            _ = try await Self.send(f.alice, room, "kept")
            let reply = try await f.admin.call("POST", "\(Self.v1)/shutdown_room", ["room_id": .string(room), "message": "closed"])
            #expect(reply.status == 200, "\(reply.json)")
            #expect(Set(reply.json["kicked_users"]?.arrayValue?.compactMap(\.stringValue) ?? []) == ["@alice:localhost", "@bob:localhost"])
            #expect(reply.json["new_room_id"] == .null)
            // Blocked, history kept.
            #expect(try await f.bob.call("POST", "/join/\(Self.p(room))").status == 403)
            #expect(try await f.store.rows(in: "events", room: RoomID(parsing: room)) > 0)
            let messages = try await f.admin.call("GET", "\(Self.v1)/rooms/\(Self.p(room))/messages?dir=b&limit=50")
            #expect((messages.json["chunk"]?.arrayValue ?? []).contains { $0["content"]?["body"]?.stringValue == "kept" })
            // Unblocked, a member can come back.
            let unblock = try await f.admin.call("PUT", "\(Self.v1)/rooms/\(Self.p(room))/block", ["block": false])
            #expect(unblock.json["block"]?.boolValue == false)
            #expect(try await f.bob.call("POST", "/join/\(Self.p(room))").status == 200)
            // Synapse's former path, on a room of bob's.
            let other = try await HostileInputTests.createRoom(f.bob, ["preset": "public_chat"])
            let legacy = try await f.admin.call("POST", "\(Self.v1)/shutdown_room/\(Self.p(other))", .object([:]))
            #expect(legacy.json["kicked_users"]?.arrayValue?.compactMap(\.stringValue) == ["@bob:localhost"])
            #expect(try await f.admin.call("POST", "\(Self.v1)/shutdown_room", .object([:])).status == 400)
            // Synapse's former `POST .../rooms/{roomId}/delete`: purges by default.
            let third = try await HostileInputTests.createRoom(f.bob, ["preset": "public_chat"])
            let viaPost = try await f.admin.call("POST", "\(Self.v1)/rooms/\(Self.p(third))/delete", .object([:]))
            #expect(viaPost.json["kicked_users"]?.arrayValue?.compactMap(\.stringValue) == ["@bob:localhost"])
            #expect(try await f.store.rows(in: "events", room: RoomID(parsing: third)) == 0)
            #expect(try await f.bob.call("POST", "\(Self.v1)/shutdown_room", ["room_id": .string(room)]).status == 403)
        }
    }

    @Test(arguments: MediaTest.backends)
    func purgeHistoryRemovesEventsBeforeThePoint(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await Self.sharedRoom(f)
            var ids: [String] = []
            for n in 1...5 { ids.append(try await Self.send(n % 2 == 0 ? f.bob : f.alice, room, "m\(n)")) }
            let db = f.server.app.database

            // Without delete_local_events, local users' events stay (every event here is local).
            let kept = try await f.admin.call("POST", "\(Self.v1)/purge_history", ["room_id": .string(room)])
            #expect(kept.status == 200, "\(kept.json)")
            let keptID = try #require(kept.json["purge_id"]?.stringValue)
            #expect(try await Self.eventually {
                try await f.admin.call("GET", "\(Self.v1)/purge_history_status/\(keptID)").json["status"]?.stringValue == "complete"
            })
            #expect(try await db.roomEvents.events(ids: ids).count == 5)

            let purge = try await f.admin.call("POST", "\(Self.v1)/purge_history/\(Self.p(room))/\(Self.p(ids[3]))",
                                               ["delete_local_events": true])
            #expect(purge.status == 200, "\(purge.json)")
            let purgeID = try #require(purge.json["purge_id"]?.stringValue)
            #expect(try await Self.eventually {
                try await f.admin.call("GET", "\(Self.v1)/purge_history_status/\(purgeID)").json["status"]?.stringValue == "complete"
            })
            // m1-m3 are gone from storage; m4, m5 and the room's state stay.
            let left = Set(try await db.roomEvents.events(ids: ids).map(\.eventID))
            #expect(left == [ids[3], ids[4]])
            let history = try await f.alice.call("GET", "/rooms/\(Self.p(room))/messages?dir=b&limit=50")
            let bodies = (history.json["chunk"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue }
            #expect(bodies == ["m5", "m4"])
            let types = Set((history.json["chunk"]?.arrayValue ?? []).compactMap { $0["type"]?.stringValue })
            #expect(types.contains("m.room.create"))
            // The room keeps working: state, sending, a new member.
            #expect(try await f.alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.name").json["name"]?.stringValue == "Alpha")
            let after = try await Self.send(f.alice, room, "after-purge")
            #expect(try await db.roomEvents.event(after) != nil)
            #expect(try await f.bob.call("POST", "/rooms/\(Self.p(room))/leave", .object([:])).status == 200)
            #expect(try await f.bob.call("POST", "/join/\(Self.p(room))").status == 200)

            #expect(try await f.admin.call("POST", "\(Self.v1)/purge_history/\(Self.p(room))", .object([:])).status == 400)
            #expect(try await f.admin.call("POST", "\(Self.v1)/purge_history/\(Self.p(room))/\(Self.p("$nope"))", .object([:])).status == 404)
            #expect(try await f.admin.call("GET", "\(Self.v1)/purge_history_status/nope").status == 404)
            #expect(try await f.alice.call("POST", "\(Self.v1)/purge_history", ["room_id": .string(room)]).status == 403)
        }
    }

    @Test func purgeHistoryKeepsLocalEventsOfAFederatedRoomUnlessAsked() async throws {
        try await withTwoServers { a, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            // An admin of A: registered, flagged in the store, then logged in afresh.
            _ = try await MatrixTestClient.registered(port: aPort, "root", password: "pw")
            try await a.app.database.write { db in
                try db.execute("UPDATE users SET is_admin = 1 WHERE user_id = ?", .text("@root:a.test"))
            }
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "root", "password": "pw"],
                                             token: .some(nil))
            let admin = try MatrixTestClient(port: aPort, token: try #require(login.json["access_token"]?.stringValue))

            let room = try await HostileInputTests.createRoom(alice, ["preset": "public_chat", "name": "Fed"])
            #expect(try await bob.call("POST", "/join/\(Self.p(room))?server_name=a.test", [:]).status == 200)
            var ids: [String: String] = [:]
            for (client, body) in [(alice, "l1"), (bob, "r1"), (alice, "l2"), (bob, "r2")] {
                ids[body] = try await Self.send(client, room, body)
            }
            #expect(try await syncUntil(alice) { timelineBodies($0, room).contains("r2") })
            let mark = try await Self.send(alice, room, "mark")
            let purge = try await admin.call("POST", "\(Self.v1)/purge_history/\(Self.p(room))", ["purge_up_to_event_id": .string(mark)])
            let purgeID = try #require(purge.json["purge_id"]?.stringValue, "\(purge.json)")
            #expect(try await Self.eventually {
                try await admin.call("GET", "\(Self.v1)/purge_history_status/\(purgeID)").json["status"]?.stringValue == "complete"
            })
            // B's events before the point are gone from A; A's own stay.
            let stored = Set(try await a.app.database.roomEvents.events(ids: Array(ids.values) + [mark]).map(\.eventID))
            #expect(stored == [ids["l1"]!, ids["l2"]!, mark])
            let history = try await alice.call("GET", "/rooms/\(Self.p(room))/messages?dir=b&limit=50&filter="
                                               + HostileInputTests.query(#"{"types":["m.room.message"]}"#))
            #expect((history.json["chunk"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue } == ["mark", "l2", "l1"])
            // Federation goes on: both sides still exchange messages.
            _ = try await Self.send(bob, room, "r3")
            #expect(try await syncUntil(alice) { timelineBodies($0, room).contains("r3") })
            _ = try await Self.send(alice, room, "l3")
            #expect(try await syncUntil(bob) { timelineBodies($0, room).contains("l3") })
        }
    }

    @Test(arguments: MediaTest.backends)
    func eventReportsListGetDelete(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await Self.sharedRoom(f)
            let bad = try await Self.send(f.alice, room, "offensive")
            let other = try await Self.send(f.alice, room, "other")
            #expect(try await f.bob.call("POST", "/rooms/\(Self.p(room))/report/\(Self.p(bad))", ["reason": "rude", "score": -100]).status == 200)
            #expect(try await f.bob.call("POST", "/rooms/\(Self.p(room))/report/\(Self.p(other))", ["reason": "also"]).status == 200)

            let list = try await f.admin.call("GET", "\(Self.v1)/event_reports")
            #expect(list.status == 200, "\(list.json)")
            #expect(list.json["total"]?.intValue == 2)
            let reports = list.json["event_reports"]?.arrayValue ?? []
            // Newest first.
            #expect(reports.compactMap { $0["event_id"]?.stringValue } == [other, bad])
            let report = try #require(reports.last)
            #expect(report["user_id"]?.stringValue == "@bob:localhost")
            #expect(report["sender"]?.stringValue == "@alice:localhost")
            #expect(report["reason"]?.stringValue == "rude")
            #expect(report["score"]?.intValue == -100)
            #expect(report["name"]?.stringValue == "Alpha")
            #expect(report["room_id"]?.stringValue == room)

            let paged = try await f.admin.call("GET", "\(Self.v1)/event_reports?limit=1&dir=f")
            #expect(paged.json["event_reports"]?.arrayValue?.first?["event_id"]?.stringValue == bad)
            #expect(paged.json["next_token"]?.intValue == 1)
            #expect(try await f.admin.call("GET", "\(Self.v1)/event_reports?user_id=@alice:localhost").json["total"]?.intValue == 0)
            #expect(try await f.admin.call("GET", "\(Self.v1)/event_reports?room_id=\(Self.p(room))").json["total"]?.intValue == 2)

            let id = try #require(report["id"]?.intValue)
            let one = try await f.admin.call("GET", "\(Self.v1)/event_reports/\(id)")
            #expect(one.json["event_json"]?["content"]?["body"]?.stringValue == "offensive")
            #expect(one.json["event_json"]?["event_id"] == nil || one.json["event_json"]?["event_id"]?.stringValue == bad)
            #expect(try await f.admin.call("DELETE", "\(Self.v1)/event_reports/\(id)").status == 200)
            #expect(try await f.admin.call("GET", "\(Self.v1)/event_reports/\(id)").status == 404)
            #expect(try await f.admin.call("DELETE", "\(Self.v1)/event_reports/\(id)").status == 404)
            #expect(try await f.admin.call("GET", "\(Self.v1)/event_reports/abc").status == 400)
            #expect(try await f.admin.call("GET", "\(Self.v1)/event_reports").json["total"]?.intValue == 1)
            #expect(try await f.bob.call("GET", "\(Self.v1)/event_reports").status == 403)
        }
    }

    @Test(arguments: MediaTest.backends)
    func serverNoticeReachesTheUsersSync(_ backend: String) async throws {
        try await Self.withFixture(backend, {
            $0.serverNotices.autoJoin = true
            $0.serverNotices.roomTopic = "Messages from the operators"
        }) { f in
            let notice: JSON = ["user_id": "@alice:localhost", "content": ["msgtype": "m.text", "body": "Maintenance at noon"]]
            let sent = try await f.admin.call("POST", "\(Self.v1)/send_server_notice", notice)
            #expect(sent.status == 200, "\(sent.json)")
            let eventID = try #require(sent.json["event_id"]?.stringValue)
            var noticeRoom: String?
            #expect(try await syncUntil(f.alice) { sync in
                for (room, value) in sync["rooms"]?["join"]?.objectValue ?? [:]
                    where timelineBodies(sync, room).contains("Maintenance at noon") {
                    noticeRoom = room
                    let tags = (value["account_data"]?["events"]?.arrayValue ?? []).first { $0["type"]?.stringValue == "m.tag" }
                    return tags?["content"]?["tags"]?["m.server_notice"] != nil
                }
                return false
            })
            let room = try #require(noticeRoom)
            let name = try await f.alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.name")
            #expect(name.json["name"]?.stringValue == "Server Notices")
            let topic = try await f.alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.topic")
            #expect(topic.json["topic"]?.stringValue == "Messages from the operators")
            let event = try await f.alice.call("GET", "/rooms/\(Self.p(room))/event/\(Self.p(eventID))")
            #expect(event.json["sender"]?.stringValue == "@notices:localhost")
            // The user cannot answer; the next notice goes to the same room; a transaction id
            // makes a notice idempotent.
            #expect(try await HostileInputTests.send(f.alice, room, ["msgtype": "m.text", "body": "hi"], txn: "a").status == 403)
            let again = try await f.admin.call("PUT", "\(Self.v1)/send_server_notice/t1", notice)
            let repeated = try await f.admin.call("PUT", "\(Self.v1)/send_server_notice/t1", notice)
            #expect(again.json["event_id"] != nil)
            #expect(again.json["event_id"] == repeated.json["event_id"])
            #expect(try await f.alice.call("GET", "/joined_rooms").json["joined_rooms"]?.arrayValue?.compactMap(\.stringValue) == [room])
            let secondEvent = try #require(again.json["event_id"]?.stringValue)
            #expect(try await f.server.app.database.roomEvents.event(secondEvent)?.roomID == room)

            #expect(try await f.admin.call("POST", "\(Self.v1)/send_server_notice",
                                           ["user_id": "@someone:elsewhere", "content": ["body": "x"]]).status == 400)
            #expect(try await f.admin.call("POST", "\(Self.v1)/send_server_notice",
                                           ["user_id": "@ghost:localhost", "content": ["body": "x"]]).status == 404)
            #expect(try await f.alice.call("POST", "\(Self.v1)/send_server_notice", notice).status == 403)
        }
    }

    @Test func serverNoticeInvitesWithoutAutoJoin() async throws {
        try await Self.withFixture("sqlite") { f in
            let sent = try await f.admin.call("POST", "\(Self.v1)/send_server_notice",
                                              ["user_id": "@bob:localhost", "content": ["msgtype": "m.text", "body": "Welcome"]])
            #expect(sent.status == 200, "\(sent.json)")
            var invited: String?
            #expect(try await syncUntil(f.bob) { sync in
                invited = sync["rooms"]?["invite"]?.objectValue?.keys.first
                return invited != nil
            })
            let room = try #require(invited)
            #expect(try await f.bob.call("POST", "/join/\(Self.p(room))").status == 200)
            let history = try await f.bob.call("GET", "/rooms/\(Self.p(room))/messages?dir=b&limit=20")
            #expect((history.json["chunk"]?.arrayValue ?? []).contains { $0["content"]?["body"]?.stringValue == "Welcome" })
        }
    }

    @Test(arguments: MediaTest.backends)
    func makeRoomAdminGivesPowerAndInvites(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let room = try await HostileInputTests.createRoom(f.alice, ["preset": "private_chat", "name": "Private"])
            let made = try await f.admin.call("POST", "\(Self.v1)/rooms/\(Self.p(room))/make_room_admin", .object([:]))
            #expect(made.status == 200, "\(made.json)")
            let power = try await f.alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.power_levels")
            #expect(power.json["users"]?["@root:localhost"]?.intValue == 100, "\(power.json)")
            // Invited (the room is not public), joins, and may now change the room.
            #expect(try await f.admin.call("POST", "/join/\(Self.p(room))").status == 200)
            #expect(try await f.admin.call("PUT", "/rooms/\(Self.p(room))/state/m.room.name", ["name": "Taken over"]).status == 200)
            // Another local user, by body.
            #expect(try await f.admin.call("POST", "\(Self.v1)/rooms/\(Self.p(room))/make_room_admin",
                                           ["user_id": "@bob:localhost"]).status == 200)
            let after = try await f.alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.power_levels")
            #expect(after.json["users"]?["@bob:localhost"]?.intValue == 100)
            #expect(try await f.bob.call("POST", "/join/\(Self.p(room))").status == 200)
            #expect(try await f.admin.call("POST", "\(Self.v1)/rooms/\(Self.p(room))/make_room_admin",
                                           ["user_id": "@x:elsewhere"]).status == 400)
            // Nobody local can grant power in a room everyone left.
            let empty = try await HostileInputTests.createRoom(f.bob, ["preset": "public_chat"])
            #expect(try await f.bob.call("POST", "/rooms/\(Self.p(empty))/leave", .object([:])).status == 200)
            #expect(try await f.admin.call("POST", "\(Self.v1)/rooms/\(Self.p(empty))/make_room_admin", .object([:])).status == 400)
        }
    }

    @Test func serverNoticesConfiguration() throws {
        let loaded = try ConfigurationLoader.load(yaml: """
            server_notices:
              system_mxid_localpart: ops
              system_mxid_display_name: Operators
              room_name: From the operators
              auto_join: true
              room_topic: Read me
            """)
        #expect(loaded.serverNotices.systemMXIDLocalpart == "ops")
        #expect(loaded.serverNotices.systemMXIDDisplayName == "Operators")
        #expect(loaded.serverNotices.roomName == "From the operators")
        #expect(loaded.serverNotices.autoJoin)
        #expect(loaded.serverNotices.roomTopic == "Read me")
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "server_notices:\n  system_mxid_localpart: \"Bad Name\"") }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "server_notices:\n  unknown_key: 1") }
        // The generated configuration file reads back as the defaults.
        #expect(try ConfigurationLoader.load(yaml: ConfigurationTemplate.render(serverName: "example.org")).serverNotices == Configuration.ServerNotices())
    }

    @Test func hostileParametersAreRefusedCleanly() async throws {
        try await Self.withFixture("sqlite") { f in
            let room = try await Self.sharedRoom(f)
            let r = Self.p(room)
            let refused: [(String, String, JSON?)] = [
                ("GET", "\(Self.v1)/rooms?from=-1", nil), ("GET", "\(Self.v1)/rooms?limit=abc", nil),
                ("GET", "\(Self.v1)/rooms?dir=sideways", nil), ("GET", "\(Self.v1)/rooms?search_term=", nil),
                ("GET", "\(Self.v1)/rooms?public_rooms=maybe", nil), ("GET", "\(Self.v1)/rooms/not-a-room", nil),
                ("GET", "\(Self.v1)/rooms/\(r)/messages?from=x", nil), ("GET", "\(Self.v1)/rooms/\(r)/messages?filter=%7B", nil),
                ("PUT", "\(Self.v1)/rooms/\(r)/block", ["block": "yes"]),
                ("DELETE", "\(Self.v1)/rooms/\(r)", ["purge": "x"]),
                ("DELETE", "\(Self.v1)/rooms/\(r)", ["new_room_user_id": "@someone:elsewhere"]),
                ("DELETE", "\(Self.v2)/rooms/\(r)", ["room_name": .string(String(repeating: "n", count: 300))]),
                ("POST", "\(Self.v1)/purge_history/\(r)", ["purge_up_to_ts": -1]),
                ("POST", "\(Self.v1)/purge_history/\(r)", ["purge_up_to_ts": 1e30]),
                ("POST", "\(Self.v1)/purge_history/\(r)", ["purge_up_to_ts": 1, "delete_local_events": "yes"]),
                ("POST", "\(Self.v1)/purge_history", ["room_id": 5]),
                ("DELETE", "\(Self.v1)/rooms/\(Self.p("!unknown:localhost"))", .object([:])),
                ("DELETE", "\(Self.v2)/rooms/\(Self.p("!unknown:localhost"))", .object([:])),
                ("GET", "\(Self.v1)/event_reports/99999999999999999999", nil), ("GET", "\(Self.v1)/event_reports?limit=-5", nil),
                ("GET", "\(Self.v1)/event_reports?dir=up", nil),
                ("POST", "\(Self.v1)/send_server_notice", ["user_id": "@alice:localhost", "content": "text"]),
                ("POST", "\(Self.v1)/send_server_notice", ["user_id": "not a user", "content": .object([:])]),
            ]
            for (method, path, body) in refused {
                let reply = try await f.admin.call(method, path, body)
                #expect(reply.status == 400, "\(method) \(path): \(reply.status) \(reply.json)")
                #expect(reply.errcode != nil, "\(method) \(path)")
            }
            // Far pages are empty, not errors; the room is untouched by all of the above.
            let far = try await f.admin.call("GET", "\(Self.v1)/rooms?from=99999999999999999999&limit=1000")
            #expect(far.status == 200)
            #expect(far.json["rooms"]?.arrayValue?.isEmpty == true)
            #expect(far.json["total_rooms"]?.intValue == 1)
            #expect(try await f.admin.call("GET", "\(Self.v1)/rooms/\(r)/members").json["total"]?.intValue == 2)
        }
    }

    @Test func everyRouteRefusesAnonymousAndNonAdmins() async throws {
        try await Self.withFixture("sqlite") { f in
            let room = Self.p("!r:localhost")
            let routes: [(String, String)] = [
                ("GET", "\(Self.v1)/rooms"), ("GET", "\(Self.v1)/rooms/\(room)"), ("GET", "\(Self.v1)/rooms/\(room)/members"),
                ("GET", "\(Self.v1)/rooms/\(room)/state"), ("GET", "\(Self.v1)/rooms/\(room)/messages"),
                ("GET", "\(Self.v1)/rooms/\(room)/block"), ("PUT", "\(Self.v1)/rooms/\(room)/block"),
                ("DELETE", "\(Self.v1)/rooms/\(room)"), ("DELETE", "\(Self.v2)/rooms/\(room)"),
                ("GET", "\(Self.v2)/rooms/\(room)/delete_status"), ("GET", "\(Self.v2)/rooms/delete_status/x"),
                ("POST", "\(Self.v1)/shutdown_room"), ("POST", "\(Self.v1)/shutdown_room/\(room)"),
                ("POST", "\(Self.v1)/purge_history"), ("POST", "\(Self.v1)/purge_history/\(room)"),
                ("POST", "\(Self.v1)/purge_history/\(room)/$e"), ("GET", "\(Self.v1)/purge_history_status/x"),
                ("GET", "\(Self.v1)/event_reports"), ("GET", "\(Self.v1)/event_reports/1"), ("DELETE", "\(Self.v1)/event_reports/1"),
                ("POST", "\(Self.v1)/send_server_notice"), ("PUT", "\(Self.v1)/send_server_notice/t"),
            ]
            for (method, path) in routes {
                let body: JSON? = method == "POST" || method == "PUT" ? .object([:]) : nil
                let anonymous = try await f.alice.call(method, path, body, token: .some(nil))
                #expect(anonymous.status == 401, "\(method) \(path)")
                let user = try await f.alice.call(method, path, body)
                #expect(user.status == 403, "\(method) \(path)")
                #expect(user.errcode == "M_FORBIDDEN", "\(method) \(path)")
            }
        }
    }
}
