import Matrix
import TestSupport
import Testing
@testable import App

/// `/sync` over real sockets: initial and incremental syncs, long-poll wake-ups, invites,
/// leaves, gaps, lazy loading, filters, ephemeral events, unread counts and to-device.
@Suite("Sync over real sockets")
struct SyncTests {
    static func path(_ room: String) -> String { room.addingPercentEncodingForPath }

    func send(_ client: MatrixTestClient, _ room: String, _ body: String, txn: String) async throws -> String {
        let reply = try await client.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/\(txn)", ["msgtype": "m.text", "body": .string(body)])
        #expect(reply.status == 200)
        return reply.json["event_id"]?.stringValue ?? ""
    }

    @Test func initialIncrementalInviteAndLeave() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["name": "Chat"]).json["room_id"]?.stringValue)
            let initial = try await bob.call("GET", "/sync")
            #expect(initial.status == 200)
            let since = try #require(initial.json["next_batch"]?.stringValue)
            #expect(initial.json["rooms"]?["join"]?[room] == nil)

            // The invite shows under rooms.invite with stripped state.
            #expect(try await alice.call("POST", "/rooms/\(Self.path(room))/invite", ["user_id": "@bob:localhost"]).status == 200)
            let invited = try await bob.call("GET", "/sync?since=\(since)")
            let inviteState = invited.json["rooms"]?["invite"]?[room]?["invite_state"]?["events"]?.arrayValue ?? []
            #expect(inviteState.contains { $0["type"] == "m.room.name" && $0["content"]?["name"] == "Chat" })
            #expect(inviteState.contains { $0["type"] == "m.room.member" && $0["state_key"] == "@bob:localhost" })

            // Joined: the timeline and the room's state arrive.
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            _ = try await send(alice, room, "hello bob", txn: "1")
            let after = try #require(invited.json["next_batch"]?.stringValue)
            let joined = try await bob.call("GET", "/sync?since=\(after)")
            let section = joined.json["rooms"]?["join"]?[room]
            let timeline = section?["timeline"]?["events"]?.arrayValue ?? []
            let state = section?["state"]?["events"]?.arrayValue ?? []
            #expect(timeline.contains { $0["content"]?["body"] == "hello bob" })
            #expect((state + timeline).contains { $0["type"] == "m.room.create" })
            #expect(section?["summary"]?["m.joined_member_count"] == 2)

            // Kicked: the room moves to rooms.leave with the kick in its timeline.
            let beforeKick = try #require(joined.json["next_batch"]?.stringValue)
            #expect(try await alice.call("POST", "/rooms/\(Self.path(room))/kick", ["user_id": "@bob:localhost"]).status == 200)
            let left = try await bob.call("GET", "/sync?since=\(beforeKick)")
            let leave = left.json["rooms"]?["leave"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
            #expect(leave.contains { $0["type"] == "m.room.member" && $0["content"]?["membership"] == "leave" && $0["sender"] == "@alice:localhost" })
            #expect(left.json["rooms"]?["join"]?[room] == nil)

            // A rejected invite shows the leave alone: nothing of a room the user never joined.
            let secret = try #require(try await alice.call("POST", "/createRoom", ["name": "Secret"]).json["room_id"]?.stringValue)
            _ = try await send(alice, secret, "private words", txn: "secret")
            #expect(try await alice.call("POST", "/rooms/\(Self.path(secret))/invite", ["user_id": "@bob:localhost"]).status == 200)
            let beforeReject = try #require(left.json["next_batch"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(secret))/leave", .object([:])).status == 200)
            let rejected = try await bob.call("GET", "/sync?since=\(beforeReject)")
            let rejectedRoom = rejected.json["rooms"]?["leave"]?[secret]
            #expect(rejectedRoom?["timeline"]?["events"]?.arrayValue?.map { $0["type"] } == ["m.room.member"])
            #expect(rejectedRoom?["state"]?["events"]?.arrayValue?.isEmpty ?? true)

            // A malformed since is a 400.
            let bad = try await bob.call("GET", "/sync?since=banana")
            #expect(bad.status == 400)
            #expect(bad.errcode == "M_INVALID_PARAM")
        }
    }

    @Test func longPollWakesOnAMessageFromAnotherUser() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            let since = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            let poll = Task { try await bob.call("GET", "/sync?since=\(since)&timeout=30000") }
            // The long-poll is registered before the send (it would still see the event if not).
            try await Task.sleep(for: .milliseconds(200))
            let eventID = try await send(alice, room, "wake up", txn: "w")
            let woken = try await poll.value
            let timeline = woken.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
            #expect(timeline.map { $0["event_id"]?.stringValue } == [eventID])
            #expect(woken.json["rooms"]?["join"]?[room]?["timeline"]?["limited"] == false)
            // Nothing new: a short long-poll returns empty with the same position.
            let next = try #require(woken.json["next_batch"]?.stringValue)
            let empty = try await bob.call("GET", "/sync?since=\(next)&timeout=100")
            #expect(empty.json["rooms"] == nil)
        }
    }

    @Test func gapGivesLimitedTimelineStateDeltaAndPrevBatch() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let since = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            for i in 0..<200 {
                if i == 50 { #expect(try await alice.call("PUT", "/rooms/\(p)/state/m.room.topic", ["topic": "changed in the gap"]).status == 200) }
                _ = try await send(alice, room, "g\(i)", txn: "g\(i)")
            }
            let filter = "%7B%22room%22:%7B%22timeline%22:%7B%22limit%22:5%7D%7D%7D"
            let reply = try await bob.call("GET", "/sync?since=\(since)&filter=\(filter)")
            let section = try #require(reply.json["rooms"]?["join"]?[room])
            let timeline = section["timeline"]?["events"]?.arrayValue ?? []
            #expect(section["timeline"]?["limited"] == true)
            #expect(timeline.compactMap { $0["content"]?["body"]?.stringValue } == (195..<200).map { "g\($0)" })
            // The topic changed inside the gap: it is in the state delta; unchanged state is not.
            let state = section["state"]?["events"]?.arrayValue ?? []
            #expect(state.contains { $0["type"] == "m.room.topic" && $0["content"]?["topic"] == "changed in the gap" })
            #expect(!state.contains { $0["type"] == "m.room.create" })
            // /messages from prev_batch continues exactly before the timeline.
            let prevBatch = try #require(section["timeline"]?["prev_batch"]?.stringValue)
            let page = try await bob.call("GET", "/rooms/\(p)/messages?dir=b&limit=3&from=\(prevBatch)")
            #expect(page.json["chunk"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } == ["g194", "g193", "g192"])
        }
    }

    @Test func lazyLoadingFiltersAndFullState() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            var clients: [MatrixTestClient] = []
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            for name in ["u1", "u2", "u3"] {
                let (client, _) = try await MatrixTestClient.registered(port: port, name)
                #expect(try await client.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
                clients.append(client)
            }
            for i in 0..<12 { _ = try await send(alice, room, "x\(i)", txn: "x\(i)") }
            _ = try await send(clients[0], room, "from u1", txn: "u1")
            // Timeline of 2 events: senders alice and u1; lazy loading keeps their members and ours.
            let lazy = "%7B%22room%22:%7B%22timeline%22:%7B%22limit%22:2%7D,%22state%22:%7B%22lazy_load_members%22:true%7D%7D%7D"
            let reply = try await clients[2].call("GET", "/sync?filter=\(lazy)")
            let state = reply.json["rooms"]?["join"]?[room]?["state"]?["events"]?.arrayValue ?? []
            let members = Set(state.filter { $0["type"] == "m.room.member" }.compactMap { $0["state_key"]?.stringValue })
            #expect(members == ["@alice:localhost", "@u1:localhost", "@u3:localhost"])
            #expect(state.contains { $0["type"] == "m.room.create" })

            // A stored filter by id: only m.room.message in the timeline, not_rooms drops the room.
            let stored = try await clients[2].call("POST", "/user/@u3:localhost/filter",
                                                   ["room": ["timeline": ["types": ["m.room.message"], "limit": 3]]])
            let filterID = try #require(stored.json["filter_id"]?.stringValue)
            let typed = try await clients[2].call("GET", "/sync?filter=\(filterID)")
            let types = typed.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue }
            #expect(types == ["m.room.message", "m.room.message", "m.room.message"])
            let notRooms = "%7B%22room%22:%7B%22not_rooms%22:%5B%22\(room.addingPercentEncodingForPath)%22%5D%7D%7D"
            #expect(try await clients[2].call("GET", "/sync?filter=\(notRooms)").json["rooms"]?["join"]?[room] == nil)

            // full_state: the whole state again on an incremental sync.
            let since = try #require(reply.json["next_batch"]?.stringValue)
            let full = try await clients[2].call("GET", "/sync?since=\(since)&full_state=true")
            let fullState = full.json["rooms"]?["join"]?[room]?["state"]?["events"]?.arrayValue ?? []
            #expect(fullState.contains { $0["type"] == "m.room.power_levels" })
        }
    }

    @Test func typingReceiptsUnreadCountsAndTransactionIDs() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let p = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(p)/join", .object([:])).status == 200)
            let since = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            _ = try await send(alice, room, "plain", txn: "a")
            let mention = try await send(alice, room, "hey bob, look", txn: "b")
            #expect(try await alice.call("PUT", "/rooms/\(p)/typing/@alice:localhost", ["typing": true, "timeout": 120000]).status == 200)
            #expect(try await bob.call("PUT", "/rooms/\(p)/typing/@alice:localhost", ["typing": true]).status == 403)
            // Typing reaches the stream through its own actor: on a loaded machine it may land
            // after the PUT's reply, so ask again (the same window since `since`) until it is there.
            func aliceTyping(_ reply: MatrixTestClient.Reply) -> Bool {
                (reply.json["rooms"]?["join"]?[room]?["ephemeral"]?["events"]?.arrayValue ?? [])
                    .contains { $0["type"] == "m.typing" && $0["content"]?["user_ids"] == ["@alice:localhost"] }
            }
            var reply = try await bob.call("GET", "/sync?since=\(since)")
            for _ in 0..<300 where !aliceTyping(reply) {
                try await Task.sleep(for: .milliseconds(100))
                reply = try await bob.call("GET", "/sync?since=\(since)")
            }
            let section = reply.json["rooms"]?["join"]?[room]
            #expect(aliceTyping(reply))
            #expect(section?["unread_notifications"]?["notification_count"] == 2)
            #expect(section?["unread_notifications"]?["highlight_count"] == 1)

            // Bob's read receipt: alice sees it in ephemeral; bob's counts reset.
            let next = try #require(reply.json["next_batch"]?.stringValue)
            let aliceSince = try #require(try await alice.call("GET", "/sync").json["next_batch"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(p)/receipt/m.read/\(mention.addingPercentEncodingForPath)", .object([:])).status == 200)
            let aliceSync = try await alice.call("GET", "/sync?since=\(aliceSince)")
            let receipts = aliceSync.json["rooms"]?["join"]?[room]?["ephemeral"]?["events"]?.arrayValue ?? []
            #expect(receipts.contains { $0["type"] == "m.receipt" && $0["content"]?[mention]?["m.read"]?["@bob:localhost"] != nil })
            let cleared = try await bob.call("GET", "/sync?since=\(next)")
            #expect(cleared.json["rooms"]?["join"]?[room]?["unread_notifications"]?["notification_count"] == 0)

            // transaction_id only for the sending device.
            let aliceFull = try await alice.call("GET", "/sync")
            let ownEvents = aliceFull.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
            #expect(ownEvents.first { $0["event_id"]?.stringValue == mention }?["unsigned"]?["transaction_id"] == "b")
            let bobView = try await bob.call("GET", "/sync")
            let bobEvents = bobView.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
            #expect(bobEvents.first { $0["event_id"]?.stringValue == mention }?["unsigned"]?["transaction_id"] == nil)
        }
    }

    @Test func presenceOfRoomPeersAndKnocks() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            let since = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            let poll = Task { try await bob.call("GET", "/sync?since=\(since)&timeout=30000") }
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await alice.call("PUT", "/presence/@alice:localhost/status", ["presence": "online", "status_msg": "here"]).status == 200)
            #expect(try await carol.call("PUT", "/presence/@carol:localhost/status", ["presence": "online"]).status == 200)
            let woken = try await poll.value
            var events = woken.json["presence"]?["events"]?.arrayValue ?? []
            if events.isEmpty {
                // The wake may have come between the two writes: the next sync has the rest.
                let next = try #require(woken.json["next_batch"]?.stringValue)
                events = try await bob.call("GET", "/sync?since=\(next)&timeout=1000").json["presence"]?["events"]?.arrayValue ?? []
            }
            let alicePresence = events.first { $0["sender"] == "@alice:localhost" }
            #expect(alicePresence?["content"]?["presence"] == "online")
            #expect(alicePresence?["content"]?["status_msg"] == "here")
            // Carol shares no room with bob: her presence is not his business.
            #expect(!events.contains { $0["sender"] == "@carol:localhost" })

            // Knocking: a knock room, carol knocks, the room shows under rooms.knock, alice lets her in.
            let knockRoom = try #require(try await alice.call("POST", "/createRoom", [
                "initial_state": [["type": "m.room.join_rules", "content": ["join_rule": "knock"]]]]).json["room_id"]?.stringValue)
            let carolSince = try #require(try await carol.call("GET", "/sync").json["next_batch"]?.stringValue)
            #expect(try await carol.call("POST", "/rooms/\(Self.path(knockRoom))/join", .object([:])).status == 403)
            #expect(try await carol.call("POST", "/knock/\(Self.path(knockRoom))", ["reason": "let me in"]).status == 200)
            let knocked = try await carol.call("GET", "/sync?since=\(carolSince)")
            #expect(knocked.json["rooms"]?["knock"]?[knockRoom] != nil)
            #expect(try await alice.call("POST", "/rooms/\(Self.path(knockRoom))/invite", ["user_id": "@carol:localhost"]).status == 200)
            #expect(try await carol.call("POST", "/rooms/\(Self.path(knockRoom))/join", .object([:])).status == 200)
        }
    }

    @Test func syncingSetsPresenceAndStoppingSetsOffline() async throws {
        try await withMyelinServer { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            // Presence is written in batches shortly after the sync: wait for the state.
            func state(_ user: String, becomes expected: String) async throws -> Bool {
                for _ in 0..<100 {
                    let now = try await alice.call("GET", "/presence/\(user)/status").json["presence"]?.stringValue
                    if now == expected { return true }
                    try await Task.sleep(for: .milliseconds(20))
                }
                return false
            }
            let since = try #require(try await alice.call("GET", "/sync?set_presence=offline").json["next_batch"]?.stringValue)
            _ = try await bob.call("GET", "/sync")
            #expect(try await state("@bob:localhost", becomes: "online"))
            #expect(try await state("@alice:localhost", becomes: "offline"))
            let seen = try await alice.call("GET", "/sync?since=\(since)&set_presence=offline")
            let bobPresence = seen.json["presence"]?["events"]?.arrayValue?.first { $0["sender"] == "@bob:localhost" }
            #expect(bobPresence?["content"]?["presence"] == "online")

            // set_presence=unavailable steps him down; a bad value is refused.
            _ = try await bob.call("GET", "/sync?set_presence=unavailable")
            #expect(try await state("@bob:localhost", becomes: "unavailable"))
            #expect(try await bob.call("GET", "/sync?set_presence=busy").status == 400)

            // No sync of his for longer than the timeout: offline.
            let app = server.app
            await app.sync.presence.sweep(app, now: Clock.nowMilliseconds() + SyncPresence.offlineAfterMs + 1000)
            #expect(try await state("@bob:localhost", becomes: "offline"))
        }
    }

    @Test func unreadThreadNotificationsAndThreadedReceipts() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            let root = try await send(alice, room, "a root", txn: "root")
            let reply = try #require(try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/reply", [
                "msgtype": "m.text", "body": "in the thread",
                "m.relates_to": ["rel_type": "m.thread", "event_id": .string(root)]]).json["event_id"]?.stringValue)
            let threaded = "filter=%7B%22room%22:%7B%22timeline%22:%7B%22unread_thread_notifications%22:true%7D%7D%7D"
            func counts(_ query: String) async throws -> JSON? {
                try await bob.call("GET", "/sync?\(query)").json["rooms"]?["join"]?[room]
            }
            // Without the filter flag, one figure; with it, the thread apart.
            #expect(try await counts("")?["unread_notifications"]?["notification_count"] == 2)
            var section = try await counts(threaded)
            #expect(section?["unread_notifications"]?["notification_count"] == 1)
            #expect(section?["unread_thread_notifications"]?[root]?["notification_count"] == 1)

            // A receipt in the thread reads the thread only; one on `main` reads the rest.
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/receipt/m.read/\(Self.path(reply))",
                                       ["thread_id": .string(root)]).status == 200)
            section = try await counts(threaded)
            #expect(section?["unread_notifications"]?["notification_count"] == 1)
            #expect(section?["unread_thread_notifications"]?[root] == nil)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/receipt/m.read/\(Self.path(root))",
                                       ["thread_id": "main"]).status == 200)
            section = try await counts(threaded)
            #expect(section?["unread_notifications"]?["notification_count"] == 0)
            #expect(try await counts("")?["unread_notifications"]?["notification_count"] == 0)
        }
    }

    @Test func toDeviceIsDeliveredUntilAcknowledged() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, reply) = try await MatrixTestClient.registered(port: port, "bob")
            let device = try #require(reply.json["device_id"]?.stringValue)
            let since = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            let body: JSON = .object(["messages": .object(["@bob:localhost": .object([device: ["hello": "device"]])])])
            let sent = try await alice.call("PUT", "/sendToDevice/m.test/t1", body)
            #expect(sent.status == 200)
            // A retried transaction is not delivered twice.
            _ = try await alice.call("PUT", "/sendToDevice/m.test/t1", body)
            let first = try await bob.call("GET", "/sync?since=\(since)")
            let events = first.json["to_device"]?["events"]?.arrayValue ?? []
            #expect(events.count == 1)
            #expect(events.first?["sender"] == "@alice:localhost")
            #expect(events.first?["content"]?["hello"] == "device")
            // Not acknowledged (the same since again): delivered again.
            let retry = try await bob.call("GET", "/sync?since=\(since)")
            #expect(retry.json["to_device"]?["events"]?.arrayValue?.count == 1)
            // Acknowledged by the next since: gone.
            let next = try #require(first.json["next_batch"]?.stringValue)
            let acknowledged = try await bob.call("GET", "/sync?since=\(next)")
            #expect(acknowledged.json["to_device"] == nil)
        }
    }

    /// The ignored-users list is kept between syncs (not read from the store by every
    /// long-poll): ignoring and un-ignoring must still take effect at the next sync, for a
    /// long-poll already waiting as well.
    @Test func ignoredUsersTakeEffectAtTheNextSyncAndLongPoll() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            func bodies(_ reply: MatrixTestClient.Reply) -> [String] {
                (reply.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue }
            }
            // Alice syncs (her list, empty, is now known), then sees Bob's message.
            var since = try #require(try await alice.call("GET", "/sync").json["next_batch"]?.stringValue)
            _ = try await send(bob, room, "before", txn: "b1")
            let first = try await alice.call("GET", "/sync?since=\(since)")
            #expect(bodies(first) == ["before"])
            since = try #require(first.json["next_batch"]?.stringValue)

            // She ignores Bob: his next message is left out, hers still arrive.
            #expect(try await alice.call("PUT", "/user/@alice:localhost/account_data/m.ignored_user_list",
                                         ["ignored_users": .object(["@bob:localhost": .object([:])])]).status == 200)
            _ = try await send(bob, room, "ignored", txn: "b2")
            _ = try await send(alice, room, "mine", txn: "a1")
            let second = try await alice.call("GET", "/sync?since=\(since)")
            #expect(bodies(second) == ["mine"])
            #expect(second.json["account_data"]?["events"]?.arrayValue?.contains { $0["type"] == "m.ignored_user_list" } == true)
            since = try #require(second.json["next_batch"]?.stringValue)

            // While ignored, a long-poll with only his message to carry answers empty at its timeout.
            _ = try await send(bob, room, "still ignored", txn: "b3")
            let quiet = try await alice.call("GET", "/sync?since=\(since)&timeout=300")
            #expect(bodies(quiet).isEmpty)
            since = try #require(quiet.json["next_batch"]?.stringValue)

            // Un-ignored: a long-poll already waiting gets his next message.
            #expect(try await alice.call("PUT", "/user/@alice:localhost/account_data/m.ignored_user_list",
                                         ["ignored_users": .object([:])]).status == 200)
            let cleared = try await alice.call("GET", "/sync?since=\(since)")
            since = try #require(cleared.json["next_batch"]?.stringValue)
            let poll = Task { try await alice.call("GET", "/sync?since=\(since)&timeout=30000") }
            try await Task.sleep(for: .milliseconds(200))
            _ = try await send(bob, room, "after", txn: "b4")
            #expect(bodies(try await poll.value) == ["after"])
        }
    }

    /// A presence filter that lets no presence event through skips the presence read; one
    /// that lets some through still gets them, from the same sync position.
    @Test func presenceFilteredOutEntirelyIsNotRead() async throws {
        #expect(EventFilter(try JSON.parse(Array(#"{"not_types":["*"]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(EventFilter(try JSON.parse(Array(#"{"not_types":["m.*"]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(EventFilter(try JSON.parse(Array(#"{"types":["m.typing"]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(EventFilter(try JSON.parse(Array(#"{"senders":[]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(!EventFilter(try JSON.parse(Array(#"{"types":["m.pres*"]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(!EventFilter(try JSON.parse(Array(#"{"not_senders":["@a:b"]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(!EventFilter(try JSON.parse(Array(#"{"senders":["@alice:localhost"]}"#.utf8))).excludesEveryEvent(ofType: "m.presence"))
        #expect(!EventFilter.all.excludesEveryEvent(ofType: "m.presence"))
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            let none = "%7B%22presence%22:%7B%22not_types%22:%5B%22*%22%5D%7D%7D"
            let some = "%7B%22presence%22:%7B%22senders%22:%5B%22@alice:localhost%22%5D%7D%7D"
            let since = try #require(try await bob.call("GET", "/sync?filter=\(none)").json["next_batch"]?.stringValue)
            #expect(try await alice.call("PUT", "/presence/@alice:localhost/status", ["presence": "online", "status_msg": "here"]).status == 200)
            let filtered = try await bob.call("GET", "/sync?since=\(since)&filter=\(none)&timeout=300")
            #expect(filtered.status == 200)
            #expect(filtered.json["presence"] == nil)
            let shown = try await bob.call("GET", "/sync?since=\(since)&filter=\(some)&timeout=1000")
            let events = shown.json["presence"]?["events"]?.arrayValue ?? []
            #expect(events.contains { $0["sender"] == "@alice:localhost" && $0["content"]?["status_msg"] == "here" })
        }
    }
}
