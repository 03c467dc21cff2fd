import Matrix
import Testing
import TestSupport
@testable import App

/// The seed's compatibility paths (groups `nonstandard:client`, `nonstandard:e2ee` and `ext:private-chat` of
/// shared/spec/seed_endpoints.json, with the r0 forms issue 21 names) over a running server
/// on SQLite and PostgreSQL: each answers a well-formed authenticated request with something
/// other than 404, and the ones mapped onto a standard handler do its job.
@Suite("Compatibility paths")
struct CompatibilityPathsTests {
    static func p(_ text: String) -> String { HostileInputTests.path(text) }

    static func configureVoIP(_ c: inout Configuration) {
        c.voip.turnUris = ["turn:127.0.0.1:3478?transport=udp"]
        c.voip.turnSharedSecret = "turn-secret"
        c.voip.stunUris = ["stun:127.0.0.1:3478"]
    }

    @Test(arguments: MediaTest.backends)
    func everySeedPathAnswers(_ backend: String) async throws {
        try await MediaTest.withServer(backend, Self.configureVoIP) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let me = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let alias = "compat" + MediaTest.uniqueName("a").replacing("-", with: "")
            let room = try await HostileInputTests.createRoom(alice, ["room_alias_name": .string(alias)])
            let event = try #require(try await HostileInputTests.send(alice, room, ["msgtype": "m.text", "body": "one"], txn: "t1")
                .json["event_id"]?.stringValue)
            let r0 = "/_matrix/client/r0"
            let (u, r, e) = (Self.p(me), Self.p(room), Self.p(event))
            let text: JSON = ["msgtype": "m.text", "body": "two"]
            // (method, path, body): every path of the two groups, and the r0 forms of issue 21.
            var table: [(String, String, JSON?)] = [
                ("GET", "\(r0)/versions", nil),
                ("GET", "\(r0)/account/profile/\(u)", nil),
                ("PUT", "\(r0)/account/profile/\(u)/displayname", ["displayname": "Alice"]),
                ("PUT", "\(r0)/account/profile/\(u)/avatar_url", ["avatar_url": "mxc://localhost/abc"]),
                ("POST", "\(r0)/rooms/\(r)/send/m.room.message", text),
                ("PUT", "\(r0)/rooms/\(r)/redact/\(e)", ["reason": "compat"]),
                ("GET", "\(r0)/user/\(u)/rooms", nil),
                ("GET", "\(r0)/rooms/\(r)/join", nil),
                ("POST", "\(r0)/user_directory/list", ["limit": 5]),
                ("GET", "\(r0)/directory/room/alias/\(Self.p("#\(alias):localhost"))", nil),
                ("GET", "\(r0)/rooms/\(r)/keys/distribution", nil),
                ("GET", "/_matrix/client/v3/voip/turnServer", nil),
                ("GET", "/_matrix/client/v3/voip/config", nil),
                ("GET", "/_matrix/client/v3/voip/turnServer/guest", nil),
                ("GET", "\(r0)/profile/\(u)", nil),
                ("POST", "/_matrix/key/v1/upload", ["one_time_keys": [:]]),
                ("GET", "/_matrix/key/v1/query", nil),
                ("POST", "/_matrix/key/v1/query", ["device_keys": [me: []]]),
                ("DELETE", "/_matrix/key/v1/delete", nil),
                ("POST", "/_matrix/key/v1/keys/upload", [:]),
                ("POST", "/_matrix/key/v1/keys/signatures/upload", [:]),
                ("GET", "/_matrix/key/v1/keys/\(u)", nil),
            ]
            // The seed's private chat paths (group ext:private-chat), on a session with bob.
            let bob = try await MediaTest.user(port, "bob")
            let bobID = try #require(try await bob.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let chat = "/_synapse/enhanced/private_chat/sessions"
            let session = try #require(try await alice.call("POST", chat, ["user_id": .string(bobID)]).json["session_id"]?.stringValue)
            table += [
                ("GET", chat, nil),
                ("GET", "\(chat)/\(session)", nil),
                ("POST", "\(chat)/\(session)/messages", ["body": "three"]),
                ("GET", "\(chat)/\(session)/messages", nil),
                ("PUT", "\(chat)/\(session)/read", [:]),
                ("DELETE", "\(chat)/\(session)", nil),
                ("POST", chat, ["user_id": .string(bobID)]),
            ]
            for (method, path, body) in table {
                let reply = try await alice.call(method, path, body)
                #expect(reply.status == 200, "\(method) \(path): \(reply.status) \(reply.json)")
            }
            // The refresh path answers too (a refresh token from a refreshable login).
            let name = String(me.dropFirst().prefix { $0 != ":" })
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": .string(name)],
                                                                "password": "correct horse", "refresh_token": true])
            let refreshToken = try #require(login.json["refresh_token"]?.stringValue, "\(login.json)")
            let refreshed = try await alice.call("POST", "\(r0)/refresh", ["refresh_token": .string(refreshToken)], token: .some(nil))
            #expect(refreshed.status == 200 && refreshed.json["access_token"]?.stringValue != nil, "\(refreshed.json)")
        }
    }

    /// The mapped paths do what their standard handlers do.
    @Test(arguments: MediaTest.backends)
    func mappedPathsBehaveAsTheirStandardHandlers(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let bob = try await MediaTest.user(port, "bob")
            let me = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let bobID = try #require(try await bob.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let r0 = "/_matrix/client/r0"
            let room = try await HostileInputTests.createRoom(alice, ["preset": "public_chat"])
            let r = Self.p(room)

            // A server-made transaction: two identical POSTs are two events.
            let first = try await alice.call("POST", "\(r0)/rooms/\(r)/send/m.room.message", ["msgtype": "m.text", "body": "same"])
            let second = try await alice.call("POST", "\(r0)/rooms/\(r)/send/m.room.message", ["msgtype": "m.text", "body": "same"])
            let firstID = try #require(first.json["event_id"]?.stringValue)
            #expect(second.json["event_id"]?.stringValue != nil && second.json["event_id"]?.stringValue != firstID)

            // PUT redact without a transaction id redacts.
            let redaction = try await alice.call("PUT", "\(r0)/rooms/\(r)/redact/\(Self.p(firstID))", ["reason": "gone"])
            #expect(redaction.status == 200 && redaction.json["event_id"]?.stringValue != nil, "\(redaction.json)")
            let redacted = try await alice.call("GET", "/rooms/\(r)/event/\(Self.p(firstID))")
            #expect(redacted.json["content"]?["body"] == nil && redacted.json["unsigned"]?["redacted_because"] != nil, "\(redacted.json)")

            // The profile under /account/profile is the profile.
            #expect(try await alice.call("PUT", "\(r0)/account/profile/\(Self.p(me))/displayname", ["displayname": "Alice A"]).status == 200)
            #expect(try await bob.call("GET", "/profile/\(Self.p(me))").json["displayname"]?.stringValue == "Alice A")
            #expect(try await alice.call("GET", "\(r0)/account/profile/\(Self.p(me))").json["displayname"]?.stringValue == "Alice A")
            // ... and only one's own is writable.
            #expect(try await bob.call("PUT", "\(r0)/account/profile/\(Self.p(me))/displayname", ["displayname": "x"]).status == 403)

            // GET /rooms/{roomId}/join: the membership, no join.
            let before = try await bob.call("GET", "\(r0)/rooms/\(r)/join")
            #expect(before.status == 200 && before.json["membership"]?.stringValue == "leave", "\(before.json)")
            #expect(try await bob.call("GET", "\(r0)/user/\(Self.p(bobID))/rooms").json["joined"] == .array([]))
            #expect(try await bob.call("POST", "\(r0)/rooms/\(r)/join", [:]).status == 200)
            #expect(try await bob.call("GET", "\(r0)/rooms/\(r)/join").json["membership"]?.stringValue == "join")
            #expect(try await bob.call("GET", "\(r0)/user/\(Self.p(bobID))/rooms").json["joined"] == .array([.string(room)]))

            // user_directory/list pages through the users bob can see (alice and bob share the room).
            let page1 = try await bob.call("POST", "\(r0)/user_directory/list", ["limit": 1])
            let token = try #require(page1.json["next_batch"]?.stringValue, "\(page1.json)")
            let page2 = try await bob.call("POST", "\(r0)/user_directory/list", ["limit": 1, "from": .string(token)])
            let listed = Set(((page1.json["results"]?.arrayValue ?? []) + (page2.json["results"]?.arrayValue ?? [])).compactMap { $0["user_id"]?.stringValue })
            #expect(listed == [me, bobID], "\(page1.json) \(page2.json)")
            #expect(try await bob.call("POST", "\(r0)/user_directory/list", ["from": "x"]).errcode == "M_INVALID_PARAM")

            // r0/versions is the versions document.
            let versions = try await alice.call("GET", "\(r0)/versions", token: .some(nil))
            #expect(versions.json["versions"]?.arrayValue?.contains(.string("v1.11")) == true)
        }
    }
}
