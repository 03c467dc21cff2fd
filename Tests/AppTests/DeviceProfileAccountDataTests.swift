import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

@Suite("Devices, profiles and account data over real sockets")
struct DeviceProfileAccountDataTests {
    @Test func devicesListRenameDelete() async throws {
        try await withMyelin { port, _ in
            let (alice, reply) = try await MatrixTestClient.registered(
                port: port, "alice", password: "pw1", extra: ["initial_device_display_name": "phone"])
            let phone = try #require(reply.json["device_id"]?.stringValue)
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice",
                                                                "password": "pw1", "device_id": "LAPTOP"])
            let laptopToken = try #require(login.json["access_token"]?.stringValue)

            let list = try await alice.call("GET", "/devices")
            #expect(list.status == 200)
            let devices = list.json["devices"]?.arrayValue ?? []
            #expect(Set(devices.compactMap { $0["device_id"]?.stringValue }) == [phone, "LAPTOP"])
            let phoneEntry = devices.first { $0["device_id"]?.stringValue == phone }
            #expect(phoneEntry?["display_name"] == "phone")
            #expect(phoneEntry?["last_seen_ts"]?.intValue != nil)
            #expect(phoneEntry?["last_seen_ip"]?.stringValue == "127.0.0.1")

            #expect(try await alice.call("PUT", "/devices/LAPTOP", ["display_name": "work laptop"]).status == 200)
            #expect(try await alice.call("GET", "/devices/LAPTOP").json["display_name"] == "work laptop")
            #expect(try await alice.call("GET", "/devices/NOPE").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("PUT", "/devices/NOPE", ["display_name": "x"]).status == 404)

            // Deleting needs the password (UIA).
            let challenge = try await alice.call("DELETE", "/devices/LAPTOP")
            #expect(challenge.status == 401)
            #expect(challenge.json["flows"]?[0]?["stages"] == ["m.login.password"])
            let session = challenge.json["session"] ?? .null
            let wrong = try await alice.call("DELETE", "/devices/LAPTOP", ["auth": [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"],
                "password": "bad", "session": session]])
            #expect(wrong.status == 401)
            #expect(wrong.errcode == "M_FORBIDDEN")
            let deleted = try await alice.call("DELETE", "/devices/LAPTOP", ["auth": [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"],
                "password": "pw1", "session": session]])
            #expect(deleted.status == 200)
            // Its token is revoked; the other device is untouched.
            #expect(try await alice.call("GET", "/account/whoami", token: laptopToken).errcode == "M_UNKNOWN_TOKEN")
            #expect(try await alice.call("GET", "/devices").json["devices"]?.arrayValue?.count == 1)

            let other = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice",
                                                                "password": "pw1", "device_id": "TABLET"])
            #expect(other.status == 200)
            let bulk = try await alice.call("POST", "/delete_devices", ["devices": ["TABLET"], "auth": [
                "type": "m.login.password", "user": "alice", "password": "pw1"]])
            #expect(bulk.status == 200)
            #expect(try await alice.call("GET", "/devices/TABLET").status == 404)
            #expect(try await alice.call("POST", "/delete_devices", ["devices": "TABLET"]).errcode == "M_BAD_JSON")
        }
    }

    @Test func lastSeenIsFlushedInBatches() async throws {
        try await withMyelin { port, configuration in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice")
            let device = try #require(reply.json["device_id"]?.stringValue)
            try await Task.sleep(for: .milliseconds(20))
            #expect(try await alice.call("GET", "/account/whoami", headers: ["User-Agent": "probe/1"]).status == 200)
            let shown = try #require(try await alice.call("GET", "/devices/\(device)").json["last_seen_ts"]?.intValue)
            let database = try await Database.open(configuration.databaseConfiguration)
            // Written by the next flush, not per request (that it is not written per request is
            // SessionActorTests.lastSeenIsBatched's: here a flush may fall between the request
            // and the read). Polled: a loaded machine may run the upkeep late.
            var flushed = try await database.devices.device(of: UserID(parsing: "@alice:localhost"), id: DeviceID(parsing: device))
            for _ in 0..<30 where flushed?.lastSeenTs ?? 0 < shown {
                try await Task.sleep(for: Accounts.lastSeenFlushInterval / 5)
                flushed = try await database.devices.device(of: UserID(parsing: "@alice:localhost"), id: DeviceID(parsing: device))
            }
            #expect(flushed?.lastSeenTs ?? 0 >= shown)
            #expect(flushed?.lastSeenUserAgent == "probe/1")
            await database.close()
        }
    }

    @Test func profiles() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            #expect(try await alice.call("GET", "/profile/@alice:localhost").json == .object([:]))
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/displayname", ["displayname": "Alice"]).status == 200)
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/avatar_url",
                                         ["avatar_url": "mxc://localhost/abc"]).status == 200)
            let anonymous = try MatrixTestClient(port: port)
            #expect(try await anonymous.call("GET", "/profile/@alice:localhost").json
                    == ["displayname": "Alice", "avatar_url": "mxc://localhost/abc"])
            #expect(try await anonymous.call("GET", "/_matrix/client/r0/profile/%40alice%3Alocalhost/displayname").json
                    == ["displayname": "Alice"])
            #expect(try await anonymous.call("GET", "/profile/@alice:localhost/avatar_url").json
                    == ["avatar_url": "mxc://localhost/abc"])

            let other = try await bob.call("PUT", "/profile/@alice:localhost/displayname", ["displayname": "Mallory"])
            #expect(other.status == 403)
            #expect(other.errcode == "M_FORBIDDEN")
            let unauthenticated = try await anonymous.call("PUT", "/profile/@alice:localhost/displayname", ["displayname": "x"])
            #expect(unauthenticated.errcode == "M_MISSING_TOKEN")
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/displayname", ["displayname": 5]).errcode == "M_BAD_JSON")
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/displayname",
                                         ["displayname": .string(String(repeating: "x", count: 300))]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/avatar_url",
                                         ["avatar_url": .string(String(repeating: "x", count: Profiles.maxAvatarURLLength + 1))])
                        .errcode == "M_INVALID_PARAM")
            // Any string otherwise, as Synapse (SyTest sets avatars that are not mxc:// URIs).
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/avatar_url",
                                         ["avatar_url": "https://example.org/a.png"]).status == 200)
            #expect(try await anonymous.call("GET", "/profile/@nobody:localhost").errcode == "M_NOT_FOUND")
            #expect(try await anonymous.call("GET", "/profile/@nobody:localhost/displayname").status == 404)
        }
    }

    @Test func customProfileFields() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let base = "/profile/@alice:localhost"
            #expect(try await alice.call("GET", base + "/m.tz").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("PUT", base + "/m.tz", ["m.tz": "Europe/Paris"]).status == 200)
            #expect(try await alice.call("PUT", base + "/org.example.pets", ["org.example.pets": ["cat", 2]]).status == 200)
            #expect(try await alice.call("PUT", base + "/displayname", ["displayname": "Alice"]).status == 200)
            #expect(try await bob.call("GET", base + "/m.tz").json == ["m.tz": "Europe/Paris"])
            #expect(try await bob.call("GET", base).json
                    == ["displayname": "Alice", "m.tz": "Europe/Paris", "org.example.pets": ["cat", 2]])
            #expect(try await bob.call("PUT", base + "/m.tz", ["m.tz": "UTC"]).errcode == "M_FORBIDDEN")
            #expect(try await alice.call("PUT", base + "/m.tz", ["other": "UTC"]).errcode == "M_BAD_JSON")
            let longKey = String(repeating: "k", count: 300)
            #expect(try await alice.call("PUT", base + "/" + longKey, .object([longKey: 1])).errcode == "M_KEY_TOO_LARGE")
            let big = JSON.string(String(repeating: "x", count: 70_000))
            #expect(try await alice.call("PUT", base + "/org.example.big", ["org.example.big": big]).errcode == "M_PROFILE_TOO_LARGE")
            #expect(try await alice.call("DELETE", base + "/m.tz").status == 200)
            #expect(try await alice.call("GET", base + "/m.tz").status == 404)
            let caps = try await alice.call("GET", "/capabilities")
            #expect(caps.json["capabilities"]?["m.profile_fields"]?["enabled"] == true)
        }
    }

    @Test func accountDataAndTags() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let global = "/user/@alice:localhost/account_data/org.example.settings"
            #expect(try await alice.call("GET", global).errcode == "M_NOT_FOUND")
            #expect(try await alice.call("PUT", global, ["theme": "dark"]).status == 200)
            #expect(try await alice.call("GET", global).json == ["theme": "dark"])
            #expect(try await alice.call("PUT", global, ["theme": "light"]).status == 200)
            #expect(try await alice.call("GET", global).json == ["theme": "light"])
            #expect(try await bob.call("GET", global).errcode == "M_FORBIDDEN")
            #expect(try await bob.call("PUT", global, ["theme": "x"]).status == 403)
            #expect(try await alice.call("PUT", global, ["not", "an object"]).errcode == "M_BAD_JSON")

            let room = "/user/@alice:localhost/rooms/!room:localhost"
            #expect(try await alice.call("PUT", room + "/account_data/org.example.x", ["a": 1]).status == 200)
            #expect(try await alice.call("GET", room + "/account_data/org.example.x").json == ["a": 1])
            // Room data is separate from global data of the same type.
            #expect(try await alice.call("GET", "/user/@alice:localhost/account_data/org.example.x").status == 404)
            #expect(try await alice.call("PUT", "/user/@alice:localhost/rooms/notaroom/account_data/x", ["a": 1]).status == 400)
            #expect(try await alice.call("PUT", room + "/account_data/m.fully_read", ["event_id": "$x"]).status == 405)

            #expect(try await alice.call("GET", room + "/tags").json == ["tags": .object([:])])
            #expect(try await alice.call("PUT", room + "/tags/m.favourite", ["order": 0.5]).status == 200)
            #expect(try await alice.call("PUT", room + "/tags/u.work", .object([:])).status == 200)
            #expect(try await alice.call("GET", room + "/tags").json == ["tags": ["m.favourite": ["order": 0.5], "u.work": [:]]])
            #expect(try await alice.call("DELETE", room + "/tags/u.work").status == 200)
            #expect(try await alice.call("GET", room + "/tags").json == ["tags": ["m.favourite": ["order": 0.5]]])
            #expect(try await alice.call("GET", room + "/account_data/m.tag").json == ["tags": ["m.favourite": ["order": 0.5]]])
            #expect(try await bob.call("GET", room + "/tags").errcode == "M_FORBIDDEN")
            #expect(try await alice.call("PUT", room + "/tags/x", ["order": "first"]).errcode == "M_BAD_JSON")
        }
    }
}
