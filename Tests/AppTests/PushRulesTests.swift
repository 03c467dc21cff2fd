import Matrix
import TestSupport
import Testing
@testable import App

/// The push rules API over real sockets on SQLite and PostgreSQL: the spec's semantics and
/// Synapse's answers at the edges, the rules reaching the user's other devices through `/sync`,
/// and unread counts following the user's own rules from the next event on.
@Suite("Push rules API")
struct PushRulesTests {
    static func path(_ text: String) -> String { text.addingPercentEncodingForPath }

    func ruleIDs(_ reply: MatrixTestClient.Reply) -> [String] {
        reply.json.arrayValue?.compactMap { $0["rule_id"]?.stringValue } ?? []
    }

    @Test(arguments: MediaTest.backends)
    func defaultsAreServedAndTheirEnabledAndActionsChange(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let name = MediaTest.uniqueName("alice")
            let (alice, _) = try await MatrixTestClient.registered(port: port, name)
            let all = try await alice.call("GET", "/pushrules/")
            #expect(all.status == 200)
            let global = try #require(all.json["global"])
            for kind in ["override", "content", "room", "sender", "underride"] { #expect(global[kind]?.arrayValue != nil) }
            #expect(global["override"]?[0]?["rule_id"] == ".m.rule.master" && global["override"]?[0]?["enabled"] == false)
            #expect(global["content"]?[0]?["pattern"] == .string(name))
            let invite = global["override"]?.arrayValue?.first { $0["rule_id"] == ".m.rule.invite_for_me" }
            #expect(invite?["conditions"]?[2]?["pattern"] == .string("@\(name):localhost"))
            #expect(try await alice.call("GET", "/pushrules/global/").json == global)
            #expect(ruleIDs(try await alice.call("GET", "/pushrules/global/underride/")).prefix(5)
                == [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"])

            // A default's actions and enabled flag are the user's to change; deleting it is 404 (Synapse).
            let message = "/pushrules/global/underride/.m.rule.message"
            #expect(try await alice.call("PUT", message + "/actions", ["actions": ["notify", ["set_tweak": "highlight"]]]).status == 200)
            #expect(try await alice.call("GET", message + "/actions").json == ["actions": ["notify", ["set_tweak": "highlight"]]])
            #expect(try await alice.call("PUT", message + "/enabled", ["enabled": false]).status == 200)
            #expect(try await alice.call("GET", message + "/enabled").json == ["enabled": false])
            let rule = try await alice.call("GET", message)
            #expect(rule.json["default"] == true && rule.json["enabled"] == false && rule.json["conditions"]?.arrayValue?.count == 1)
            let delete = try await alice.call("DELETE", message)
            #expect(delete.status == 404 && delete.errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", message).status == 200)
            // The master rule stays first whatever the user adds.
            #expect(try await alice.call("PUT", "/pushrules/global/override/.m.rule.master/enabled", ["enabled": true]).status == 200)
            #expect(try await alice.call("PUT", "/pushrules/global/override/mine",
                                         ["conditions": [["kind": "event_match", "key": "type", "pattern": "x.y"]], "actions": []]).status == 200)
            #expect(ruleIDs(try await alice.call("GET", "/pushrules/global/override/")).prefix(3)
                == [".m.rule.master", "mine", ".m.rule.suppress_notices"])
            // Account data shows the same rules and refuses writes (as Synapse).
            let accountData = try await alice.call("GET", "/user/\(Self.path("@\(name):localhost"))/account_data/m.push_rules")
            #expect(accountData.json["global"] == (try await alice.call("GET", "/pushrules/global/").json))
            let write = try await alice.call("PUT", "/user/\(Self.path("@\(name):localhost"))/account_data/m.push_rules", ["global": [:]])
            #expect(write.status == 405 && write.errcode == "M_BAD_JSON")
        }
    }

    @Test(arguments: MediaTest.backends)
    func userRulesAreAddedOrderedAndValidated(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, MediaTest.uniqueName("alice"))
            let notify: JSON = ["actions": ["notify"]]
            func put(_ path: String, _ body: JSON = ["actions": ["notify"]]) async throws -> MatrixTestClient.Reply {
                try await alice.call("PUT", "/pushrules/global/" + path, body)
            }
            #expect(try await put("sender/%40a:x").status == 200)
            #expect(try await put("sender/%40b:x").status == 200)
            #expect(try await put("sender/%40c:x?before=%40a:x").status == 200)
            #expect(try await put("sender/%40d:x?after=%40a:x").status == 200)
            #expect(ruleIDs(try await alice.call("GET", "/pushrules/global/sender/")) == ["@b:x", "@c:x", "@a:x", "@d:x"])
            // Replacing a rule moves it first and keeps it disabled.
            #expect(try await alice.call("PUT", "/pushrules/global/sender/%40a:x/enabled", ["enabled": false]).status == 200)
            #expect(try await put("sender/%40a:x", ["actions": []]).status == 200)
            let a = try await alice.call("GET", "/pushrules/global/sender/%40a:x")
            #expect(a.json == ["rule_id": "@a:x", "default": false, "enabled": false, "actions": []])
            #expect(ruleIDs(try await alice.call("GET", "/pushrules/global/sender/")).first == "@a:x")

            // before/after naming no user rule of the kind: 400 M_UNKNOWN (the spec's example, Synapse).
            let missing = try await put("sender/%40e:x?before=%40nobody:x")
            #expect(missing.status == 400 && missing.errcode == "M_UNKNOWN")
            #expect(try await put("override/x?after=.m.rule.master", ["conditions": [], "actions": []]).status == 400)
            #expect(try await alice.call("GET", "/pushrules/global/sender/%40e:x").status == 404)

            // Content rules need a pattern; override and underride rules need conditions with a kind.
            #expect(try await put("content/cake", ["pattern": "cake*lie", "actions": ["notify"]]).status == 200)
            #expect(try await alice.call("GET", "/pushrules/global/content/cake").json["pattern"] == "cake*lie")
            #expect(try await put("content/nopattern").status == 400)
            #expect(try await put("override/nocond").status == 400)
            #expect(try await put("underride/nokind", ["conditions": [["key": "type"]], "actions": []]).status == 400)
            #expect(try await put("underride/future", ["conditions": [["kind": "org.example.future", "x": 1]], "actions": []]).status == 200)
            #expect(try await alice.call("GET", "/pushrules/global/underride/future").json["conditions"] == [["kind": "org.example.future", "x": 1]])
            // Actions and attributes.
            #expect(try await put("room/%21r:x", ["actions": ["fly"]]).status == 400)
            #expect(try await put("room/%21r:x", .object([:])).status == 400)
            #expect(try await put("room/%21r:x", ["actions": ["dont_notify"]]).status == 200)
            #expect(try await alice.call("PUT", "/pushrules/global/room/%21r:x/enabled", ["enabled": "yes"]).status == 400)
            #expect(try await alice.call("PUT", "/pushrules/global/room/%21r:x/actions", ["actions": "notify"]).status == 400)
            #expect(try await alice.call("GET", "/pushrules/global/room/%21r:x/colour").status == 400)
            // Reserved and malformed ids, kinds and scopes.
            let dotted = try await put("room/.m.rule.mine")
            #expect(dotted.status == 400 && dotted.errcode == "M_INVALID_PARAM")
            #expect(try await put("room/a%5Cb").status == 400)
            #expect(try await put("nokind/x").status == 400)
            #expect(try await alice.call("PUT", "/pushrules/device/room/%21r:x", notify).status == 400)
            #expect(try await alice.call("GET", "/pushrules/global/nokind/").status == 400)
            #expect(try await alice.call("GET", "/pushrules/device/").status == 400)
            // Unknown rules: 404 for every verb.
            for (method, path) in [("GET", "room/%21none:x"), ("DELETE", "room/%21none:x"), ("GET", "room/%21none:x/enabled"),
                                   ("PUT", "room/%21none:x/enabled"), ("PUT", "room/%21none:x/actions")] {
                let body: JSON? = method == "PUT" ? (path.hasSuffix("enabled") ? ["enabled": true] : notify) : nil
                let reply = try await alice.call(method, "/pushrules/global/" + path, body)
                #expect(reply.status == 404 && reply.errcode == "M_NOT_FOUND", "\(method) \(path)")
            }
            #expect(try await alice.call("DELETE", "/pushrules/global/sender/%40b:x").status == 200)
            #expect(try await alice.call("GET", "/pushrules/global/sender/%40b:x").status == 404)
            #expect(try await alice.call("GET", "/pushrules/", token: .some(nil)).status == 401)
        }
    }

    @Test(arguments: MediaTest.backends)
    func changesReachTheUsersOtherDevicesThroughSync(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let name = MediaTest.uniqueName("alice")
            let (phone, _) = try await MatrixTestClient.registered(port: port, name)
            var laptop = try MatrixTestClient(port: port)
            let login = try await laptop.call("POST", "/login", ["type": "m.login.password", "password": "correct horse",
                                                                 "identifier": ["type": "m.id.user", "user": .string(name)]])
            laptop.token = try #require(login.json["access_token"]?.stringValue)
            // An initial sync carries the rules even when none is stored (the defaults, as Synapse).
            let initial = try await laptop.call("GET", "/sync")
            let defaults = initial.json["account_data"]?["events"]?.arrayValue?.first { $0["type"] == "m.push_rules" }
            #expect(defaults?["content"]?["global"]?["override"]?[0]?["rule_id"] == ".m.rule.master")
            #expect(defaults?["content"]?["global"] == (try await laptop.call("GET", "/pushrules/").json["global"]))
            let since = try #require(initial.json["next_batch"]?.stringValue)

            #expect(try await phone.call("PUT", "/pushrules/global/room/%21quiet:localhost", ["actions": []]).status == 200)
            // The laptop's next sync carries the whole rule set (long-poll woken by the change).
            let next = try await laptop.call("GET", "/sync?since=\(since)&timeout=20000")
            let events = next.json["account_data"]?["events"]?.arrayValue ?? []
            let rules = try #require(events.first { $0["type"] == "m.push_rules" })
            #expect(rules["content"]?["global"]?["room"]?[0]?["rule_id"] == "!quiet:localhost")
            #expect(rules["content"]?["global"]?["override"]?[0]?["rule_id"] == ".m.rule.master")
            // Once delivered, it is not sent again.
            let since2 = try #require(next.json["next_batch"]?.stringValue)
            let idle = try await laptop.call("GET", "/sync?since=\(since2)&timeout=0")
            #expect(idle.json["account_data"]?["events"]?.arrayValue?.contains { $0["type"] == "m.push_rules" } != true)
            // A change of `enabled` goes out too.
            #expect(try await phone.call("PUT", "/pushrules/global/room/%21quiet:localhost/enabled", ["enabled": false]).status == 200)
            let third = try await laptop.call("GET", "/sync?since=\(since2)&timeout=20000")
            let changed = third.json["account_data"]?["events"]?.arrayValue?.first { $0["type"] == "m.push_rules" }
            #expect(changed?["content"]?["global"]?["room"]?[0]?["enabled"] == false)
        }
    }

    /// Bob's counts in a room with Alice follow his rules from the next event on.
    @Test(arguments: MediaTest.backends)
    func unreadCountsFollowTheUsersRules(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let aliceName = MediaTest.uniqueName("alice"), bobName = MediaTest.uniqueName("bob")
            let (alice, _) = try await MatrixTestClient.registered(port: port, aliceName)
            let (bob, _) = try await MatrixTestClient.registered(port: port, bobName)
            let room = try #require(try await alice.call("POST", "/createRoom", [
                "preset": "public_chat", "invite": [.string("@\(bobName):localhost")]]).json["room_id"]?.stringValue)
            let roomPath = Self.path(room)
            #expect(try await bob.call("POST", "/rooms/\(roomPath)/join", .object([:])).status == 200)
            var txn = 0
            func send(_ body: String) async throws -> String {
                txn += 1
                return try #require(try await alice.call("PUT", "/rooms/\(roomPath)/send/m.room.message/t\(txn)",
                                                         ["msgtype": "m.text", "body": .string(body)]).json["event_id"]?.stringValue)
            }
            func counts() async throws -> (Int64?, Int64?) {
                let section = try await bob.call("GET", "/sync").json["rooms"]?["join"]?[room]?["unread_notifications"]
                return (section?["notification_count"]?.intValue, section?["highlight_count"]?.intValue)
            }
            func read(_ event: String) async throws {
                #expect(try await bob.call("POST", "/rooms/\(roomPath)/receipt/m.read/\(Self.path(event))", .object([:])).status == 200)
            }
            let rule = "/pushrules/global/room/\(roomPath)"

            // Bob's own invite and join, and Alice's state events, do not count; her message does.
            var last = try await send("one")
            #expect(try await counts() == (1, 0))
            try await read(last)
            #expect(try await counts() == (0, 0))
            // Muted (`dont_notify`, as older clients write it): the next message does not count.
            #expect(try await bob.call("PUT", rule, ["actions": ["dont_notify"]]).status == 200)
            last = try await send("two")
            #expect(try await counts() == (0, 0))
            // Unmuted: the next one counts again.
            #expect(try await bob.call("DELETE", rule).status == 200)
            last = try await send("three")
            #expect(try await counts() == (1, 0))
            // A keyword rule of his highlights.
            #expect(try await bob.call("PUT", "/pushrules/global/content/pizza",
                                       ["pattern": "pizza", "actions": ["notify", ["set_tweak": "highlight"]]]).status == 200)
            last = try await send("Pizza tonight?")
            #expect(try await counts() == (2, 1))
            try await read(last)

            // `room_member_count`: a rule for rooms of exactly two highlights while they are two.
            #expect(try await bob.call("PUT", "/pushrules/global/override/pairs", [
                "conditions": [["kind": "room_member_count", "is": "2"], ["kind": "event_match", "key": "type", "pattern": "m.room.message"]],
                "actions": ["notify", ["set_tweak": "highlight"]]]).status == 200)
            last = try await send("just us")
            #expect(try await counts() == (1, 1))
            try await read(last)
            let (carol, _) = try await MatrixTestClient.registered(port: port, MediaTest.uniqueName("carol"))
            #expect(try await carol.call("POST", "/rooms/\(roomPath)/join", .object([:])).status == 200)
            last = try await send("three of us")
            #expect(try await counts() == (1, 0))
            try await read(last)

            // In a thread, apart when the filter asks (`unread_thread_notifications`).
            let reply = try #require(try await alice.call("PUT", "/rooms/\(roomPath)/send/m.room.message/thread1", [
                "msgtype": "m.text", "body": "pizza in the thread",
                "m.relates_to": ["rel_type": "m.thread", "event_id": .string(last)]]).json["event_id"]?.stringValue)
            let threaded = "filter=%7B%22room%22:%7B%22timeline%22:%7B%22unread_thread_notifications%22:true%7D%7D%7D"
            let split = try await bob.call("GET", "/sync?\(threaded)").json["rooms"]?["join"]?[room]
            #expect(split?["unread_notifications"]?["notification_count"] == 0)
            #expect(split?["unread_thread_notifications"]?[last]?["highlight_count"] == 1)
            #expect(try await counts() == (1, 1))
            try await read(reply)

            // The master rule silences everything.
            #expect(try await bob.call("PUT", "/pushrules/global/override/.m.rule.master/enabled", ["enabled": true]).status == 200)
            last = try await send("anyone? pizza")
            #expect(try await counts() == (0, 0))
        }
    }
}
