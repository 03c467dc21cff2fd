import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

/// Endpoints added for SyTest (docs/sytest.md), over real sockets: push rules, key backups,
/// pushers, registration sessions, whois.
@Suite("SyTest-driven endpoints")
struct SyTestFixesTests {
    @Test func pushRulesAreListedAddedOrderedAndDeleted() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let all = try await alice.call("GET", "/pushrules/")
            #expect(all.json["global"]?["override"]?[0]?["rule_id"] == ".m.rule.master")
            let rule: JSON = ["actions": ["notify"]]
            #expect(try await alice.call("PUT", "/pushrules/global/room/%23a:x", rule).status == 200)
            #expect(try await alice.call("PUT", "/pushrules/global/room/%23b:x", rule).status == 200)
            #expect(try await alice.call("PUT", "/pushrules/global/room/%23c:x?after=%23b:x", rule).status == 200)
            let room = try await alice.call("GET", "/pushrules/global/room/")
            #expect(room.json.arrayValue?.compactMap { $0["rule_id"]?.stringValue } == ["#b:x", "#c:x", "#a:x"])
            #expect(try await alice.call("PUT", "/pushrules/global/room/%23a:x/enabled", ["enabled": false]).status == 200)
            #expect(try await alice.call("GET", "/pushrules/global/room/%23a:x/enabled").json["enabled"] == false)
            #expect(try await alice.call("PUT", "/pushrules/global/room/.m.x", rule).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", "/pushrules/global/room/%23d:x", ["actions": ["fly"]]).status == 400)
            #expect(try await alice.call("DELETE", "/pushrules/global/override/.m.rule.master").status == 404)  // as Synapse
            #expect(try await alice.call("DELETE", "/pushrules/global/room/%23a:x").status == 200)
            #expect(try await alice.call("GET", "/pushrules/global/room/%23a:x").status == 404)
            #expect(try await alice.call("GET", "/pushrules/global/nokind/x").status == 400)
            // Without the trailing slash: 404 for the root, 400 below it (as Synapse).
            #expect(try await alice.call("GET", "/pushrules").status == 404)
            #expect(try await alice.call("GET", "/pushrules/global").status == 400)
            #expect(try await alice.call("GET", "/pushrules/global/").json["room"] != nil)
            #expect(try await alice.call("PUT", "/pushrules/global/override/x", rule).status == 400)  // no conditions
        }
    }

    @Test func readReceiptsOnlyMoveForwardAndShowInInitialSync() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            let path = "/rooms/" + room.replacingOccurrences(of: "!", with: "%21")
            let first = try #require(try await alice.call("PUT", path + "/send/m.room.message/t1", ["body": "1"]).json["event_id"]?.stringValue)
            let second = try #require(try await alice.call("PUT", path + "/send/m.room.message/t2", ["body": "2"]).json["event_id"]?.stringValue)
            #expect(try await alice.call("POST", path + "/receipt/m.read/" + second, .object([:])).status == 200)
            // An earlier event does not move the receipt back.
            #expect(try await alice.call("POST", path + "/receipt/m.read/" + first, .object([:])).status == 200)
            let receipts = try await alice.call("GET", "/initialSync").json["receipts"]?.arrayValue ?? []
            #expect(receipts.contains { $0["room_id"]?.stringValue == room && $0["content"]?[second]?["m.read"]?["@alice:localhost"] != nil })
            #expect(!receipts.contains { $0["content"]?[first] != nil })
        }
    }

    @Test func v1MembershipAnswersAreWrapped() throws {
        let wrapped = FederationV1Membership.wrapped(.json(["a": 1]))
        guard case .bytes(let bytes) = wrapped.body else { Issue.record("not bytes"); return }
        #expect(try JSON.parse(bytes) == [200, ["a": 1]])
        // Errors pass through unchanged.
        let error = FederationV1Membership.wrapped(.json(["errcode": "M_FORBIDDEN"], status: 403))
        #expect(error.status == 403)
        guard case .bytes(let errorBytes) = error.body else { Issue.record("not bytes"); return }
        #expect(try JSON.parse(errorBytes)["errcode"] == "M_FORBIDDEN")
    }

    @Test func keyBackupVersionsAndKeys() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            #expect(try await alice.call("GET", "/room_keys/version").errcode == "M_NOT_FOUND")
            // auth_data is an object (the specification's schema); anything else is M_BAD_JSON.
            for bad: JSON in ["opaque", [JSON.null, JSON.null], 3] {
                #expect(try await alice.call("POST", "/room_keys/version", ["algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": bad]).errcode == "M_BAD_JSON")
            }
            // The algorithm is the specification's one; anything else is M_BAD_JSON.
            #expect(try await alice.call("POST", "/room_keys/version", ["algorithm": "AAA", "auth_data": ["k": 1]]).errcode == "M_BAD_JSON")
            let body: JSON = ["algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": ["k": 1]]
            let first = try #require(try await alice.call("POST", "/room_keys/version", body).json["version"]?.stringValue)
            let second = try #require(try await alice.call("POST", "/room_keys/version", body).json["version"]?.stringValue)
            let key: JSON = ["first_message_index": 1, "forwarded_count": 0, "is_verified": false, "session_data": ["c": "x"]]
            // Only the current version takes keys.
            let stale = try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=\(first)", key)
            #expect(stale.errcode == "M_WRONG_ROOM_KEYS_VERSION")
            #expect(stale.json["current_version"]?.stringValue == second)
            let stored = try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=\(second)", key)
            #expect(stored.json["count"] == 1)
            #expect(try await alice.call("GET", "/room_keys/keys/!r:x/s?version=\(second)").json["session_data"] == ["c": "x"])
            #expect(try await alice.call("GET", "/room_keys/keys?version=\(second)").json["rooms"]?["!r:x"]?["sessions"]?["s"] != nil)
            #expect(try await alice.call("GET", "/room_keys/keys/!r:x/t?version=\(second)").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=\(second)", ["is_verified": 1]).status == 400)
            #expect(try await alice.call("DELETE", "/room_keys/version/\(second)").status == 200)
            #expect(try await alice.call("GET", "/room_keys/version").json["version"]?.stringValue == first)
        }
    }

    @Test func pushersAndRegistrationSessionsAndWhois() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let pusher: JSON = ["app_id": "a", "pushkey": "k", "kind": "http", "app_display_name": "A", "device_display_name": "D",
                                "lang": "en", "data": ["url": "https://push.example/_matrix/push/v1/notify"]]
            #expect(try await alice.call("POST", "/pushers/set", pusher).status == 200)
            #expect(try await alice.call("GET", "/pushers").json["pushers"]?[0]?["pushkey"] == "k")
            #expect(try await alice.call("POST", "/pushers/set", ["app_id": "a", "pushkey": "k", "kind": .null]).status == 200)
            #expect(try await alice.call("GET", "/pushers").json["pushers"] == [])

            // A registration session remembers the first request and answers its account again.
            let anonymous = try MatrixTestClient(port: port)
            let challenge = try await anonymous.call("POST", "/register", ["username": "Bob", "password": "secret pass"], token: .some(nil))
            let session = try #require(challenge.json["session"]?.stringValue)
            let auth: JSON = ["auth": ["type": "m.login.dummy", "session": .string(session)]]
            let done = try await anonymous.call("POST", "/register", auth, token: .some(nil))
            #expect(done.json["user_id"] == "@bob:localhost")
            #expect(try await anonymous.call("POST", "/register", auth, token: .some(nil)).json["user_id"] == "@bob:localhost")

            let whois = try await alice.call("GET", "/admin/whois/@alice:localhost")
            #expect(whois.json["user_id"] == "@alice:localhost")
            // Connection fields are strings when known and absent otherwise, never null.
            for device in whois.json["devices"]?.objectValue?.values ?? [:].values {
                for session in device["sessions"]?.arrayValue ?? [] {
                    for connection in session["connections"]?.arrayValue ?? [] {
                        #expect(!(connection.objectValue ?? [:]).values.contains(.null))
                    }
                }
            }
            #expect(try await alice.call("GET", "/admin/whois/@bob:localhost").status == 403)
        }
    }
}
