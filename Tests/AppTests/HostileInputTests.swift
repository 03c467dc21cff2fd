import Matrix
import TestSupport
import Testing
@testable import App

/// The requests of issue 14 ("hostile input never crashes the server"), each over a real
/// socket: every one of them stopped the process, lost data or leaked something before.
/// The server runs in this test process, so a trap here fails the whole run; each test also
/// checks that the server still answers afterwards.
@Suite("Hostile input over real sockets")
struct HostileInputTests {
    static func path(_ text: String) -> String { text.addingPercentEncodingForPath }

    static func query(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                out.append(Character(UnicodeScalar(byte)))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 15)])
            }
        }
        return out
    }

    static func createRoom(_ client: MatrixTestClient, _ body: JSON = .object([:])) async throws -> String {
        let reply = try await client.call("POST", "/createRoom", body)
        #expect(reply.status == 200, "\(reply.json)")
        return try #require(reply.json["room_id"]?.stringValue)
    }

    @discardableResult
    static func send(_ client: MatrixTestClient, _ room: String, _ content: JSON, txn: String,
                     type: String = "m.room.message") async throws -> MatrixTestClient.Reply {
        try await client.call("PUT", "/rooms/\(path(room))/send/\(type)/\(txn)", content)
    }

    static func stillServing(_ client: MatrixTestClient) async throws {
        #expect(try await client.call("GET", "/account/whoami").status == 200)
    }

    // Items 1 and 15: /threads with limit=0 (threads[count - 1]); replies after a leave.
    @Test func threadsWithLimitZeroAndAfterLeaving() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try await Self.createRoom(alice, ["preset": "public_chat"])
            #expect(try await bob.call("POST", "/join/\(Self.path(room))").status == 200)
            let root = try #require(try await Self.send(alice, room, ["msgtype": "m.text", "body": "root"], txn: "r").json["event_id"]?.stringValue)
            func reply(_ body: String, _ txn: String) async throws -> String? {
                try await Self.send(alice, room, ["msgtype": "m.text", "body": .string(body),
                                                  "m.relates_to": ["rel_type": "m.thread", "event_id": .string(root)]], txn: txn)
                    .json["event_id"]?.stringValue
            }
            let before = try await reply("before", "t1")
            _ = try await reply("more", "t2")
            let threads = "/_matrix/client/v1/rooms/\(Self.path(room))/threads"
            let zero = try await bob.call("GET", threads + "?limit=0")
            #expect(zero.status == 200)
            #expect(zero.json["chunk"]?.arrayValue?.count == 1)
            #expect(try await bob.call("GET", threads + "?limit=-1").errcode == "M_INVALID_PARAM")
            #expect(try await bob.call("GET", threads + "?from=t9223372036854775807").errcode == "M_INVALID_PARAM")
            // Bob's view stops at his leave.
            let mid = try await reply("second", "t3")
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/leave", .object([:])).status == 200)
            _ = try await reply("after", "t4")
            let seen = try await bob.call("GET", threads)
            let latest = seen.json["chunk"]?[0]?["unsigned"]?["m.relations"]?["m.thread"]?["latest_event"]?["event_id"]?.stringValue
            #expect(latest == mid)
            #expect(latest != nil && latest != before)
            try await Self.stillServing(bob)
        }
    }

    // Items 2 and 10: /search pagination and context limits.
    @Test func searchOffsetsAndContextLimits() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try await Self.createRoom(alice)
            try await Self.send(alice, room, ["msgtype": "m.text", "body": "needle"], txn: "1")
            func search(_ query: String, _ context: JSON? = nil) async throws -> MatrixTestClient.Reply {
                var criteria: [String: JSON] = ["search_term": "needle"]
                if let context { criteria["event_context"] = context }
                return try await alice.call("POST", "/search" + query, ["search_categories": ["room_events": .object(criteria)]])
            }
            #expect(try await search("?next_batch=o9223372036854775807").errcode == "M_INVALID_PARAM")
            #expect(try await search("?next_batch=o18446744073709551616").errcode == "M_INVALID_PARAM")
            #expect(try await search("", ["before_limit": -1]).errcode == "M_BAD_JSON")
            #expect(try await search("", ["after_limit": "x"]).errcode == "M_BAD_JSON")
            let big = try await search("", ["before_limit": .int(Int64.max), "after_limit": .int(Int64.max)])
            #expect(big.status == 200)
            #expect(big.json["search_categories"]?["room_events"]?["count"] == 1)
            try await Self.stillServing(alice)
        }
    }

    // Item 3: timeline limits of 2^63-1 in a room with more events than the ring.
    @Test func hugeTimelineLimits() async throws {
        try await withMyelin({ $0.actors.roomRecentEvents = 4 }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try await Self.createRoom(alice)
            for index in 0..<12 { try await Self.send(alice, room, ["msgtype": "m.text", "body": .string("m\(index)")], txn: "t\(index)") }
            let filter = #"{"room":{"timeline":{"limit":9223372036854775807}}}"#
            let sync = try await alice.call("GET", "/sync?filter=" + Self.query(filter))
            #expect(sync.status == 200)
            let timeline = sync.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []
            #expect(timeline.count >= 12)
            let stored = try await alice.call("POST", "/user/@alice:localhost/filter", try JSON.parse(Array(filter.utf8)))
            let id = try #require(stored.json["filter_id"]?.stringValue)
            #expect(try await alice.call("GET", "/sync?filter=\(id)").status == 200)
            #expect(try await alice.call("GET", "/initialSync?limit=9223372036854775807").status == 200)
            #expect(try await alice.call("GET", "/initialSync?limit=99999999999999999999999").status == 200)
            #expect(try await alice.call("GET", "/initialSync?limit=-5").errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("GET", "/rooms/\(Self.path(room))/messages?dir=b&limit=9223372036854775807").status == 200)
            #expect(try await alice.call("GET", "/sync?since=s9223372036854775807_0_0_0_0_0_0").errcode == "M_INVALID_PARAM")
            try await Self.stillServing(alice)
        }
    }

    // Item 4: members `at` the largest token after leaving and forgetting a world-readable room.
    @Test func membersAtHugeTokenAfterForgetting() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try await Self.createRoom(alice, ["preset": "public_chat", "initial_state": [
                ["type": "m.room.history_visibility", "state_key": "", "content": ["history_visibility": "world_readable"]]]])
            #expect(try await bob.call("POST", "/join/\(Self.path(room))").status == 200)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/leave", .object([:])).status == 200)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/forget", .object([:])).status == 200)
            let members = "/rooms/\(Self.path(room))/members"
            #expect(try await bob.call("GET", members + "?at=t9223372036854775807").errcode == "M_INVALID_PARAM")
            #expect(try await bob.call("GET", members + "?at=t9007199254740992").status == 200)
            #expect(try await bob.call("GET", members + "?at=s9007199254740992").status == 200)
            try await Self.stillServing(bob)
        }
    }

    // Item 5: upgrading a version-5 room whose users_default is 2^63-1.
    @Test func upgradeWithHugeUsersDefault() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try await Self.createRoom(alice, ["room_version": "5", "power_level_content_override": [
                "users_default": .int(Int64.max), "users": ["@alice:localhost": .int(Int64.max)]]])
            let upgraded = try await alice.call("POST", "/rooms/\(Self.path(room))/upgrade", ["new_version": "5"])
            #expect(upgraded.status == 200, "\(upgraded.json)")
            try await Self.stillServing(alice)
        }
    }

    // Item 8: to-device positions survive acknowledgement and a restart.
    @Test func toDeviceMessagesSurviveARestart() async throws {
        let directory = makeTemporaryDirectory()
        var bobToken = "", device = "", acknowledgedToken = "", firstToken = ""
        try await withMyelin({ $0.dataDirectory = directory }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, reply) = try await MatrixTestClient.registered(port: port, "bob")
            bobToken = try #require(bob.token)
            device = try #require(reply.json["device_id"]?.stringValue)
            let since = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            let body: JSON = .object(["messages": .object(["@bob:localhost": .object([device: ["n": 1]])])])
            #expect(try await alice.call("PUT", "/sendToDevice/m.test/one", body).status == 200)
            let first = try await bob.call("GET", "/sync?since=\(since)")
            #expect(first.json["to_device"]?["events"]?.arrayValue?.count == 1)
            firstToken = try #require(first.json["next_batch"]?.stringValue)
            // Acknowledged: the inbox is empty now.
            let second = try await bob.call("GET", "/sync?since=\(firstToken)")
            #expect(second.json["to_device"] == nil)
            acknowledgedToken = try #require(second.json["next_batch"]?.stringValue)
        }
        try await withMyelin({ $0.dataDirectory = directory }) { port, _ in
            var alice = try MatrixTestClient(port: port)
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "correct horse"])
            alice.token = login.json["access_token"]?.stringValue
            let bob = try MatrixTestClient(port: port, token: bobToken)
            let body: JSON = .object(["messages": .object(["@bob:localhost": .object([device: ["n": 2]])])])
            #expect(try await alice.call("PUT", "/sendToDevice/m.test/two", body).status == 200)
            // A client retrying with the token it last acknowledged (or an older one) must get
            // the new message: before, the restarted stream reused the acknowledged position
            // and this sync deleted the message unseen.
            for token in [firstToken, acknowledgedToken] {
                let events = try await bob.call("GET", "/sync?since=\(token)").json["to_device"]?["events"]?.arrayValue ?? []
                #expect(events.map { $0["content"]?["n"] } == [2], "since \(token)")
            }
        }
    }

    // Item 11: receipt thread ids are `main` or a thread root of the room.
    @Test func receiptThreadIDsAreBounded() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try await Self.createRoom(alice)
            let event = try #require(try await Self.send(alice, room, ["msgtype": "m.text", "body": "x"], txn: "1").json["event_id"]?.stringValue)
            let receipt = "/rooms/\(Self.path(room))/receipt/m.read/\(Self.path(event))"
            #expect(try await alice.call("POST", receipt, ["thread_id": .string(String(repeating: "t", count: 5000))]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("POST", receipt, ["thread_id": "$made-up:localhost"]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("POST", receipt, ["thread_id": 5]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("POST", receipt, ["thread_id": "main"]).status == 200)
            #expect(try await alice.call("POST", receipt, ["thread_id": .string(event)]).status == 200)
        }
    }

    // Items 12 and 20: password guesses inside user-interactive auth are limited; other
    // limits; buckets per forwarded client behind a trusted proxy.
    @Test func passwordGuessesAndEphemeralFloodsAreLimited() async throws {
        try await withMyelin({ configuration in
            configuration.rateLimits.enabled = true
            configuration.rateLimits.login = .init(perSecond: 0.001, burst: 3)
            configuration.rateLimits.ephemeral = .init(perSecond: 0.001, burst: 5)
            configuration.rateLimits.registration = .init(perSecond: 0.001, burst: 100)
            configuration.rateLimits.trustedProxies = ["127.0.0.1"]
        }) { port, _ in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice")
            let device = try #require(reply.json["device_id"]?.stringValue)
            var statuses: [Int] = []
            for _ in 0..<6 {
                statuses.append(try await alice.call("DELETE", "/devices/\(device)", ["auth": [
                    "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"], "password": "wrong"]]).status)
            }
            #expect(statuses.prefix(3).allSatisfy { $0 == 401 }, "\(statuses)")
            #expect(statuses.suffix(3).allSatisfy { $0 == 429 }, "\(statuses)")
            let room = try await Self.createRoom(alice)
            var typing: [Int] = []
            for _ in 0..<7 {
                typing.append(try await alice.call("PUT", "/rooms/\(Self.path(room))/typing/@alice:localhost",
                                                   ["typing": true, "timeout": 1000]).status)
            }
            #expect(typing == [200, 200, 200, 200, 200, 429, 429])
            // Behind a trusted proxy each forwarded client has its own login bucket.
            let anonymous = try MatrixTestClient(port: port)
            func login(from address: String) async throws -> Int {
                try await anonymous.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "nope"],
                                         headers: ["X-Forwarded-For": "203.0.113.9, \(address)"]).status
            }
            var first: [Int] = []
            for _ in 0..<4 { first.append(try await login(from: "198.51.100.1")) }
            #expect(first.last == 429, "\(first)")
            // (the per-account bucket for alice is drained too: a second address sees the
            // per-account 429 only after its own per-address check passed)
            let other = try await anonymous.call("POST", "/login", ["type": "m.login.password", "user": "nobody", "password": "x"],
                                                 headers: ["X-Forwarded-For": "198.51.100.2"])
            #expect(other.status == 403)
        }
    }

    @Test func rateLimiterKeepsLimitedClientsWhenFull() throws {
        let limiter = RateLimiter(enabled: true, maxKeys: 10)
        let slow = Configuration.RateLimit(perSecond: 0.001, burst: 1)
        try limiter.check("attacker", slow, now: 0)
        #expect(throws: MatrixError.self) { try limiter.check("attacker", slow, now: 1) }
        // A flood of new keys: full buckets go first, the limited one stays limited.
        for index in 0..<50 { try limiter.check("k\(index)", .init(perSecond: 1000, burst: 5), now: 2 + Int64(index)) }
        #expect(limiter.count <= 10)
        #expect(throws: MatrixError.self) { try limiter.check("attacker", slow, now: 100) }
    }

    // Item 13: NUL characters are refused before they reach a text column.
    @Test func nulCharactersAreRefused() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try await Self.createRoom(alice)
            let raw = #"{"msgtype":"m.text","body":"a\u0000b"}"#
            let reply = try await alice.raw.request("PUT", "/_matrix/client/v3/rooms/\(Self.path(room))/send/m.room.message/nul",
                                                    body: raw, headers: ["Authorization": "Bearer \(alice.token!)"])
            #expect(reply.status == 400)
            #expect(try JSON.parse(reply.body)["errcode"] == "M_BAD_JSON")
            // An escaped backslash followed by "u0000" is text, not NUL.
            let text = #"{"msgtype":"m.text","body":"a\\u0000b"}"#
            let fine = try await alice.raw.request("PUT", "/_matrix/client/v3/rooms/\(Self.path(room))/send/m.room.message/text",
                                                   body: text, headers: ["Authorization": "Bearer \(alice.token!)"])
            #expect(fine.status == 200)
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/x%00y", ["body": "x"]).status >= 400)
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(room))/state/a%00b", ["k": "v"]).status >= 400)
            try await Self.stillServing(alice)
        }
    }

    // Item 14: timestamp_to_event stops at a leave; /hierarchy with made-up children;
    // /messages with a filter matching nothing.
    @Test func timestampLookupHierarchyAndEmptyFilters() async throws {
        try await withMyelinServer { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try await Self.createRoom(alice, ["preset": "public_chat"])
            #expect(try await bob.call("POST", "/join/\(Self.path(room))").status == 200)
            let early = try #require(try await Self.send(alice, room, ["msgtype": "m.text", "body": "early"], txn: "e").json["event_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/leave", .object([:])).status == 200)
            try await Task.sleep(for: .milliseconds(20))
            let late = try #require(try await Self.send(alice, room, ["msgtype": "m.text", "body": "late"], txn: "l").json["event_id"]?.stringValue)
            let lateEvent = try await alice.call("GET", "/rooms/\(Self.path(room))/event/\(Self.path(late))")
            let now = try #require(lateEvent.json["origin_server_ts"]?.intValue)
            let lookup = "/_matrix/client/v1/rooms/\(Self.path(room))/timestamp_to_event"
            #expect(try await alice.call("GET", lookup + "?ts=\(now)&dir=b").json["event_id"]?.stringValue == late)
            #expect(try await alice.call("GET", lookup + "?ts=\(now)&dir=f").json["event_id"]?.stringValue == late)
            #expect(try await alice.call("GET", lookup + "?ts=0&dir=f").status == 200)
            let bobs = try await bob.call("GET", lookup + "?ts=\(now)&dir=b").json["event_id"]?.stringValue
            #expect(bobs != late && bobs != nil)
            #expect(try await bob.call("GET", lookup + "?ts=\(now)&dir=f").status == 404)
            #expect(early != late)

            // A space naming thousands of rooms that do not exist.
            let space = try await Self.createRoom(alice, ["creation_content": ["type": "m.space"]])
            for index in 0..<30 {
                _ = try await alice.call("PUT", "/rooms/\(Self.path(space))/state/m.space.child/\(Self.path("!fake\(index):localhost"))",
                                         ["via": ["localhost"]])
            }
            let activationsBefore = await server.app.roomService.rooms.registry.counters.activations
            let hierarchy = try await alice.call("GET", "/_matrix/client/v1/rooms/\(Self.path(space))/hierarchy?limit=0&max_depth=99999999999999999999")
            #expect(hierarchy.status == 200)
            #expect(hierarchy.json["rooms"]?.arrayValue?.count == 1)
            // No actor was activated for the made-up children.
            #expect(await server.app.roomService.rooms.registry.counters.activations == activationsBefore)
            #expect(try await alice.call("POST", "/join/\(Self.path("!nothing:localhost"))").status == 404)
            #expect(await server.app.roomService.rooms.registry.counters.activations == activationsBefore)

            let nothing = #"{"types":["no.such.type"]}"#
            let page = try await alice.call("GET", "/rooms/\(Self.path(room))/messages?dir=b&filter=" + Self.query(nothing))
            #expect(page.status == 200)
            #expect(page.json["chunk"] == [])
            try await Self.stillServing(alice)
        }
    }

    // Item 15: sync hides what a history visibility of the time hid, whatever it is now.
    @Test func syncAppliesPastHistoryVisibility() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try await Self.createRoom(alice, ["preset": "public_chat", "initial_state": [
                ["type": "m.room.history_visibility", "state_key": "", "content": ["history_visibility": "joined"]]]])
            try await Self.send(alice, room, ["msgtype": "m.text", "body": "members only"], txn: "secret")
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(room))/state/m.room.history_visibility",
                                         ["history_visibility": "shared"]).status == 200)
            try await Self.send(alice, room, ["msgtype": "m.text", "body": "for everyone"], txn: "open")
            #expect(try await bob.call("POST", "/join/\(Self.path(room))").status == 200)
            let sync = try await bob.call("GET", "/sync")
            let bodies = (sync.json["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? [])
                .compactMap { $0["content"]?["body"]?.stringValue }
            #expect(bodies.contains("for everyone"), "\(bodies)")
            #expect(!bodies.contains("members only"), "\(bodies)")
            let messages = try await bob.call("GET", "/rooms/\(Self.path(room))/messages?dir=b&limit=50")
            let paged = (messages.json["chunk"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue }
            #expect(paged.contains("for everyone") && !paged.contains("members only"), "\(paged)")
        }
    }

    // Item 9: room creation and state events are bounded and limited.
    @Test func stateAmplificationIsBounded() async throws {
        try await withMyelin({ configuration in
            configuration.rateLimits.enabled = true
            configuration.rateLimits.messages = .init(perSecond: 0.001, burst: 6)
        }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let many: [JSON] = (0..<101).map { .object(["type": "m.custom", "state_key": .string("k\($0)"), "content": ["n": .int(Int64($0))]]) }
            #expect(try await alice.call("POST", "/createRoom", ["initial_state": .array(many)]).errcode == "M_INVALID_PARAM")
            let invitees: [JSON] = (0..<101).map { .string("@u\($0):localhost") }
            #expect(try await alice.call("POST", "/createRoom", ["invite": .array(invitees)]).errcode == "M_INVALID_PARAM")
            let room = try await Self.createRoom(alice, ["initial_state": .array(Array(many.prefix(100)))])
            var statuses: [Int] = []
            for index in 0..<5 {
                statuses.append(try await alice.call("PUT", "/rooms/\(Self.path(room))/state/m.custom/s\(index)", ["n": 1]).status)
            }
            // The three room creations (two refused) took three tokens of the burst of 6.
            #expect(statuses == [200, 200, 200, 429, 429], "\(statuses)")
        }
    }

    @Test func argon2QueueIsBounded() async throws {
        let hasher = PasswordHasher(threads: 1, maxQueued: 2)
        let hash = try await hasher.hash("pw")
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask { (try? await hasher.verify("wrong", hash: hash)) != nil }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        // At most 2 were admitted at a time; the rest were refused at once, not queued.
        #expect(outcomes.contains(false))
        #expect(outcomes.contains(true))
    }

    // Item 16: a transaction id is scoped to its path.
    @Test func transactionIDsAreScopedToTheirPath() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let first = try await Self.createRoom(alice)
            let second = try await Self.createRoom(alice)
            let a = try await Self.send(alice, first, ["msgtype": "m.text", "body": "one"], txn: "same").json["event_id"]?.stringValue
            let b = try await Self.send(alice, second, ["msgtype": "m.text", "body": "two"], txn: "same").json["event_id"]?.stringValue
            let c = try await Self.send(alice, first, ["k": "v"], txn: "same", type: "m.other").json["event_id"]?.stringValue
            #expect(a != nil && b != nil && c != nil)
            #expect(Set([a, b, c]).count == 3)
            // A retry in the same place is still the first event.
            #expect(try await Self.send(alice, second, ["msgtype": "m.text", "body": "two"], txn: "same").json["event_id"]?.stringValue == b)
            let event = try await alice.call("GET", "/rooms/\(Self.path(second))/event/\(Self.path(b!))")
            #expect(event.json["content"]?["body"] == "two")
            #expect(try await Self.send(alice, first, ["k": "v"], txn: String(repeating: "t", count: 300)).errcode == "M_INVALID_PARAM")
            #expect(try await Self.send(alice, first, ["k": "v"], txn: "x", type: String(repeating: "t", count: 300)).errcode == "M_INVALID_PARAM")
        }
    }

    // Item 17: the old refresh token stays valid until the new tokens are used.
    @Test func refreshSurvivesALostResponse() async throws {
        try await withMyelin { port, _ in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice", extra: ["refresh_token": true])
            let refresh = try #require(reply.json["refresh_token"]?.stringValue)
            let anonymous = try MatrixTestClient(port: port)
            let lost = try await anonymous.call("POST", "/refresh", ["refresh_token": .string(refresh)])
            #expect(lost.status == 200)
            // The response was lost: the client still holds the old tokens, which work.
            #expect(try await alice.call("GET", "/account/whoami").status == 200)
            let again = try await anonymous.call("POST", "/refresh", ["refresh_token": .string(refresh)])
            #expect(again.status == 200)
            let lostToken = try #require(lost.json["access_token"]?.stringValue)
            let token = try #require(again.json["access_token"]?.stringValue)
            #expect(try await alice.call("GET", "/account/whoami", token: lostToken).status == 401)
            #expect(try await alice.call("GET", "/account/whoami", token: token).status == 200)
            // Used: the old tokens are revoked.
            #expect(try await alice.call("GET", "/account/whoami").status == 401)
            #expect(try await anonymous.call("POST", "/refresh", ["refresh_token": .string(refresh)]).status == 401)
            let next = try #require(again.json["refresh_token"]?.stringValue)
            #expect(try await anonymous.call("POST", "/refresh", ["refresh_token": .string(next)]).status == 200)
        }
    }

    // Item 18: guests, aliases, moderators who left, cross-signing replacement, lengths.
    @Test func accessChecks() async throws {
        try await withMyelin({ $0.registration.allowGuests = true }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (mallory, _) = try await MatrixTestClient.registered(port: port, "mallory")
            let (mod, _) = try await MatrixTestClient.registered(port: port, "mod")
            var guest = try MatrixTestClient(port: port)
            guest.token = try await guest.call("POST", "/register?kind=guest", .object([:])).json["access_token"]?.stringValue
            let closed = try await Self.createRoom(alice, ["preset": "public_chat"])
            #expect(try await guest.call("POST", "/join/\(Self.path(closed))").errcode == "M_FORBIDDEN")
            let open = try await Self.createRoom(alice, ["preset": "public_chat", "initial_state": [
                ["type": "m.room.guest_access", "state_key": "", "content": ["guest_access": "can_join"]]]])
            #expect(try await guest.call("POST", "/join/\(Self.path(open))").status == 200)

            #expect(try await mallory.call("PUT", "/directory/room/\(Self.path("#squat:localhost"))",
                                           ["room_id": .string(closed)]).errcode == "M_FORBIDDEN")
            #expect(try await mod.call("POST", "/join/\(Self.path(closed))").status == 200)
            var levels = try await alice.call("GET", "/rooms/\(Self.path(closed))/state/m.room.power_levels").json
            levels["users"]?["@mod:localhost"] = 100
            let promoted = try await alice.call("PUT", "/rooms/\(Self.path(closed))/state/m.room.power_levels", levels)
            #expect(promoted.status == 200, "\(promoted.json)")
            #expect(try await alice.call("PUT", "/directory/room/\(Self.path("#mine:localhost"))", ["room_id": .string(closed)]).status == 200)
            #expect(try await mod.call("POST", "/rooms/\(Self.path(closed))/leave", .object([:])).status == 200)
            #expect(try await mod.call("DELETE", "/directory/room/\(Self.path("#mine:localhost"))").errcode == "M_FORBIDDEN")
            #expect(try await mod.call("PUT", "/directory/list/room/\(Self.path(closed))", ["visibility": "public"]).errcode == "M_FORBIDDEN")

            // Cross-signing: after setup, replacing the self-signing key needs the password.
            let identity = CrossSigningTests.Identity(user: "@alice:localhost")
            let setup = try await alice.call("POST", "/keys/device_signing/upload",
                                             ["master_key": identity.masterJSON, "self_signing_key": try identity.selfSigningJSON()])
            #expect(setup.status == 200)
            let other = try identity.master.sign(CrossSigningTests.Ed25519().crossSigningKey("@alice:localhost", "self_signing"),
                                                 as: "@alice:localhost")
            let replace = try await alice.call("POST", "/keys/device_signing/upload", ["self_signing_key": other])
            #expect(replace.status == 401)
            #expect(try await alice.call("POST", "/keys/device_signing/upload",
                                         ["self_signing_key": try identity.selfSigningJSON()]).status == 200)

            let long = String(repeating: "s", count: 256)
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(closed))/state/m.custom/\(long)", ["k": "v"]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", "/rooms/\(Self.path(closed))/state/\(long)", ["k": "v"]).errcode == "M_INVALID_PARAM")
        }
    }

    // Item 19: floats are refused from room version 6 and stored as hashed before.
    @Test func floatsInEventContent() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let modern = try await Self.createRoom(alice)
            let refused = try await alice.raw.request("PUT", "/_matrix/client/v3/rooms/\(Self.path(modern))/send/m.test/f",
                                                      body: #"{"x":1.5}"#, headers: ["Authorization": "Bearer \(alice.token!)"])
            #expect(refused.status == 400)
            let old = try await Self.createRoom(alice, ["room_version": "5"])
            let sent = try await alice.raw.request("PUT", "/_matrix/client/v3/rooms/\(Self.path(old))/send/m.test/f",
                                                   body: #"{"x":1.0,"y":0.5}"#, headers: ["Authorization": "Bearer \(alice.token!)"])
            #expect(sent.status == 200)
            let id = try #require(try JSON.parse(sent.body)["event_id"]?.stringValue)
            let event = try await alice.raw.request("GET", "/_matrix/client/v3/rooms/\(Self.path(old))/event/\(Self.path(id))",
                                                    headers: ["Authorization": "Bearer \(alice.token!)"])
            let text = String(decoding: event.body, as: UTF8.self)
            #expect(text.contains(#""x":1,"#) || text.contains(#""x":1}"#), "\(text)")
        }
    }

    // Item 21: the first user-interactive-auth challenge has no errcode and no `completed`.
    @Test func firstChallengeIsBare() async throws {
        try await withMyelin { port, _ in
            let anonymous = try MatrixTestClient(port: port)
            let challenge = try await anonymous.call("POST", "/register", ["username": "x", "password": "pw"])
            #expect(challenge.status == 401)
            #expect(challenge.json["errcode"] == nil)
            #expect(challenge.json["completed"] == nil)
            #expect(challenge.json["flows"] != nil && challenge.json["session"] != nil)
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice")
            let device = try #require(reply.json["device_id"]?.stringValue)
            let delete = try await alice.call("DELETE", "/devices/\(device)", .object([:]))
            #expect(delete.status == 401)
            #expect(delete.json["errcode"] == nil)
            let failed = try await alice.call("DELETE", "/devices/\(device)", ["auth": [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"], "password": "wrong"]])
            #expect(failed.status == 401)
            #expect(failed.errcode == "M_FORBIDDEN")
            #expect(failed.json["completed"] == [])
        }
    }
}
