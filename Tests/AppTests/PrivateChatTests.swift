import Matrix
import Testing
import TestSupport
@testable import App

/// The seed's private chat sessions over a running server on SQLite and PostgreSQL: a session
/// is an ordinary invite-only direct room, so messages sent through the session API reach
/// the other member's `/sync` as ordinary room messages, and ordinary messages are in the
/// session's pages.
@Suite("Private chat")
struct PrivateChatTests {
    static let base = "/_synapse/enhanced/private_chat/sessions"
    static func p(_ text: String) -> String { HostileInputTests.path(text) }

    /// The `m.room.message` bodies of `room` in a fresh `/sync` of `client` (timeline of 100).
    static func syncedBodies(_ client: MatrixTestClient, _ room: String) async throws -> [(sender: String, body: String)] {
        let filter = HostileInputTests.query(#"{"room":{"timeline":{"limit":100}}}"#)
        let sync = try await client.call("GET", "/sync?timeout=0&filter=\(filter)")
        let events = sync.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
        return events.filter { $0["type"]?.stringValue == "m.room.message" }.compactMap { event in
            guard let sender = event["sender"]?.stringValue, let body = event["content"]?["body"]?.stringValue else { return nil }
            return (sender, body)
        }
    }

    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        try await AdminRoomsTests.eventually(condition)
    }

    @Test(arguments: MediaTest.backends)
    func sessionMessagesAreRoomMessages(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let bob = try await MediaTest.user(port, "bob")
            let carol = try await MediaTest.user(port, "carol")
            let aliceID = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let bobID = try #require(try await bob.call("GET", "/account/whoami").json["user_id"]?.stringValue)

            let created = try await alice.call("POST", Self.base, ["user_id": .string(bobID), "name": "Chat"])
            #expect(created.status == 200, "\(created.json)")
            let session = try #require(created.json["session_id"]?.stringValue)
            let room = try #require(created.json["room_id"]?.stringValue)
            #expect(created.json["participants"] == .array([.string(aliceID), .string(bobID)]))
            #expect(created.json["other_user_id"]?.stringValue == bobID)
            // The same pair again: the same session.
            #expect(try await alice.call("POST", Self.base, ["user_id": .string(bobID)]).json["session_id"]?.stringValue == session)
            // An ordinary invite-only direct room, in alice's m.direct.
            let joinRule = try await alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.join_rules")
            #expect(joinRule.json["join_rule"]?.stringValue == "invite")
            let direct = try await alice.call("GET", "/user/\(Self.p(aliceID))/account_data/m.direct")
            #expect(direct.json[bobID] == .array([.string(room)]), "\(direct.json)")

            // Bob sees the session (invited), carol does not.
            let listed = try await bob.call("GET", Self.base)
            #expect(listed.json["sessions"]?.arrayValue?.compactMap { $0["session_id"]?.stringValue } == [session])
            #expect(try await bob.call("GET", "\(Self.base)/\(session)").json["membership"]?.stringValue == "invite")
            let stranger = try await carol.call("GET", "\(Self.base)/\(session)")
            #expect(stranger.status == 404 && stranger.errcode == "M_NOT_FOUND")
            #expect(try await carol.call("POST", "\(Self.base)/\(session)/messages", ["body": "x"]).status == 404)

            // Through the session API, both ways (bob's first message joins him).
            let fromAlice = try await alice.call("POST", "\(Self.base)/\(session)/messages", ["body": "hello from the session API"])
            #expect(fromAlice.status == 200 && fromAlice.json["event_id"] != nil, "\(fromAlice.json)")
            let fromBob = try await bob.call("POST", "\(Self.base)/\(session)/messages", ["body": "hi back through the session"])
            #expect(fromBob.status == 200, "\(fromBob.json)")
            #expect(try await bob.call("GET", "/user/\(Self.p(bobID))/account_data/m.direct").json[aliceID] == .array([.string(room)]))

            // ... reach the other member's /sync as ordinary messages.
            #expect(try await Self.eventually {
                try await Self.syncedBodies(bob, room).contains { $0.sender == aliceID && $0.body == "hello from the session API" }
            })
            #expect(try await Self.eventually {
                try await Self.syncedBodies(alice, room).contains { $0.sender == bobID && $0.body == "hi back through the session" }
            })
            // An ordinary message is in the session's page (newest first; bob's join between).
            let plain = try await HostileInputTests.send(alice, room, ["msgtype": "m.text", "body": "sent the Matrix way"], txn: "m1")
            let plainID = try #require(plain.json["event_id"]?.stringValue)
            let page = try await bob.call("GET", "\(Self.base)/\(session)/messages?limit=4")
            let bodies = page.json["chunk"]?.arrayValue?.filter { $0["type"] == "m.room.message" }.compactMap { $0["content"]?["body"]?.stringValue } ?? []
            #expect(bodies == ["sent the Matrix way", "hi back through the session", "hello from the session API"], "\(page.json)")
            let end = try #require(page.json["end"]?.stringValue)
            let older = try await bob.call("GET", "\(Self.base)/\(session)/messages?limit=100&from=\(end)")
            #expect(older.status == 200 && older.json["chunk"]?.arrayValue?.contains { $0["type"]?.stringValue == "m.room.create" } == true)

            // Mark read: the receipt and the fully-read marker at the newest event.
            let read = try await bob.call("PUT", "\(Self.base)/\(session)/read", [:])
            #expect(read.status == 200 && read.json["event_id"]?.stringValue == plainID, "\(read.json)")
            let marker = try await bob.call("GET", "/user/\(Self.p(bobID))/rooms/\(Self.p(room))/account_data/m.fully_read")
            #expect(marker.json["event_id"]?.stringValue == plainID)

            // Close: bob leaves the room, the session is no longer listed and takes no messages.
            #expect(try await bob.call("DELETE", "\(Self.base)/\(session)").status == 200)
            #expect(try await bob.call("GET", "\(Self.base)/\(session)").json["status"]?.stringValue == "closed")
            #expect(try await alice.call("GET", Self.base).json["sessions"] == .array([]))
            #expect(try await alice.call("GET", "\(Self.base)?include_closed=true").json["sessions"]?.arrayValue?.count == 1)
            #expect(try await alice.call("POST", "\(Self.base)/\(session)/messages", ["body": "late"]).status == 403)
            let members = try await alice.call("GET", "/rooms/\(Self.p(room))/state/m.room.member/\(Self.p(bobID))")
            #expect(members.json["membership"]?.stringValue == "leave")
            // A new session for the pair is a new room.
            let again = try await alice.call("POST", Self.base, ["user_id": .string(bobID)])
            #expect(again.json["session_id"]?.stringValue != session && again.json["room_id"]?.stringValue != room)
        }
    }

    @Test(arguments: MediaTest.backends)
    func badRequests(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let aliceID = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            #expect(try await alice.call("POST", Self.base, [:]).errcode == "M_MISSING_PARAM")
            #expect(try await alice.call("POST", Self.base, ["user_id": "not a user"]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("POST", Self.base, ["user_id": .string(aliceID)]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("POST", Self.base, ["user_id": "@nobody:localhost"]).errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", "\(Self.base)/nope").status == 404)
            #expect(try await alice.call("GET", Self.base, token: .some(nil)).errcode == "M_MISSING_TOKEN")
            let long = String(repeating: "x", count: 300)
            #expect(try await alice.call("GET", "\(Self.base)/\(long)").status == 400)
        }
    }
}
