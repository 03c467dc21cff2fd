import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

@Suite("Account management, presence, filters, capabilities and the user directory over real sockets")
struct AccountManagementTests {
    static let passwordAuth: JSON = ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"],
                                     "password": "old password"]

    @Test func changePasswordLogsOutOtherDevices() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice", password: "old password")
            let other = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice",
                                                                "password": "old password"])
            let otherToken = try #require(other.json["access_token"]?.stringValue)
            #expect(try await alice.call("GET", "/account/whoami", token: otherToken).status == 200)

            let challenge = try await alice.call("POST", "/account/password", ["new_password": "new password"])
            #expect(challenge.status == 401)
            #expect(challenge.json["flows"]?[0]?["stages"] == ["m.login.password"])
            #expect(try await alice.call("POST", "/account/password", .object([:])).errcode == "M_MISSING_PARAM")
            let changed = try await alice.call("POST", "/account/password", ["new_password": "new password",
                                                                             "auth": Self.passwordAuth])
            #expect(changed.status == 200)
            #expect(try await alice.call("GET", "/account/whoami").status == 200)
            #expect(try await alice.call("GET", "/account/whoami", token: otherToken).errcode == "M_UNKNOWN_TOKEN")
            let old = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "old password"])
            #expect(old.errcode == "M_FORBIDDEN")
            let new = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "new password"])
            #expect(new.status == 200)
        }
    }

    @Test func deactivateWithErase() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice", password: "old password")
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/displayname", ["displayname": "A"]).status == 200)
            #expect(try await alice.call("POST", "/account/deactivate", .object([:])).status == 401)
            let done = try await alice.call("POST", "/account/deactivate", ["auth": Self.passwordAuth, "erase": true])
            #expect(done.status == 200)
            #expect(done.json["id_server_unbind_result"] == "no-support")
            #expect(try await alice.call("GET", "/account/whoami").errcode == "M_UNKNOWN_TOKEN")
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "old password"])
            #expect(login.status == 403)
            #expect(login.errcode == "M_USER_DEACTIVATED")
            #expect(try await alice.call("GET", "/profile/@alice:localhost").status == 404)
            // The name stays taken.
            let again = try await alice.call("POST", "/register", ["username": "alice", "password": "x",
                                                                   "auth": ["type": "m.login.dummy"]])
            #expect(again.errcode == "M_USER_IN_USE")
        }
    }

    @Test func deactivationLeavesEveryRoom() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob", password: "old password")
            let joined = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/join/\(joined.addingPercentEncodingForPath)").status == 200)
            let invited = try #require(try await alice.call("POST", "/createRoom", ["invite": ["@bob:localhost"]]).json["room_id"]?.stringValue)
            let done = try await bob.call("POST", "/account/deactivate", ["auth": [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "bob"], "password": "old password"]])
            #expect(done.status == 200)
            for room in [joined, invited] {
                let member = try await alice.call("GET", "/rooms/\(room.addingPercentEncodingForPath)/state/m.room.member/@bob:localhost")
                #expect(member.json["membership"] == "leave", "\(room): \(member.json)")
            }
            let members = try await alice.call("GET", "/rooms/\(joined.addingPercentEncodingForPath)/joined_members")
            #expect(members.json["joined"]?["@bob:localhost"] == nil)
        }
    }

    @Test func threepidsOpenIDAndCapabilities() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            #expect(try await alice.call("GET", "/account/3pid").json == ["threepids": []])
            #expect(try await alice.call("GET", "/account/3pid", token: .some(nil)).errcode == "M_MISSING_TOKEN")

            let openid = try await alice.call("POST", "/user/@alice:localhost/openid/request_token", .object([:]))
            #expect(openid.status == 200)
            #expect(openid.json["token_type"] == "Bearer")
            #expect(openid.json["matrix_server_name"] == "localhost")
            #expect(openid.json["expires_in"] == 3600)
            let token = try #require(openid.json["access_token"]?.stringValue)
            let info = try await alice.call("GET", "/_matrix/federation/v1/openid/userinfo?access_token=\(token)", token: .some(nil))
            #expect(info.json == ["sub": "@alice:localhost"])
            #expect(try await alice.call("GET", "/_matrix/federation/v1/openid/userinfo?access_token=x", token: .some(nil)).status == 401)
            #expect(try await bob.call("POST", "/user/@alice:localhost/openid/request_token", .object([:])).errcode == "M_FORBIDDEN")

            let capabilities = try await alice.call("GET", "/capabilities")
            #expect(capabilities.status == 200)
            let caps = capabilities.json["capabilities"]
            #expect(caps?["m.change_password"]?["enabled"] == true)
            #expect(caps?["m.set_displayname"]?["enabled"] == true)
            #expect(caps?["m.set_avatar_url"]?["enabled"] == true)
            #expect(caps?["m.3pid_changes"]?["enabled"] == false)
            let versions = caps?["m.room_versions"]
            #expect(versions?["default"]?.stringValue == RoomVersion.recommendedDefault.id)
            #expect(versions?["available"]?["10"] == "stable")
        }
    }

    @Test func presence() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            let path = "/presence/@alice:localhost/status"
            // Presence is for people who share a room.
            #expect(try await bob.call("GET", path).errcode == "M_FORBIDDEN")
            let room = try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]!.stringValue!
            #expect(try await bob.call("POST", "/join/\(room)").status == 200)
            #expect(try await bob.call("GET", path).json == ["presence": "offline"])
            #expect(try await carol.call("GET", path).errcode == "M_FORBIDDEN")
            #expect(try await alice.call("PUT", path, ["presence": "online",
                                                       "status_msg": .string(String(repeating: "x", count: 1025))]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", path, ["presence": "online", "status_msg": "here"]).status == 200)
            let seen = try await bob.call("GET", path)
            #expect(seen.json["presence"] == "online")
            #expect(seen.json["status_msg"] == "here")
            #expect(seen.json["currently_active"] == true)
            #expect((seen.json["last_active_ago"]?.intValue ?? -1) >= 0)
            #expect(try await bob.call("PUT", path, ["presence": "offline"]).errcode == "M_FORBIDDEN")
            #expect(try await alice.call("PUT", path, ["presence": "sleeping"]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", path, .object([:])).errcode == "M_MISSING_PARAM")
            #expect(try await bob.call("GET", "/presence/@nobody:localhost/status").errcode == "M_NOT_FOUND")
        }
        try await withMyelin({ $0.presence.enabled = false }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let path = "/presence/@alice:localhost/status"
            #expect(try await alice.call("PUT", path, ["presence": "online"]).status == 200)
            #expect(try await alice.call("GET", path).json == ["presence": "offline"])
        }
    }

    @Test func filters() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let filter: JSON = ["room": ["timeline": ["limit": 10, "types": ["m.room.message"]],
                                         "state": ["lazy_load_members": true]],
                                "event_format": "client", "presence": ["not_types": ["*"]]]
            let created = try await alice.call("POST", "/user/@alice:localhost/filter", filter)
            #expect(created.status == 200)
            let id = try #require(created.json["filter_id"]?.stringValue)
            #expect(try await alice.call("GET", "/user/@alice:localhost/filter/\(id)").json == filter)
            let second = try await alice.call("POST", "/user/@alice:localhost/filter", .object([:]))
            #expect(second.json["filter_id"]?.stringValue != id)

            #expect(try await alice.call("GET", "/user/@alice:localhost/filter/99").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", "/user/@alice:localhost/filter/abc").errcode == "M_INVALID_PARAM")
            #expect(try await bob.call("GET", "/user/@alice:localhost/filter/\(id)").errcode == "M_FORBIDDEN")
            #expect(try await bob.call("POST", "/user/@alice:localhost/filter", .object([:])).errcode == "M_FORBIDDEN")
            for bad: JSON in [["event_format": "xml"], ["room": ["timeline": ["limit": "ten"]]],
                              ["event_fields": [1]], ["presence": ["types": "m.presence"]],
                              ["room": ["state": ["lazy_load_members": "yes"]]]] {
                #expect(try await alice.call("POST", "/user/@alice:localhost/filter", bad).errcode == "M_BAD_JSON", "\(bad)")
            }
        }
    }

    @Test func userDirectory() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            _ = try await MatrixTestClient.registered(port: port, "albert")
            // Synapse's default: only users sharing a room (none exist yet).
            let none = try await alice.call("POST", "/user_directory/search", ["search_term": "al"])
            #expect(none.json == ["results": [], "limited": false])
            #expect(try await alice.call("POST", "/user_directory/search", .object([:])).errcode == "M_MISSING_PARAM")
        }
        // A user who shares a private room with the searcher is found at once, by localpart
        // and by display name; users in a published room are found too; others are not.
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (albert, _) = try await MatrixTestClient.registered(port: port, "albert")
            let (zoe, _) = try await MatrixTestClient.registered(port: port, "zoe")
            let (pub, _) = try await MatrixTestClient.registered(port: port, "publius")
            #expect(try await albert.call("PUT", "/profile/@albert:localhost/displayname", ["displayname": "Bert"]).status == 200)
            let room = try await alice.call("POST", "/createRoom", ["preset": "private_chat", "invite": ["@albert:localhost"]])
                .json["room_id"]!.stringValue!
            #expect(try await albert.call("POST", "/join/\(room)").status == 200)
            let ids = { (reply: MatrixTestClient.Reply) in reply.json["results"]?.arrayValue?.compactMap { $0["user_id"]?.stringValue } }
            #expect(ids(try await alice.call("POST", "/user_directory/search", ["search_term": "albert"])) == ["@albert:localhost"])
            #expect(ids(try await alice.call("POST", "/user_directory/search", ["search_term": "bert"])) == ["@albert:localhost"])
            #expect(ids(try await zoe.call("POST", "/user_directory/search", ["search_term": "albert"])) == [])
            #expect(ids(try await alice.call("POST", "/user_directory/search", ["search_term": "publius"])) == [])
            let open = try await pub.call("POST", "/createRoom", ["preset": "public_chat", "visibility": "public"]).json["room_id"]!.stringValue!
            #expect(!open.isEmpty)
            #expect(ids(try await zoe.call("POST", "/user_directory/search", ["search_term": "publius"])) == ["@publius:localhost"])
        }
        try await withMyelin({ $0.userDirectory.searchAllUsers = true }) { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (albert, _) = try await MatrixTestClient.registered(port: port, "albert")
            _ = try await MatrixTestClient.registered(port: port, "zoe")
            #expect(try await albert.call("PUT", "/profile/@albert:localhost/displayname", ["displayname": "Bert"]).status == 200)
            let found = try await alice.call("POST", "/user_directory/search", ["search_term": "AL"])
            #expect(found.json["results"]?.arrayValue?.compactMap { $0["user_id"]?.stringValue }
                    == ["@albert:localhost", "@alice:localhost"])
            let byName = try await alice.call("POST", "/user_directory/search", ["search_term": "bert"])
            #expect(byName.json["results"] == [["user_id": "@albert:localhost", "display_name": "Bert"]])
            let limited = try await alice.call("POST", "/user_directory/search", ["search_term": "a", "limit": 1])
            #expect(limited.json["results"]?.arrayValue?.count == 1)
            #expect(limited.json["limited"] == true)
            #expect(try await alice.call("POST", "/user_directory/search", ["search_term": "%"]).json["results"] == [])
        }
    }
}

@Suite("Synapse shared-secret registration")
struct SharedSecretRegistrationTests {
    @Test func hmacSHA1MatchesRFC2202() {
        // RFC 2202 test cases 1 and 2.
        #expect(HMACSHA1.hex(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8))
                == "b617318655057264e28bc0b6fb378c8ef146be00")
        #expect(HMACSHA1.hex(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
                == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        // Keys longer than a block are hashed first (RFC 2202 case 6).
        #expect(HMACSHA1.hex(key: [UInt8](repeating: 0xaa, count: 80),
                             message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
                == "aa4ae5e15272d00e95705637ce8a3b55ed402112")
    }

    @Test func registersWithTheSecretEvenWhenRegistrationIsOff() async throws {
        try await withMyelin({ $0.registration.enabled = false; $0.registration.sharedSecret = "s3cret" }) { port, _ in
            let client = try MatrixTestClient(port: port)
            func mac(_ nonce: String, _ user: String, _ password: String, admin: Bool, secret: String = "s3cret") -> String {
                HMACSHA1.hex(key: Array(secret.utf8), message: Array("\(nonce)\0\(user)\0\(password)\0\(admin ? "admin" : "notadmin")".utf8))
            }
            let nonce = try #require(try await client.call("GET", "/_synapse/admin/v1/register").json["nonce"]?.stringValue)
            let wrong = try await client.call("POST", "/_synapse/admin/v1/register", [
                "nonce": .string(nonce), "username": "root", "password": "pw", "admin": true,
                "mac": .string(mac(nonce, "root", "pw", admin: true, secret: "guess"))])
            #expect(wrong.status == 403)
            // The nonce was used up by the failed attempt.
            let reused = try await client.call("POST", "/_synapse/admin/v1/register", [
                "nonce": .string(nonce), "username": "root", "password": "pw", "admin": true,
                "mac": .string(mac(nonce, "root", "pw", admin: true))])
            #expect(reused.status == 400)

            let fresh = try #require(try await client.call("GET", "/_synapse/admin/v1/register").json["nonce"]?.stringValue)
            let created = try await client.call("POST", "/_synapse/admin/v1/register", [
                "nonce": .string(fresh), "username": "root", "password": "pw", "admin": true,
                "mac": .string(mac(fresh, "root", "pw", admin: true))])
            #expect(created.status == 200)
            #expect(created.json["user_id"] == "@root:localhost")
            let token = try #require(created.json["access_token"]?.stringValue)
            #expect(try await client.call("GET", "/account/whoami", token: token).json["user_id"] == "@root:localhost")
        }
        try await withMyelin { port, _ in
            let client = try MatrixTestClient(port: port)
            #expect(try await client.call("GET", "/_synapse/admin/v1/register").status == 400)
        }
    }
}
