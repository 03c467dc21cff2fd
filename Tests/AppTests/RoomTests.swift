import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

/// Rooms over real sockets: creation presets, membership, power levels, events, redaction,
/// history visibility and pagination.
@Suite("Rooms over real sockets")
struct RoomTests {
    static func path(_ room: String) -> String { room.addingPercentEncodingForPath }

    @Test func createRoomWithPresetsAliasAndInvites() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let created = try await alice.call("POST", "/createRoom", [
                "name": "Ops", "topic": "Incidents", "room_alias_name": "ops", "invite": ["@bob:localhost"],
                "is_direct": true, "initial_state": [["type": "m.room.encryption", "state_key": "",
                                                       "content": ["algorithm": "m.megolm.v1.aes-sha2"]]],
            ])
            #expect(created.status == 200)
            let room = try #require(created.json["room_id"]?.stringValue)
            let state = try await alice.call("GET", "/rooms/\(Self.path(room))/state")
            let events = try #require(state.json.arrayValue)
            func content(_ type: String, _ key: String = "") -> JSON? {
                events.first { $0["type"]?.stringValue == type && $0["state_key"]?.stringValue == key }?["content"]
            }
            #expect(content("m.room.join_rules")?["join_rule"] == "invite")
            #expect(content("m.room.history_visibility")?["history_visibility"] == "shared")
            #expect(content("m.room.guest_access")?["guest_access"] == "can_join")
            #expect(content("m.room.name")?["name"] == "Ops")
            #expect(content("m.room.topic")?["topic"] == "Incidents")
            #expect(content("m.room.canonical_alias")?["alias"] == "#ops:localhost")
            #expect(content("m.room.encryption")?["algorithm"] == "m.megolm.v1.aes-sha2")
            #expect(content("m.room.member", "@bob:localhost")?["membership"] == "invite")
            #expect(content("m.room.member", "@bob:localhost")?["is_direct"] == true)
            #expect(content("m.room.power_levels")?["events"]?["m.room.power_levels"] == 100)

            // The alias resolves and bob joins by it.
            let joined = try await bob.call("POST", "/join/%23ops:localhost", .object([:]))
            #expect(joined.json["room_id"]?.stringValue == room)
            #expect(try await bob.call("GET", "/joined_rooms").json["joined_rooms"] == [.string(room)])

            // A taken alias and an unknown room version are refused.
            let taken = try await alice.call("POST", "/createRoom", ["room_alias_name": "ops"])
            #expect(taken.status == 400)
            #expect(taken.errcode == "M_ROOM_IN_USE")
            let version = try await alice.call("POST", "/createRoom", ["room_version": "999"])
            #expect(version.status == 400)
            #expect(version.errcode == "M_UNSUPPORTED_ROOM_VERSION")

            // public_chat: anyone may join; private rooms refuse the uninvited.
            let open = try await alice.call("POST", "/createRoom", ["preset": "public_chat"])
            let openRoom = try #require(open.json["room_id"]?.stringValue)
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            #expect(try await carol.call("POST", "/rooms/\(Self.path(openRoom))/join", .object([:])).status == 200)
            let closed = try await alice.call("POST", "/createRoom", .object([:]))
            let closedRoom = try #require(closed.json["room_id"]?.stringValue)
            let refused = try await carol.call("POST", "/rooms/\(Self.path(closedRoom))/join", .object([:]))
            #expect(refused.status == 403)
            #expect(refused.errcode == "M_FORBIDDEN")
        }
    }

    @Test func membershipKickBanUnbanForgetAndMemberLists() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let joined = try await alice.call("GET", "/rooms/\(p)/joined_members")
            #expect(joined.json["joined"]?.objectValue?.keys.sorted() == ["@alice:localhost", "@bob:localhost"])
            // No profile set: no display_name or avatar_url (never null, the schema's fields are strings).
            #expect(joined.json["joined"]?["@bob:localhost"] == .object([:]))

            // Bob has no power to kick alice.
            let denied = try await bob.call("POST", "/rooms/\(p)/kick", ["user_id": "@alice:localhost"])
            #expect(denied.status == 403)
            #expect(try await alice.call("POST", "/rooms/\(p)/kick", ["user_id": "@bob:localhost", "reason": "bye"]).status == 200)
            let members = try await alice.call("GET", "/rooms/\(p)/members?membership=leave")
            #expect(members.json["chunk"]?.arrayValue?.count == 1)
            #expect(members.json["chunk"]?[0]?["content"]?["reason"] == "bye")
            let notLeave = try await alice.call("GET", "/rooms/\(p)/members?not_membership=leave")
            #expect(notLeave.json["chunk"]?.arrayValue?.count == 1)

            // Banned: cannot rejoin until unbanned.
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            #expect(try await alice.call("POST", "/rooms/\(p)/ban", ["user_id": "@bob:localhost"]).status == 200)
            let rejoin = try await bob.call("POST", "/rooms/\(p)/join", .object([:]))
            #expect(rejoin.status == 403)
            #expect(try await bob.call("GET", "/joined_rooms").json["joined_rooms"] == .array([]))
            #expect(try await alice.call("POST", "/rooms/\(p)/unban", ["user_id": "@bob:localhost"]).status == 200)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)

            // Leave, then forget; forgetting while joined is refused.
            #expect(try await bob.call("POST", "/rooms/\(p)/forget", .object([:])).status == 400)
            #expect(try await bob.call("POST", "/rooms/\(p)/leave", .object([:])).status == 200)
            #expect(try await bob.call("POST", "/rooms/\(p)/forget", .object([:])).status == 200)

            // Invite flow in a private room.
            let privateRoom = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            let pp = Self.path(privateRoom)
            #expect(try await bob.call("POST", "/rooms/\(pp)/invite", ["user_id": "@alice:localhost"]).status == 403)
            #expect(try await alice.call("POST", "/rooms/\(pp)/invite", ["user_id": "@bob:localhost"]).status == 200)
            #expect(try await bob.call("POST", "/rooms/\(pp)/join", .object([:])).status == 200)
        }
    }

    @Test func powerLevelsAreEnforcedOnSendsAndStateChanges() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", [
                "preset": "public_chat",
                "power_level_content_override": ["events_default": 10, "events": ["m.room.topic": 60]],
            ]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let send = try await bob.call("PUT", "/rooms/\(p)/send/m.room.message/t1", ["msgtype": "m.text", "body": "hi"])
            #expect(send.status == 403)
            #expect(send.errcode == "M_FORBIDDEN")
            let name = try await bob.call("PUT", "/rooms/\(p)/state/m.room.name", ["name": "mine"])
            #expect(name.status == 403)
            #expect(try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/t1", ["msgtype": "m.text", "body": "hi"]).status == 200)

            // Raise bob to 50: messages and the name pass, the topic (60) does not.
            let levels = try await alice.call("GET", "/rooms/\(p)/state/m.room.power_levels")
            var content = try #require(levels.json.objectValue)
            var users = content["users"]?.objectValue ?? [:]
            users["@bob:localhost"] = 50
            content["users"] = .object(users)
            #expect(try await alice.call("PUT", "/rooms/\(p)/state/m.room.power_levels", .object(content)).status == 200)
            #expect(try await bob.call("PUT", "/rooms/\(p)/send/m.room.message/t2", ["msgtype": "m.text", "body": "hi"]).status == 200)
            #expect(try await bob.call("PUT", "/rooms/\(p)/state/m.room.name", ["name": "mine"]).status == 200)
            #expect(try await bob.call("PUT", "/rooms/\(p)/state/m.room.topic", ["topic": "no"]).status == 403)
            let got = try await bob.call("GET", "/rooms/\(p)/state/m.room.name/")
            #expect(got.json["name"] == "mine")
            let asEvent = try await bob.call("GET", "/rooms/\(p)/state/m.room.name?format=event")
            #expect(asEvent.json["sender"] == "@bob:localhost")
            // Membership events only through the membership endpoints.
            #expect(try await alice.call("PUT", "/rooms/\(p)/state/m.room.member/@bob:localhost", ["membership": "leave"]).status == 403)
        }
    }

    @Test func sendsAreIdempotentPerTransactionAlsoAcrossARestart() async throws {
        let directory = makeTemporaryDirectory()
        var token = ""
        var room = ""
        var first = ""
        try await withMyelin({ $0.dataDirectory = directory }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            token = try #require(alice.token)
            room = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            let a = try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/txn1", ["msgtype": "m.text", "body": "once"])
            let b = try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/txn1", ["msgtype": "m.text", "body": "once"])
            first = try #require(a.json["event_id"]?.stringValue)
            #expect(b.json["event_id"]?.stringValue == first)
            let other = try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/txn2", ["msgtype": "m.text", "body": "two"])
            #expect(other.json["event_id"]?.stringValue != first)
        }
        try await withMyelin({ $0.dataDirectory = directory }) { port, _ in
            let alice = try MatrixTestClient(port: port, token: token)
            let again = try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/txn1", ["msgtype": "m.text", "body": "once"])
            #expect(again.json["event_id"]?.stringValue == first)
            let page = try await alice.call("GET", "/rooms/\(Self.path(room))/messages?dir=b&limit=50")
            let bodies = page.json["chunk"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } ?? []
            #expect(bodies.filter { $0 == "once" }.count == 1)
        }
    }

    @Test func redactionStripsContentOnEveryRead() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let sent = try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/m1", ["msgtype": "m.text", "body": "secret"])
            let eventID = try #require(sent.json["event_id"]?.stringValue)
            let e = eventID.addingPercentEncodingForPath
            // Bob may not redact alice's message; alice may.
            #expect(try await bob.call("PUT", "/rooms/\(p)/redact/\(e)/r1", ["reason": "no"]).status == 403)
            let redaction = try await alice.call("PUT", "/rooms/\(p)/redact/\(e)/r1", ["reason": "oops"])
            #expect(redaction.status == 200)
            let event = try await bob.call("GET", "/rooms/\(p)/event/\(e)")
            #expect(event.json["content"] == .object([:]))
            #expect(event.json["unsigned"]?["redacted_because"]?["content"]?["reason"] == "oops")
            let page = try await bob.call("GET", "/rooms/\(p)/messages?dir=b&limit=10")
            let original = page.json["chunk"]?.arrayValue?.first { $0["event_id"]?.stringValue == eventID }
            #expect(original?["content"] == .object([:]))
            let sync = try await bob.call("GET", "/sync")
            let timeline = sync.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
            #expect(timeline.first { $0["event_id"]?.stringValue == eventID }?["content"] == .object([:]))
        }
    }

    @Test func historyVisibilityIsEnforcedOnReads() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let (eve, _) = try await MatrixTestClient.registered(port: port, "eve")
            let room = try #require(try await alice.call("POST", "/createRoom", [
                "preset": "public_chat",
                "initial_state": [["type": "m.room.history_visibility", "content": ["history_visibility": "joined"]]],
            ]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            let before = try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/b1", ["msgtype": "m.text", "body": "before"])
            let beforeID = try #require(before.json["event_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            _ = try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/a1", ["msgtype": "m.text", "body": "after"])
            let page = try await bob.call("GET", "/rooms/\(p)/messages?dir=b&limit=50")
            let bodies = page.json["chunk"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } ?? []
            #expect(bodies == ["after"])
            #expect(try await bob.call("GET", "/rooms/\(p)/event/\(beforeID.addingPercentEncodingForPath)").status == 404)
            // A non-member cannot read at all.
            #expect(try await eve.call("GET", "/rooms/\(p)/messages?dir=b").status == 403)

            // world_readable: a non-member reads the history.
            #expect(try await alice.call("PUT", "/rooms/\(p)/state/m.room.history_visibility",
                                         ["history_visibility": "world_readable"]).status == 200)
            let open = try await eve.call("GET", "/rooms/\(p)/messages?dir=b&limit=50")
            #expect(open.status == 200)
            #expect((open.json["chunk"]?.arrayValue?.count ?? 0) > 0)
        }
    }

    @Test func messagesPaginateInExactOrderBothWays() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            let p = Self.path(room)
            for i in 0..<60 {
                _ = try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/p\(i)", ["msgtype": "m.text", "body": .string("m\(i)")])
            }
            var backwards: [String] = []
            var from: String? = nil
            while true {
                let query = "dir=b&limit=7" + (from.map { "&from=\($0)" } ?? "") + "&filter=%7B%22types%22:%5B%22m.room.message%22%5D%7D"
                let page = try await alice.call("GET", "/rooms/\(p)/messages?\(query)")
                #expect(page.status == 200)
                let chunk = page.json["chunk"]?.arrayValue ?? []
                backwards += chunk.compactMap { $0["content"]?["body"]?.stringValue }
                guard let end = page.json["end"]?.stringValue, !chunk.isEmpty else { break }
                from = end
            }
            #expect(backwards == (0..<60).reversed().map { "m\($0)" })
            // Forwards from the start, with a bound.
            var forwards: [String] = []
            from = "t0"
            while let token = from {
                let page = try await alice.call("GET", "/rooms/\(p)/messages?dir=f&limit=9&from=\(token)")
                let chunk = page.json["chunk"]?.arrayValue ?? []
                forwards += chunk.filter { $0["type"] == "m.room.message" }.compactMap { $0["content"]?["body"]?.stringValue }
                from = chunk.isEmpty ? nil : page.json["end"]?.stringValue
            }
            #expect(forwards == (0..<60).map { "m\($0)" })
            #expect(try await alice.call("GET", "/rooms/\(p)/messages?dir=x").status == 400)
            // Context around an event.
            let middle = try await alice.call("GET", "/rooms/\(p)/messages?dir=b&limit=30")
            let eventID = try #require(middle.json["chunk"]?[29]?["event_id"]?.stringValue)
            let context = try await alice.call("GET", "/rooms/\(p)/context/\(eventID.addingPercentEncodingForPath)?limit=4")
            #expect(context.json["event"]?["content"]?["body"] == "m30")
            #expect(context.json["events_before"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } == ["m29", "m28"])
            #expect(context.json["events_after"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } == ["m31", "m32"])
        }
    }

    @Test func aliasesDirectoryPublicRoomsAndReports() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", [
                "preset": "public_chat", "visibility": "public", "name": "Lobby", "topic": "Say hello",
            ]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await alice.call("PUT", "/directory/room/%23lobby:localhost", ["room_id": .string(room)]).status == 200)
            // Only members name a room; a taken alias is 409.
            #expect(try await bob.call("PUT", "/directory/room/%23other:localhost", ["room_id": .string(room)]).status == 403)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let taken = try await bob.call("PUT", "/directory/room/%23lobby:localhost", ["room_id": .string(room)])
            #expect(taken.status == 409)
            let resolved = try await bob.call("GET", "/directory/room/%23lobby:localhost")
            #expect(resolved.json["room_id"]?.stringValue == room)
            #expect(try await alice.call("GET", "/rooms/\(p)/aliases").json["aliases"] == ["#lobby:localhost"])
            // Only the creator or a room admin deletes an alias.
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            #expect(try await bob.call("DELETE", "/directory/room/%23lobby:localhost").status == 403)
            // A canonical alias must point at the room.
            let bad = try await alice.call("PUT", "/rooms/\(p)/state/m.room.canonical_alias", ["alias": "#nope:localhost"])
            #expect(bad.errcode == "M_BAD_ALIAS")
            #expect(try await alice.call("PUT", "/rooms/\(p)/state/m.room.canonical_alias", ["alias": "#lobby:localhost"]).status == 200)

            // The directory: readable without a token, searchable, paginated.
            let other = try #require(try await bob.call("POST", "/createRoom", ["preset": "public_chat", "name": "Quiet"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("GET", "/directory/list/room/\(Self.path(other))").json["visibility"] == "private")
            #expect(try await alice.call("PUT", "/directory/list/room/\(Self.path(other))", ["visibility": "public"]).status == 403)
            #expect(try await bob.call("PUT", "/directory/list/room/\(Self.path(other))", ["visibility": "public"]).status == 200)
            let anonymous = try MatrixTestClient(port: port)
            let listing = try await anonymous.call("GET", "/publicRooms")
            #expect(listing.status == 200)
            let chunk = listing.json["chunk"]?.arrayValue ?? []
            #expect(chunk.count == 2)
            #expect(chunk.first?["room_id"]?.stringValue == room)  // two members: first
            #expect(chunk.first?["name"] == "Lobby")
            #expect(chunk.first?["canonical_alias"] == "#lobby:localhost")
            #expect(chunk.first?["num_joined_members"] == 2)
            let page = try await anonymous.call("GET", "/publicRooms?limit=1")
            #expect(page.json["chunk"]?.arrayValue?.count == 1)
            let next = try #require(page.json["next_batch"]?.stringValue)
            let second = try await anonymous.call("GET", "/publicRooms?limit=1&since=\(next)")
            #expect(second.json["chunk"]?[0]?["room_id"]?.stringValue == other)
            let search = try await alice.call("POST", "/publicRooms", ["filter": ["generic_search_term": "hello"]])
            #expect(search.json["chunk"]?.arrayValue?.compactMap { $0["room_id"]?.stringValue } == [room])

            // Reports: a visible event, the room, a user; an unknown event is 404.
            let sent = try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/r1", ["msgtype": "m.text", "body": "spam"])
            let eventID = try #require(sent.json["event_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(p)/report/\(eventID.addingPercentEncodingForPath)", ["reason": "spam", "score": -100]).status == 200)
            #expect(try await bob.call("POST", "/rooms/\(p)/report/%24missing", ["reason": "x"]).status == 404)
            #expect(try await bob.call("POST", "/rooms/\(p)/report", ["reason": "bad room"]).status == 200)
            #expect(try await bob.call("POST", "/users/@alice:localhost/report", ["reason": "rude"]).status == 200)
            #expect(try await bob.call("POST", "/users/@ghost:localhost/report", ["reason": "?"]).status == 404)
            // The seed's forms: by room id, by /alias/, the user's rooms by membership.
            #expect(try await anonymous.call("GET", "/_matrix/client/r0/directory/room/\(p)").json["room_id"]?.stringValue == room)
            #expect(try await anonymous.call("GET", "/_matrix/client/r0/directory/room/alias/%23lobby:localhost").json["room_id"]?.stringValue == room)
            let mine = try await bob.call("GET", "/user/@bob:localhost/rooms")
            #expect(mine.json["joined"]?.arrayValue?.count == 2)
            #expect(mine.json["left"] == .array([]))
            #expect(try await bob.call("GET", "/user/@alice:localhost/rooms").status == 403)
            #expect(try await alice.call("DELETE", "/directory/room/%23lobby:localhost").status == 200)
            #expect(try await bob.call("GET", "/directory/room/%23lobby:localhost").status == 404)
            // Removing a room from the directory by id: admins only.
            #expect(try await bob.call("DELETE", "/directory/room/\(p)").status == 403)
            #expect(try await alice.call("DELETE", "/directory/room/\(p)").status == 200)
            #expect(try await alice.call("GET", "/directory/list/room/\(p)").json["visibility"] == "private")
        }
    }

    @Test func upgradeSummaryAndProfilePropagation() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", [
                "preset": "public_chat", "visibility": "public", "name": "Old", "room_alias_name": "hall", "room_version": "10",
            ]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)

            // The summary: public room, readable without a token.
            let summary = try await MatrixTestClient(port: port).call("GET", "/_matrix/client/v1/room_summary/%23hall:localhost")
            #expect(summary.status == 200)
            #expect(summary.json["room_id"]?.stringValue == room)
            #expect(summary.json["name"] == "Old")
            #expect(summary.json["room_version"] == "10")
            #expect(summary.json["num_joined_members"] == 2)

            // A display name change reaches the member event of every joined room.
            #expect(try await bob.call("PUT", "/profile/@bob:localhost/displayname", ["displayname": "Robert"]).status == 200)
            let member = try await alice.call("GET", "/rooms/\(p)/state/m.room.member/@bob:localhost")
            #expect(member.json["displayname"] == "Robert")
            #expect(member.json["membership"] == "join")

            // Upgrade: bob lacks the power; alice upgrades to version 12.
            #expect(try await bob.call("POST", "/rooms/\(p)/upgrade", ["new_version": "12"]).status == 403)
            #expect(try await alice.call("POST", "/rooms/\(p)/upgrade", ["new_version": "99"]).errcode == "M_UNSUPPORTED_ROOM_VERSION")
            let upgraded = try await alice.call("POST", "/rooms/\(p)/upgrade", ["new_version": "12"])
            #expect(upgraded.status == 200)
            let newRoom = try #require(upgraded.json["replacement_room"]?.stringValue)
            let tombstone = try await alice.call("GET", "/rooms/\(p)/state/m.room.tombstone")
            #expect(tombstone.json["replacement_room"]?.stringValue == newRoom)
            let create = try await alice.call("GET", "/rooms/\(Self.path(newRoom))/state/m.room.create")
            #expect(create.json["predecessor"]?["room_id"]?.stringValue == room)
            #expect(try await alice.call("GET", "/rooms/\(Self.path(newRoom))/state/m.room.name").json["name"] == "Old")
            #expect(try await bob.call("GET", "/directory/room/%23hall:localhost").json["room_id"]?.stringValue == newRoom)
            // The old room is closed to ordinary members; bob can follow into the new one.
            #expect(try await bob.call("PUT", "/rooms/\(p)/send/m.room.message/late", ["msgtype": "m.text", "body": "hi"]).status == 403)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(newRoom))/join", .object([:])).status == 200)
        }
    }

    @Test func relationsAndThreads() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let root = try #require(try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/root",
                                                         ["msgtype": "m.text", "body": "root"]).json["event_id"]?.stringValue)
            let other = try #require(try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/other",
                                                          ["msgtype": "m.text", "body": "other"]).json["event_id"]?.stringValue)
            for i in 0..<3 {
                let reply: JSON = ["msgtype": "m.text", "body": .string("reply \(i)"),
                                   "m.relates_to": ["rel_type": "m.thread", "event_id": .string(root)]]
                #expect(try await bob.call("PUT", "/rooms/\(p)/send/m.room.message/r\(i)", reply).status == 200)
            }
            let reaction: JSON = ["m.relates_to": ["rel_type": "m.annotation", "event_id": .string(root), "key": "👍"]]
            #expect(try await alice.call("PUT", "/rooms/\(p)/send/m.reaction/x", reaction).status == 200)
            let encodedRoot = root.addingPercentEncodingForPath
            let all = try await alice.call("GET", "/_matrix/client/v1/rooms/\(p)/relations/\(encodedRoot)")
            #expect(all.json["chunk"]?.arrayValue?.count == 4)
            let thread = try await alice.call("GET", "/_matrix/client/v1/rooms/\(p)/relations/\(encodedRoot)/m.thread?limit=2")
            let bodies = thread.json["chunk"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue }
            #expect(bodies == ["reply 2", "reply 1"])
            let next = try #require(thread.json["next_batch"]?.stringValue)
            let rest = try await alice.call("GET", "/_matrix/client/v1/rooms/\(p)/relations/\(encodedRoot)/m.thread?limit=2&from=\(next)")
            #expect(rest.json["chunk"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } == ["reply 0"])
            let reactions = try await alice.call("GET", "/_matrix/client/v1/rooms/\(p)/relations/\(encodedRoot)/m.annotation/m.reaction")
            #expect(reactions.json["chunk"]?.arrayValue?.count == 1)
            #expect(try await alice.call("GET", "/_matrix/client/v1/rooms/\(p)/relations/\(other.addingPercentEncodingForPath)").json["chunk"] == .array([]))

            let threads = try await alice.call("GET", "/_matrix/client/v1/rooms/\(p)/threads")
            let roots = threads.json["chunk"]?.arrayValue ?? []
            #expect(roots.count == 1)
            #expect(roots.first?["event_id"]?.stringValue == root)
            #expect(roots.first?["unsigned"]?["m.relations"]?["m.thread"]?["count"] == 3)
            #expect(roots.first?["unsigned"]?["m.relations"]?["m.thread"]?["latest_event"]?["content"]?["body"] == "reply 2")
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            #expect(try await carol.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            #expect(try await carol.call("GET", "/_matrix/client/v1/rooms/\(p)/threads?include=participated").json["chunk"] == .array([]))
        }
    }

    @Test func searchFindsVisibleMessagesWithContext() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let secret = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            for (i, text) in ["deploy the rocket", "coffee first", "the rocket is ready", "lunch"].enumerated() {
                _ = try await alice.call("PUT", "/rooms/\(p)/send/m.room.message/s\(i)", ["msgtype": "m.text", "body": .string(text)])
            }
            _ = try await alice.call("PUT", "/rooms/\(Self.path(secret))/send/m.room.message/x", ["msgtype": "m.text", "body": "rocket codes"])
            let query: JSON = ["search_categories": ["room_events": [
                "search_term": "rocket", "order_by": "recent",
                "event_context": ["before_limit": 1, "after_limit": 1, "include_profile": true]]]]
            let found = try await bob.call("POST", "/search", query)
            #expect(found.status == 200)
            let events = found.json["search_categories"]?["room_events"]
            #expect(events?["count"] == 2)  // not the room bob is not in
            let results = events?["results"]?.arrayValue ?? []
            #expect(results.compactMap { $0["result"]?["content"]?["body"]?.stringValue } == ["the rocket is ready", "deploy the rocket"])
            #expect(results.first?["context"]?["events_before"]?[0]?["content"]?["body"] == "coffee first")
            #expect(results.first?["context"]?["events_after"]?[0]?["content"]?["body"] == "lunch")
            #expect(results.first?["context"]?["profile_info"]?["@alice:localhost"] != nil)
            // Pagination and rank order.
            let paged = try await bob.call("POST", "/search", ["search_categories": ["room_events": [
                "search_term": "rocket", "filter": ["limit": 1]]]])
            let next = try #require(paged.json["search_categories"]?["room_events"]?["next_batch"]?.stringValue)
            let second = try await bob.call("POST", "/search?next_batch=\(next)", ["search_categories": ["room_events": [
                "search_term": "rocket", "filter": ["limit": 1]]]])
            #expect(second.json["search_categories"]?["room_events"]?["results"]?.arrayValue?.count == 1)
            #expect(second.json["search_categories"]?["room_events"]?["next_batch"] == nil)
        }
    }

    @Test func spacesHierarchyAndRestrictedJoins() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            let space = try #require(try await alice.call("POST", "/createRoom", [
                "preset": "public_chat", "name": "Space", "creation_content": ["type": "m.space"]]).json["room_id"]?.stringValue)
            let open = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat", "name": "Open"]).json["room_id"]?.stringValue)
            let restricted = try #require(try await alice.call("POST", "/createRoom", [
                "name": "Members only",
                "initial_state": [["type": "m.room.join_rules", "content": [
                    "join_rule": "restricted", "allow": [["type": "m.room_membership", "room_id": .string(space)]]]]],
            ]).json["room_id"]?.stringValue)
            // An invite-only child: listed in the space's children_state, not in the walk for bob.
            let hidden = try #require(try await alice.call("POST", "/createRoom", ["name": "Hidden"]).json["room_id"]?.stringValue)
            for (child, suggested) in [(open, true), (restricted, false), (hidden, false)] {
                #expect(try await alice.call("PUT", "/rooms/\(Self.path(space))/state/m.space.child/\(Self.path(child))",
                                             ["via": ["localhost"], "suggested": .bool(suggested)]).status == 200)
            }
            // Bob (not a member of anything) sees the public space, its public child; not the
            // restricted or invite-only ones.
            let hierarchy = try await bob.call("GET", "/_matrix/client/v1/rooms/\(Self.path(space))/hierarchy")
            #expect(hierarchy.status == 200)
            let rooms = hierarchy.json["rooms"]?.arrayValue ?? []
            #expect(rooms.compactMap { $0["room_id"]?.stringValue } == [space, open])
            #expect(rooms.first?["room_type"] == "m.space")
            #expect(rooms.first?["children_state"]?.arrayValue?.count == 3)
            let suggested = try await bob.call("GET", "/_matrix/client/v1/rooms/\(Self.path(space))/hierarchy?suggested_only=true")
            #expect(suggested.json["rooms"]?[0]?["children_state"]?.arrayValue?.count == 1)
            let paged = try await bob.call("GET", "/_matrix/client/v1/rooms/\(Self.path(space))/hierarchy?limit=1")
            #expect(paged.json["rooms"]?.arrayValue?.count == 1)
            #expect(paged.json["next_batch"] != nil)

            // Restricted: carol cannot join until she is in the space; then she can, without an invite.
            #expect(try await carol.call("POST", "/rooms/\(Self.path(restricted))/join", .object([:])).status == 403)
            #expect(try await carol.call("POST", "/rooms/\(Self.path(space))/join", .object([:])).status == 200)
            #expect(try await carol.call("POST", "/rooms/\(Self.path(restricted))/join", .object([:])).status == 200)
            let member = try await alice.call("GET", "/rooms/\(Self.path(restricted))/state/m.room.member/@carol:localhost")
            #expect(member.json["join_authorised_via_users_server"] == "@alice:localhost")
            #expect(!rooms.contains { $0["room_id"]?.stringValue == hidden })
        }
    }

    @Test func oversizedEventsAreRefused() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            let big = String(repeating: "x", count: 70_000)
            let reply = try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/big", ["msgtype": "m.text", "body": .string(big)])
            #expect(reply.status == 413)
            #expect(reply.errcode == "M_TOO_LARGE")
        }
    }
}

extension String {
    /// Percent-encodes a path segment (room and event ids carry `!`, `$`, `:`, `#`).
    var addingPercentEncodingForPath: String {
        var out = ""
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(UnicodeScalar(byte)))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded
            }
        }
        return out
    }

    fileprivate var leftPadded: String { count == 1 ? "0" + self : self }
}
