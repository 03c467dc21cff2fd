import Matrix
import TestSupport
import Testing
@testable import App

/// The end-to-end encryption key API over real sockets, and the key fields of `/sync`:
/// uploads, queries, claims, cross-signing, device-list changes and one-time-key counts.
@Suite("Encryption keys over real sockets")
struct KeysTests {
    static func path(_ room: String) -> String { room.addingPercentEncodingForPath }

    static func deviceKeys(_ user: String, _ device: String, curve: String = "curve") -> JSON {
        .object([
            "user_id": .string(user), "device_id": .string(device),
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": .object(["curve25519:\(device)": .string(curve), "ed25519:\(device)": "ed"]),
            "signatures": .object([user: .object(["ed25519:\(device)": "selfsig"])]),
        ])
    }

    static func otk(_ value: String) -> JSON { ["key": .string(value), "signatures": .object([:])] }

    func deviceID(_ client: MatrixTestClient) async throws -> String {
        try #require(try await client.call("GET", "/account/whoami").json["device_id"]?.stringValue)
    }

    @Test func uploadQueryClaimAndCounts() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let device = try await deviceID(alice)
            #expect(try await alice.call("PUT", "/devices/\(device)", ["display_name": "Alice's phone"]).status == 200)

            // Keys of another device are refused.
            let wrong = try await alice.call("POST", "/keys/upload", ["device_keys": Self.deviceKeys("@alice:localhost", "OTHER")])
            #expect(wrong.status == 400)

            let upload = try await alice.call("POST", "/keys/upload", [
                "device_keys": Self.deviceKeys("@alice:localhost", device),
                "one_time_keys": ["signed_curve25519:AAAA": Self.otk("a"), "signed_curve25519:AAAB": Self.otk("b")],
                "fallback_keys": ["signed_curve25519:FB": Self.otk("f")],
            ])
            #expect(upload.status == 200)
            #expect(upload.json["one_time_key_counts"]?["signed_curve25519"] == 2)
            // Reusing a key id with other material is refused, and stores nothing.
            let conflict = try await alice.call("POST", "/keys/upload", [
                "one_time_keys": ["signed_curve25519:AAAA": Self.otk("changed"), "signed_curve25519:AAAC": Self.otk("c")],
            ])
            #expect(conflict.status == 400)

            // Sync reports the counts and the unused fallback key to the device itself.
            let sync = try await alice.call("GET", "/sync")
            #expect(sync.json["device_one_time_keys_count"]?["signed_curve25519"] == 2)
            #expect(sync.json["device_unused_fallback_key_types"] == ["signed_curve25519"])
            let bobSync = try await bob.call("GET", "/sync")
            #expect(bobSync.json["device_one_time_keys_count"]?["signed_curve25519"] == 0)
            #expect(bobSync.json["device_unused_fallback_key_types"] == [])

            // Bob sees Alice's device keys with the device's display name.
            let query = try await bob.call("POST", "/keys/query", ["device_keys": ["@alice:localhost": [], "@nobody:localhost": []]])
            #expect(query.status == 200)
            let served = query.json["device_keys"]?["@alice:localhost"]?[device]
            #expect(served?["keys"]?["curve25519:\(device)"] == "curve")
            #expect(served?["unsigned"]?["device_display_name"] == "Alice's phone")
            #expect(served?["signatures"]?["@alice:localhost"]?["ed25519:\(device)"] == "selfsig")
            #expect(query.json["device_keys"]?["@nobody:localhost"] == .object([:]))
            let filtered = try await bob.call("POST", "/keys/query", ["device_keys": ["@alice:localhost": ["NOPE"]]])
            #expect(filtered.json["device_keys"]?["@alice:localhost"] == .object([:]))

            // Claims hand out each one-time key once, then the fallback key.
            var claimed: [String] = []
            for _ in 0..<3 {
                let claim = try await bob.call("POST", "/keys/claim", ["one_time_keys": ["@alice:localhost": [device: "signed_curve25519"]]])
                #expect(claim.status == 200)
                claimed += claim.json["one_time_keys"]?["@alice:localhost"]?[device]?.objectValue?.keys.sorted() ?? []
            }
            #expect(claimed == ["signed_curve25519:AAAA", "signed_curve25519:AAAB", "signed_curve25519:FB"])
            let after = try await alice.call("GET", "/sync")
            #expect(after.json["device_one_time_keys_count"]?["signed_curve25519"] == 0)
            #expect(after.json["device_unused_fallback_key_types"] == [])

            // Deleting the device deletes its keys.
            _ = try await alice.call("DELETE", "/devices/\(device)", ["auth": ["type": "m.login.password",
                "identifier": ["type": "m.id.user", "user": "alice"], "password": "correct horse"]])
            let gone = try await bob.call("POST", "/keys/query", ["device_keys": ["@alice:localhost": []]])
            #expect(gone.json["device_keys"]?["@alice:localhost"] == .object([:]))
        }
    }

    @Test func deviceListsInSyncAndKeysChanges() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            let device = try await deviceID(alice)
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let start = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)

            // Bob joins: Alice is a new peer whose devices Bob must fetch.
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            let joined = try await bob.call("GET", "/sync?since=\(start)")
            #expect(joined.json["device_lists"]?["changed"]?.arrayValue?.contains("@alice:localhost") == true)
            let since = try #require(joined.json["next_batch"]?.stringValue)

            // A long-poll wakes when a peer uploads new device keys; a stranger's keys do not show.
            let poll = Task { try await bob.call("GET", "/sync?since=\(since)&timeout=20000") }
            try await Task.sleep(for: .milliseconds(200))
            let carolDevice = try await deviceID(carol)
            #expect(try await carol.call("POST", "/keys/upload", ["device_keys": Self.deviceKeys("@carol:localhost", carolDevice)]).status == 200)
            #expect(try await alice.call("POST", "/keys/upload", ["device_keys": Self.deviceKeys("@alice:localhost", device)]).status == 200)
            let woke = try await poll.value
            #expect(woke.json["device_lists"]?["changed"] == ["@alice:localhost"])
            let afterKeys = try #require(woke.json["next_batch"]?.stringValue)

            // Alice leaves the only room they share: Bob stops tracking her.
            #expect(try await alice.call("POST", "/rooms/\(Self.path(room))/leave", .object([:])).status == 200)
            let left = try await bob.call("GET", "/sync?since=\(afterKeys)")
            #expect(left.json["device_lists"]?["left"] == ["@alice:localhost"])
            let end = try #require(left.json["next_batch"]?.stringValue)

            // /keys/changes over the whole span.
            let changes = try await bob.call("GET", "/keys/changes?from=\(start)&to=\(end)")
            #expect(changes.status == 200)
            #expect(changes.json["left"] == ["@alice:localhost"])
            #expect(changes.json["changed"]?.arrayValue?.contains("@carol:localhost") == false)
            #expect(try await bob.call("GET", "/keys/changes?from=\(start)").status == 400)
        }
    }
}
