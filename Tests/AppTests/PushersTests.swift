import Matrix
import Persistence
import Testing
@testable import App

/// Pushers and notifications end to end (docs/push.md, "Pushers and notifications"): a real
/// server on SQLite and on PostgreSQL (when the environment has one), a push gateway on
/// 127.0.0.1 started by the test, clients over sockets.
@Suite("Pushers and notifications")
struct PushersTests {
    struct User {
        var client: MatrixTestClient
        var id: String
    }

    static func user(_ port: Int, _ base: String) async throws -> User {
        let (client, reply) = try await MatrixTestClient.registered(port: port, MediaTest.uniqueName(base))
        let id = try #require(reply.json["user_id"]?.stringValue, "registration failed: \(reply.json)")
        return User(client: client, id: id)
    }

    static func withServer(_ backend: String, _ body: (MyelinServer, Int) async throws -> Void) async throws {
        try await MediaTest.withServer(backend, configure, body)
    }

    /// Fast retries: the tests wait for a gateway that comes back.
    static func configure(_ configuration: inout Configuration) {
        configuration.push.backoffInitialMs = 100
        configuration.push.backoffMaxMs = 2_000
    }

    static func pusher(_ port: Int, pushkey: String, data: [String: JSON] = [:], append: Bool = false) -> JSON {
        var data = data
        data["url"] = .string("http://127.0.0.1:\(port)/_matrix/push/v1/notify")
        return ["app_id": "org.example.app", "pushkey": .string(pushkey), "kind": "http", "app_display_name": "Example",
                "device_display_name": "Phone", "lang": "en", "data": .object(data), "append": .bool(append)]
    }

    /// A room `alice` created with `bob` joined.
    static func sharedRoom(_ alice: User, _ bob: User) async throws -> String {
        let created = try await alice.client.call("POST", "/createRoom", ["invite": [.string(bob.id)]])
        let room = try #require(created.json["room_id"]?.stringValue)
        #expect(try await bob.client.call("POST", "/join/\(room)", [:]).status == 200)
        return room
    }

    static func send(_ user: User, _ room: String, _ content: JSON) async throws -> String {
        let reply = try await user.client.call("PUT", "/rooms/\(room)/send/m.room.message/t\(UInt64.random(in: 0...UInt64.max))", content)
        return try #require(reply.json["event_id"]?.stringValue, "send failed: \(reply.json)")
    }

    static func text(_ body: String) -> JSON { ["msgtype": "m.text", "body": .string(body)] }

    /// The user's notifications once at least `count` are recorded (the pipeline runs after
    /// the send returns).
    static func notifications(_ user: User, atLeast count: Int, query: String = "") async throws -> [JSON] {
        var last: [JSON] = []
        for _ in 0..<1200 {
            last = try await user.client.call("GET", "/notifications\(query)").json["notifications"]?.arrayValue ?? []
            if last.count >= count { return last }
            try await Task.sleep(for: .milliseconds(50))
        }
        return last
    }

    @Test(arguments: MediaTest.backends)
    func gatewayGetsOneNotificationPerMessageWithCounts(backend: String) async throws {
        try await withPushGateway { gateway, gatewayPort in
            try await Self.withServer(backend) { _, port in
                let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
                let room1 = try await Self.sharedRoom(alice, bob)
                // The invite is recorded for bob (`.m.rule.invite_for_me`) before his pusher exists.
                #expect(try await Self.notifications(bob, atLeast: 1).count == 1)
                #expect(try await bob.client.call("POST", "/pushers/set",
                                                  Self.pusher(gatewayPort, pushkey: "pk-bob", data: ["extra": "x"])).status == 200)
                let m1 = try await Self.send(alice, room1, Self.text("one"))
                let m2 = try await Self.send(alice, room1, Self.text("two"))
                _ = try await gateway.waitFor(2)
                let created = try await alice.client.call("POST", "/createRoom", ["invite": [.string(bob.id)]])
                let room2 = try #require(created.json["room_id"]?.stringValue)
                _ = try await gateway.waitFor(3)
                #expect(try await bob.client.call("POST", "/join/\(room2)", [:]).status == 200)
                let m3 = try await Self.send(alice, room2, Self.text("three"))
                _ = try await gateway.waitFor(4)
                // Room 1 read: the badge counts room 2 only.
                #expect(try await bob.client.call("POST", "/rooms/\(room1)/receipt/m.read/\(m2)", [:]).status == 200)
                let m4 = try await Self.send(alice, room2, Self.text("four"))
                let got = try await gateway.waitFor(5)
                // Five notifications, one per event, in order; nothing for bob's own join.
                #expect(got.count == 5)
                #expect(got.map { $0["room_id"]?.stringValue } == [room1, room1, room2, room2, room2])
                #expect(got.map { $0["event_id"]?.stringValue }.enumerated().filter { $0.offset != 2 }.map(\.element)
                        == [m1, m2, m3, m4])
                #expect(got.map { $0["counts"]?["unread"]?.intValue } == [1, 1, 2, 2, 1])
                let first = got[0]
                #expect(first["type"] == "m.room.message")
                #expect(first["sender"]?.stringValue == alice.id)
                #expect(first["content"]?["body"] == "one")
                // Two members: `.m.rule.room_one_to_one` sounds, so the priority is high.
                #expect(first["prio"] == "high")
                let device = try #require(first["devices"]?[0])
                #expect(device["app_id"] == "org.example.app")
                #expect(device["pushkey"] == "pk-bob")
                #expect((device["pushkey_ts"]?.intValue ?? 0) > 1_000_000_000)
                #expect(device["data"] == ["extra": "x"])
                #expect(device["tweaks"]?["sound"] == "default")
                let invite = got[2]
                #expect(invite["type"] == "m.room.member")
                #expect(invite["membership"] == "invite")
                #expect(invite["user_is_target"] == true)
                // Another message to alice's room from bob: alice has no pusher, the gateway hears nothing more.
                _ = try await Self.send(bob, room2, Self.text("reply"))
                _ = try await Self.send(alice, room2, Self.text("five"))
                #expect(try await gateway.waitFor(6).count == 6)
                #expect(gateway.notifications.count == 6)
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func rulesSetThroughTheAPIDecideTheNextEvents(backend: String) async throws {
        try await withPushGateway { gateway, gatewayPort in
            try await Self.withServer(backend) { _, port in
                let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
                let muted = try await Self.sharedRoom(alice, bob)
                let open = try await Self.sharedRoom(alice, bob)
                _ = try await Self.notifications(bob, atLeast: 2)
                #expect(try await bob.client.call("POST", "/pushers/set", Self.pusher(gatewayPort, pushkey: "pk")).status == 200)
                let plain = try await Self.send(alice, open, Self.text("a banana split"))
                var got = try await gateway.waitFor(1)
                #expect(got.last?["event_id"]?.stringValue == plain)
                #expect(got.last?["devices"]?[0]?["tweaks"]?["highlight"] == nil)
                // A content rule: the next banana highlights.
                let rule: JSON = ["pattern": "banana", "actions": ["notify", ["set_tweak": "highlight"]]]
                #expect(try await bob.client.call("PUT", "/pushrules/global/content/bananas", rule).status == 200)
                let highlighted = try await Self.send(alice, open, Self.text("another banana"))
                got = try await gateway.waitFor(2)
                #expect(got.last?["event_id"]?.stringValue == highlighted)
                #expect(got.last?["devices"]?[0]?["tweaks"]?["highlight"] == true)
                #expect(got.last?["prio"] == "high")
                // A muted room (a room rule that does not notify, `dont_notify`): nothing for it.
                #expect(try await bob.client.call("PUT", "/pushrules/global/room/\(muted)", ["actions": ["dont_notify"]]).status == 200)
                let silent = try await Self.send(alice, muted, Self.text("nobody hears this"))
                let after = try await Self.send(alice, open, Self.text("but this"))
                got = try await gateway.waitFor(3)
                #expect(got.map { $0["event_id"]?.stringValue } == [plain, highlighted, after])
                #expect(!got.contains { $0["event_id"]?.stringValue == silent })
                // `@room` from the room's creator (power to notify the room: `sender_notification_permission`).
                let roomMention = try await Self.send(alice, open, Self.text("@room look"))
                got = try await gateway.waitFor(4)
                #expect(got.last?["event_id"]?.stringValue == roomMention)
                #expect(got.last?["devices"]?[0]?["tweaks"]?["highlight"] == true)
                let listed = try await Self.notifications(bob, atLeast: 6).compactMap { $0["event"]?["event_id"]?.stringValue }
                #expect(!listed.contains(silent))
                #expect(try await bob.client.call("GET", "/notifications?only=highlight").json["notifications"]?.arrayValue?
                    .map { $0["event"]?["event_id"]?.stringValue } == [roomMention, highlighted])
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func eventIDOnlyFormatAndRejectedPushkeyRemovesThePusher(backend: String) async throws {
        try await withPushGateway { gateway, gatewayPort in
            gateway.behaviour.withLock { $0.rejected = ["pk-gone"] }
            try await Self.withServer(backend) { _, port in
                let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
                let room = try await Self.sharedRoom(alice, bob)
                _ = try await Self.notifications(bob, atLeast: 1)
                let set = Self.pusher(gatewayPort, pushkey: "pk-gone", data: ["format": "event_id_only"])
                #expect(try await bob.client.call("POST", "/pushers/set", set).status == 200)
                #expect(try await bob.client.call("GET", "/pushers").json["pushers"]?.arrayValue?.count == 1)
                let m1 = try await Self.send(alice, room, Self.text("secret"))
                let got = try await gateway.waitFor(1)
                #expect(got.first?["event_id"]?.stringValue == m1)
                #expect(got.first?["room_id"]?.stringValue == room)
                #expect(got.first?["counts"]?["unread"] == 1)
                #expect(got.first?["devices"]?[0]?["data"] == ["format": "event_id_only"])
                for key in ["type", "sender", "content", "sender_display_name"] { #expect(got.first?[key] == nil) }
                // The gateway rejected the push key: the pusher goes.
                var pushers: [JSON]? = nil
                for _ in 0..<1200 {
                    pushers = try await bob.client.call("GET", "/pushers").json["pushers"]?.arrayValue
                    if pushers?.isEmpty == true { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(pushers == [])
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func gatewayDownThenUpIsDeliveredAfterRetries(backend: String) async throws {
        let gatewayPort = freePort()
        try await Self.withServer(backend) { server, port in
            let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
            let room = try await Self.sharedRoom(alice, bob)
            _ = try await Self.notifications(bob, atLeast: 1)
            #expect(try await bob.client.call("POST", "/pushers/set", Self.pusher(gatewayPort, pushkey: "pk")).status == 200)
            let deliveries = server.app.roomService.push.deliveries
            let failedBefore = deliveries.failed
            let m1 = try await Self.send(alice, room, Self.text("while down"))
            // Nothing listens: attempts fail (and are retried with backoff).
            for _ in 0..<1200 where deliveries.failed < failedBefore + 2 { try await Task.sleep(for: .milliseconds(50)) }
            #expect(deliveries.failed >= failedBefore + 2)
            let gateway = PushGatewayResponder()
            gateway.behaviour.withLock { $0.failNext = 1 }  // one more failure: a 503
            try await withPushGateway(gateway, port: gatewayPort) { _ in
                let got = try await gateway.waitFor(1)
                #expect(got.first?["event_id"]?.stringValue == m1)
                let m2 = try await Self.send(alice, room, Self.text("back up"))
                #expect(try await gateway.waitFor(2).map { $0["event_id"]?.stringValue } == [m1, m2])
                #expect(gateway.requests.load(ordering: .relaxed) >= 3)
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func pushersGoWithTheirDevice(backend: String) async throws {
        try await withPushGateway { gateway, gatewayPort in
            try await Self.withServer(backend) { _, port in
                let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
                let room = try await Self.sharedRoom(alice, bob)
                _ = try await Self.notifications(bob, atLeast: 1)
                let localpart = String(bob.id.dropFirst().prefix { $0 != ":" })
                func login() async throws -> MatrixTestClient {
                    var client = try MatrixTestClient(port: port)
                    let reply = try await client.call("POST", "/login", ["type": "m.login.password", "password": "correct horse",
                                                                        "identifier": ["type": "m.id.user", "user": .string(localpart)]])
                    client.token = try #require(reply.json["access_token"]?.stringValue)
                    return client
                }
                #expect(try await bob.client.call("POST", "/pushers/set", Self.pusher(gatewayPort, pushkey: "stay")).status == 200)
                let second = try await login()
                #expect(try await second.call("POST", "/pushers/set", Self.pusher(gatewayPort, pushkey: "logout")).status == 200)
                let third = try await login()
                let thirdDevice = try #require(try await third.call("GET", "/account/whoami").json["device_id"]?.stringValue)
                #expect(try await third.call("POST", "/pushers/set", Self.pusher(gatewayPort, pushkey: "deleted")).status == 200)
                func pushkeys() async throws -> Set<String> {
                    Set(try await bob.client.call("GET", "/pushers").json["pushers"]?.arrayValue?.compactMap { $0["pushkey"]?.stringValue } ?? [])
                }
                #expect(try await pushkeys() == ["stay", "logout", "deleted"])
                #expect(try await second.call("POST", "/logout", [:]).status == 200)
                #expect(try await pushkeys() == ["stay", "deleted"])
                let auth: JSON = ["auth": ["type": "m.login.password", "password": "correct horse",
                                           "identifier": ["type": "m.id.user", "user": .string(localpart)]]]
                #expect(try await bob.client.call("DELETE", "/devices/\(thirdDevice)", auth).status == 200)
                #expect(try await pushkeys() == ["stay"])
                // Only the remaining pusher hears of the next messages.
                _ = try await Self.send(alice, room, Self.text("one"))
                _ = try await Self.send(alice, room, Self.text("two"))
                let got = try await gateway.waitFor(2)
                #expect(got.count == 2)
                #expect(got.allSatisfy { $0["devices"]?[0]?["pushkey"] == "stay" })
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func notificationsArePagedFilteredAndMarkedRead(backend: String) async throws {
        try await Self.withServer(backend) { _, port in
            let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
            let room = try await Self.sharedRoom(alice, bob)
            var sent: [String] = []
            for index in 1...5 {
                var content: [String: JSON] = ["msgtype": "m.text", "body": .string("message \(index)")]
                if index % 2 == 0 { content["m.mentions"] = ["user_ids": [.string(bob.id)]] }
                sent.append(try await Self.send(alice, room, .object(content)))
            }
            let all = try await Self.notifications(bob, atLeast: 6, query: "?limit=100")
            #expect(all.count == 6)  // the five messages and the invite
            #expect(Array(all.prefix(5)).map { $0["event"]?["event_id"]?.stringValue } == sent.reversed())
            #expect(all.allSatisfy { $0["room_id"]?.stringValue == room && $0["ts"]?.intValue != nil && $0["read"] == false })
            #expect(all[1]["actions"]?.arrayValue?.contains(["set_tweak": "highlight"]) == true)
            // Pages of two, newest first, until the token runs out.
            var pages: [[String?]] = []
            var from: String? = nil
            repeat {
                let reply = try await bob.client.call("GET", "/notifications?limit=2" + (from.map { "&from=\($0)" } ?? ""))
                pages.append(reply.json["notifications"]?.arrayValue?.map { $0["event"]?["event_id"]?.stringValue } ?? [])
                from = reply.json["next_token"]?.stringValue
            } while from != nil && pages.count < 10
            #expect(pages.flatMap { $0 } == all.map { $0["event"]?["event_id"]?.stringValue })
            #expect(pages.count == 4)  // 2 + 2 + 2, then an empty page without a token
            let highlights = try await bob.client.call("GET", "/notifications?only=highlight").json["notifications"]?.arrayValue
            #expect(highlights?.map { $0["event"]?["event_id"]?.stringValue } == [sent[3], sent[1]])
            // A read receipt at the third message: it and the older ones read.
            #expect(try await bob.client.call("POST", "/rooms/\(room)/receipt/m.read/\(sent[2])", [:]).status == 200)
            let after = try await bob.client.call("GET", "/notifications").json["notifications"]?.arrayValue ?? []
            #expect(after.map { $0["read"]?.boolValue } == [false, false, true, true, true, true])
            // Alice sent them: she has no notifications of her own messages.
            #expect(try await alice.client.call("GET", "/notifications").json["notifications"] == [])
            #expect(try await bob.client.call("GET", "/notifications?from=abc").errcode == "M_INVALID_PARAM")
            #expect(try await bob.client.call("GET", "/notifications?limit=-1").errcode == "M_INVALID_PARAM")
        }
    }

    /// The pipeline's members come from the room actor's cache (`PushMembers`), kept until a
    /// member event: a display name changed after messages were evaluated decides the next
    /// ones, and a member who joined later is evaluated from their first message on.
    @Test(arguments: MediaTest.backends)
    func memberChangesReachThePushRulesOfTheNextEvents(backend: String) async throws {
        try await Self.withServer(backend) { _, port in
            let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
            let room = try await Self.sharedRoom(alice, bob)
            let first = try await Self.send(alice, room, Self.text("hello Robert"))
            // The invite and the first message, which names no one bob is yet.
            let before = try await Self.notifications(bob, atLeast: 2)
            #expect(before.first?["event"]?["event_id"]?.stringValue == first)
            #expect(before.first?["actions"]?.arrayValue?.contains(["set_tweak": "highlight"]) == false)
            #expect(try await bob.client.call("PUT", "/profile/\(bob.id)/displayname", ["displayname": "Robert"]).status == 200)
            let carol = try await Self.user(port, "carol")
            #expect(try await alice.client.call("POST", "/rooms/\(room)/invite", ["user_id": .string(carol.id)]).status == 200)
            #expect(try await carol.client.call("POST", "/join/\(room)", [:]).status == 200)
            let second = try await Self.send(alice, room, Self.text("hello Robert"))
            let after = try await Self.notifications(bob, atLeast: 3)
            #expect(after.first?["event"]?["event_id"]?.stringValue == second)
            #expect(after.first?["actions"]?.arrayValue?.contains(["set_tweak": "highlight"]) == true)
            let carols = try await Self.notifications(carol, atLeast: 2)
            #expect(carols.first?["event"]?["event_id"]?.stringValue == second)
        }
    }

    @Test func pusherValidationAndAppend() async throws {
        try await withMyelin { port, _ in
            let alice = try await Self.user(port, "alice"), bob = try await Self.user(port, "bob")
            var email = Self.pusher(9, pushkey: "a@example.org")
            email["kind"] = "email"
            let refused = try await alice.client.call("POST", "/pushers/set", email)
            #expect(refused.status == 400)
            #expect(refused.errcode == "M_THREEPID_NOT_FOUND")
            var noURL = Self.pusher(9, pushkey: "k")
            noURL["data"] = [:]
            #expect(try await alice.client.call("POST", "/pushers/set", noURL).errcode == "M_MISSING_PARAM")
            for url in ["http://127.0.0.1:9/notify", "ftp://x/_matrix/push/v1/notify", "not a url",
                        "https://push.example/_matrix/push/v1/notify/extra"] {
                var bad = Self.pusher(9, pushkey: "k")
                bad["data"] = ["url": .string(url)]
                #expect(try await alice.client.call("POST", "/pushers/set", bad).errcode == "M_INVALID_PARAM", "\(url)")
            }
            var longApp = Self.pusher(9, pushkey: "k")
            longApp["app_id"] = .string(String(repeating: "a", count: 65))
            #expect(try await alice.client.call("POST", "/pushers/set", longApp).errcode == "M_INVALID_PARAM")
            let longKey = Self.pusher(9, pushkey: String(repeating: "k", count: 513))
            #expect(try await alice.client.call("POST", "/pushers/set", longKey).errcode == "M_INVALID_PARAM")
            var unknownKind = Self.pusher(9, pushkey: "k")
            unknownKind["kind"] = "sms"
            #expect(try await alice.client.call("POST", "/pushers/set", unknownKind).errcode == "M_INVALID_PARAM")
            var noLang = Self.pusher(9, pushkey: "k")
            noLang["lang"] = nil
            #expect(try await alice.client.call("POST", "/pushers/set", noLang).errcode == "M_MISSING_PARAM")

            // The same app id and push key: without append, the other user's pusher goes.
            #expect(try await alice.client.call("POST", "/pushers/set", Self.pusher(9, pushkey: "shared")).status == 200)
            let listed = try await alice.client.call("GET", "/pushers").json["pushers"]?[0]
            #expect(listed?["kind"] == "http")
            #expect(listed?["app_display_name"] == "Example")
            #expect(listed?["device_display_name"] == "Phone")
            #expect(listed?["lang"] == "en")
            #expect(listed?["data"]?["url"] == "http://127.0.0.1:9/_matrix/push/v1/notify")
            #expect(try await bob.client.call("POST", "/pushers/set", Self.pusher(9, pushkey: "shared")).status == 200)
            #expect(try await alice.client.call("GET", "/pushers").json["pushers"] == [])
            #expect(try await alice.client.call("POST", "/pushers/set", Self.pusher(9, pushkey: "shared", append: true)).status == 200)
            #expect(try await alice.client.call("GET", "/pushers").json["pushers"]?.arrayValue?.count == 1)
            #expect(try await bob.client.call("GET", "/pushers").json["pushers"]?.arrayValue?.count == 1)
            // Deletion with kind null.
            #expect(try await bob.client.call("POST", "/pushers/set", ["app_id": "org.example.app", "pushkey": "shared",
                                                                       "kind": .null]).status == 200)
            #expect(try await bob.client.call("GET", "/pushers").json["pushers"] == [])
        }
    }
}
