import Matrix
import TestSupport
import Testing
@testable import App

/// Dehydrated devices (MSC3814, unstable prefix) over real sockets on SQLite and PostgreSQL:
/// upload with keys, fetch, to-device messages waiting for it read page by page, replacement
/// and deletion.
@Suite("Dehydrated devices over real sockets")
struct DehydratedDeviceTests {
    static let base = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"

    static func upload(_ user: String, _ device: String, otk: String = "AAAA") -> JSON {
        .object([
            "device_id": .string(device),
            "device_data": ["algorithm": "org.matrix.msc3814.v2", "account": "pickled-and-encrypted"],
            "initial_device_display_name": "Dehydrated device",
            "device_keys": .object([
                "user_id": .string(user), "device_id": .string(device), "dehydrated": true,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": .object(["curve25519:\(device)": "Y3VydmU", "ed25519:\(device)": "ZWQ"]),
            ]),
            "one_time_keys": .object(["signed_curve25519:\(otk)": ["key": "b3Rr"]]),
            "fallback_keys": .object(["signed_curve25519:FB\(otk)": ["key": "ZmI", "fallback": true]]),
        ])
    }

    @Test("Upload, fetch, read waiting to-device messages, replace, delete", arguments: CrossSigningTests.backends)
    func lifecycle(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let (alice, aliceID, _) = try await CrossSigningTests.user(port, "alice")
            let (bob, bobID, _) = try await CrossSigningTests.user(port, "bob")
            let versions = try await alice.call("GET", "/_matrix/client/versions")
            #expect(versions.json["unstable_features"]?["org.matrix.msc3814"] == true)

            #expect(try await alice.call("GET", Self.base).errcode == "M_NOT_FOUND")
            #expect(try await alice.call("DELETE", Self.base).errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", Self.base + "/DEHYDRATED/events").status == 403)

            // Malformed uploads.
            var noKeys = try #require(Self.upload(aliceID, "DEHYDRATED").objectValue)
            noKeys.removeValue(forKey: "device_keys")
            #expect(try await alice.call("PUT", Self.base, .object(noKeys)).status == 400)
            #expect(try await alice.call("PUT", Self.base, Self.upload(bobID, "DEHYDRATED")).errcode == "M_INVALID_PARAM")
            let own = try #require(try await alice.call("GET", "/account/whoami").json["device_id"]?.stringValue)
            #expect(try await alice.call("PUT", Self.base, Self.upload(aliceID, own)).errcode == "M_INVALID_PARAM")

            let put = try await alice.call("PUT", Self.base, Self.upload(aliceID, "DEHYDRATED"))
            #expect(put.status == 200)
            #expect(put.json["device_id"] == "DEHYDRATED")
            let got = try await alice.call("GET", Self.base)
            #expect(got.json["device_id"] == "DEHYDRATED")
            #expect(got.json["device_data"]?["account"] == "pickled-and-encrypted")

            // Its keys are published like any device's; a one-time key can be claimed.
            let query = try await bob.call("POST", "/keys/query", ["device_keys": .object([aliceID: []])])
            #expect(query.json["device_keys"]?[aliceID]?["DEHYDRATED"]?["dehydrated"] == true)
            let claim = try await bob.call("POST", "/keys/claim", ["one_time_keys": .object([aliceID: ["DEHYDRATED": "signed_curve25519"]])])
            #expect(claim.json["one_time_keys"]?[aliceID]?["DEHYDRATED"]?["signed_curve25519:AAAA"] != nil)

            // Bob sends it three messages; another device reads them two at a time.
            for n in 0..<3 {
                let body: JSON = ["messages": .object([aliceID: ["DEHYDRATED": ["n": .int(Int64(n))]]])]
                #expect(try await bob.call("PUT", "/sendToDevice/m.room_key/t\(n)", body).status == 200)
            }
            let first = try await alice.call("GET", Self.base + "/DEHYDRATED/events?limit=2")
            #expect(first.status == 200)
            #expect(first.json["events"]?.arrayValue?.compactMap { $0["content"]?["n"]?.intValue } == [0, 1])
            #expect(first.json["events"]?[0]?["sender"]?.stringValue == bobID)
            let next = try #require(first.json["next_batch"]?.stringValue)
            let second = try await alice.call("GET", Self.base + "/DEHYDRATED/events?limit=2&from=\(next)")
            #expect(second.json["events"]?.arrayValue?.compactMap { $0["content"]?["n"]?.intValue } == [2])
            let last = try #require(second.json["next_batch"]?.stringValue)
            // The draft's POST form, from the last token: nothing left.
            let done = try await alice.call("POST", Self.base + "/DEHYDRATED/events", .object(["next_batch": .string(last)]))
            #expect(done.json["events"] == [])
            // Each token passed deleted what it covered: reading from the first again finds nothing.
            let again = try await alice.call("GET", Self.base + "/DEHYDRATED/events?from=\(next)")
            #expect(again.json["events"] == [])
            #expect(try await alice.call("GET", Self.base + "/DEHYDRATED/events?from=x1").errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("GET", Self.base + "/OTHER/events").status == 403)

            // A new dehydrated device replaces the old one, which is deleted with its keys.
            #expect(try await alice.call("PUT", Self.base, Self.upload(aliceID, "NEWDEHYD", otk: "BBBB")).status == 200)
            let devices = try await alice.call("GET", "/devices")
            let ids = devices.json["devices"]?.arrayValue?.compactMap { $0["device_id"]?.stringValue } ?? []
            #expect(ids.contains("NEWDEHYD") && !ids.contains("DEHYDRATED"))
            let requery = try await bob.call("POST", "/keys/query", ["device_keys": .object([aliceID: []])])
            #expect(requery.json["device_keys"]?[aliceID]?["DEHYDRATED"] == nil)
            #expect(requery.json["device_keys"]?[aliceID]?["NEWDEHYD"] != nil)

            let deleted = try await alice.call("DELETE", Self.base)
            #expect(deleted.json["device_id"] == "NEWDEHYD")
            #expect(try await alice.call("GET", Self.base).errcode == "M_NOT_FOUND")
            let gone = try await bob.call("POST", "/keys/query", ["device_keys": .object([aliceID: []])])
            #expect(gone.json["device_keys"]?[aliceID]?["NEWDEHYD"] == nil)
        }
    }
}
