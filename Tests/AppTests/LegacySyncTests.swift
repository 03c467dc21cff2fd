import Matrix
import TestSupport
import Testing
@testable import App

/// The legacy endpoints `/initialSync` and `/events`, shaped from the sync machinery's
/// `SyncResult` (stored bytes concatenated, never a whole sync response parsed again).
@Suite("Legacy sync endpoints")
struct LegacySyncTests {
    static func path(_ room: String) -> String { room.addingPercentEncodingForPath }

    @Test func initialSyncListsJoinedAndInvitedRooms() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["name": "Chat"]).json["room_id"]?.stringValue)
            let reply = try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/t1",
                                             ["msgtype": "m.text", "body": "hello"])
            #expect(reply.status == 200)
            #expect(try await alice.call("PUT", "/user/@alice:localhost/account_data/org.example.setting", ["on": true]).status == 200)
            #expect(try await alice.call("POST", "/rooms/\(Self.path(room))/invite", ["user_id": "@bob:localhost"]).status == 200)

            let mine = try await alice.call("GET", "/initialSync?limit=5")
            #expect(mine.status == 200)
            let rooms = mine.json["rooms"]?.arrayValue ?? []
            let joined = try #require(rooms.first { $0["room_id"]?.stringValue == room })
            #expect(joined["membership"] == "join")
            let chunk = joined["messages"]?["chunk"]?.arrayValue ?? []
            #expect(chunk.count == 5)
            // The sending device sees its transaction id, as in /sync.
            #expect(chunk.contains { $0["content"]?["body"] == "hello" && $0["unsigned"]?["transaction_id"] == "t1" })
            #expect(joined["messages"]?["start"]?.stringValue?.hasPrefix("t") == true)
            #expect(joined["messages"]?["end"] == mine.json["end"])
            let state = joined["state"]?.arrayValue ?? []
            #expect(state.contains { $0["type"] == "m.room.create" })
            #expect(state.contains { $0["type"] == "m.room.name" && $0["content"]?["name"] == "Chat" })
            #expect(state.allSatisfy { $0["state_key"] != nil })
            #expect(joined["account_data"]?.arrayValue != nil)
            #expect((mine.json["account_data"]?.arrayValue ?? []).contains { $0["type"] == "org.example.setting" })
            // Presence of the user and their rooms' members, `user_id` in the content (v1 shape).
            #expect((mine.json["presence"]?.arrayValue ?? []).contains { $0["content"]?["user_id"] == "@alice:localhost" })
            #expect(state.allSatisfy { $0["user_id"] == $0["sender"] })
            #expect(mine.json["end"]?.stringValue?.hasPrefix("s") == true)

            let theirs = try await bob.call("GET", "/initialSync")
            let invited = try #require((theirs.json["rooms"]?.arrayValue ?? []).first { $0["room_id"]?.stringValue == room })
            #expect(invited["membership"] == "invite")
            #expect((invited["invite_state"]?["events"]?.arrayValue ?? []).contains { $0["type"] == "m.room.name" })
        }
    }

    @Test func eventsLongPollsNewEventsWithRoomIDsOnEphemeral() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let start = try #require(try await alice.call("GET", "/sync").json["next_batch"]?.stringValue)
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/e1",
                                         ["msgtype": "m.text", "body": "news"]).status == 200)
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(room))/typing/@alice:localhost",
                                         ["typing": true, "timeout": 30000]).status == 200)
            // Typing reaches the stream through its own actor: on a loaded machine it may land
            // after the PUT's reply, so ask again (everything since `start`) until it is there.
            var events = try await alice.call("GET", "/events?from=\(start)&timeout=0")
            for _ in 0..<50 where !(events.json["chunk"]?.arrayValue ?? []).contains(where: { $0["type"] == "m.typing" }) {
                try await Task.sleep(for: .milliseconds(100))
                events = try await alice.call("GET", "/events?from=\(start)&timeout=0")
            }
            #expect(events.status == 200)
            #expect(events.json["start"]?.stringValue == start)
            let end = try #require(events.json["end"]?.stringValue)
            #expect(end != start)
            let chunk = events.json["chunk"]?.arrayValue ?? []
            #expect(chunk.contains { $0["content"]?["body"] == "news" && $0["room_id"]?.stringValue == room })
            let typing = try #require(chunk.first { $0["type"] == "m.typing" })
            #expect(typing["room_id"]?.stringValue == room)
            #expect(typing["content"]?["user_ids"] == ["@alice:localhost"])

            // Nothing new: an empty chunk at the timeout, ending where it started.
            let quiet = try await alice.call("GET", "/events?from=\(end)&timeout=0")
            #expect(quiet.json["chunk"]?.arrayValue?.isEmpty == true)
        }
    }
}
