import Matrix
import TestSupport
import Testing
@testable import App

/// Server-side key backups over real sockets, on SQLite and PostgreSQL: versions, keys at the
/// three levels, the etag and count rules, the current-version rule, the replacement rule's
/// tie-breaks, bounds, and the seed's aliases (`/_matrix/key_backup/v1`, the r0 forms,
/// `/_matrix/key/v1`, `rooms/{roomId}/keys/distribution`).
@Suite("Key backup over real sockets")
struct KeyBackupTests {
    static let algorithm: JSON = "m.megolm_backup.v1.curve25519-aes-sha2"
    static let version: JSON = ["algorithm": algorithm, "auth_data": ["public_key": "abc"]]

    static func key(_ index: Int64, forwarded: Int64 = 0, verified: Bool = false, tag: String = "") -> JSON {
        ["first_message_index": .int(index), "forwarded_count": .int(forwarded), "is_verified": .bool(verified),
         "session_data": ["ephemeral": "e", "ciphertext": .string(tag), "mac": "m"]]
    }

    static func create(_ client: MatrixTestClient) async throws -> String {
        let reply = try await client.call("POST", "/room_keys/version", version)
        return try #require(reply.json["version"]?.stringValue, "\(reply.json)")
    }

    @Test(arguments: MediaTest.backends)
    func versions(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            #expect(try await alice.call("GET", "/room_keys/version").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", "/room_keys/version").status == 404)
            // Only the specification's algorithm, and an object auth_data.
            #expect(try await alice.call("POST", "/room_keys/version", ["algorithm": "AAA", "auth_data": [:]]).errcode == "M_BAD_JSON")
            #expect(try await alice.call("POST", "/room_keys/version", ["algorithm": Self.algorithm, "auth_data": "s"]).errcode == "M_BAD_JSON")
            #expect(try await alice.call("POST", "/room_keys/version", ["auth_data": [:]]).errcode == "M_BAD_JSON")

            let first = try await Self.create(alice)
            let second = try await Self.create(alice)
            #expect(Int(second) == Int(first)! + 1)
            let current = try await alice.call("GET", "/room_keys/version")
            #expect(current.json["version"]?.stringValue == second)
            #expect(current.json["algorithm"] == Self.algorithm)
            #expect(current.json["auth_data"]?["public_key"] == "abc")
            #expect(current.json["count"] == 0)
            #expect(current.json["etag"]?.stringValue != nil)
            // The v3 answer is the specification's: no seed extras.
            #expect(current.json["versions"] == nil)
            #expect(try await alice.call("GET", "/room_keys/version/\(first)").json["version"]?.stringValue == first)
            // Version ids are integers: anything else is an unknown version (Synapse).
            for bad in ["abc", "0", "-1", "99999999999999999999999", "77"] {
                let reply = try await alice.call("GET", "/room_keys/version/\(bad)")
                #expect(reply.status == 404 && reply.errcode == "M_NOT_FOUND", "\(bad)")
            }
            // Another user's versions are not Alice's.
            let bob = try await MediaTest.user(port, "bob")
            #expect(try await bob.call("GET", "/room_keys/version/\(second)").status == 404)

            // Update: the algorithm cannot change; a version in the body must be the path's.
            let other: JSON = ["algorithm": "m.other", "auth_data": ["public_key": "x"]]
            #expect(try await alice.call("PUT", "/room_keys/version/\(second)", other).errcode == "M_INVALID_PARAM")
            let mismatch: JSON = ["algorithm": Self.algorithm, "auth_data": ["public_key": "x"], "version": .string(first)]
            #expect(try await alice.call("PUT", "/room_keys/version/\(second)", mismatch).errcode == "M_INVALID_PARAM")
            let numeric: JSON = ["algorithm": Self.algorithm, "auth_data": ["public_key": "x"], "version": .int(Int64(second)!)]
            #expect(try await alice.call("PUT", "/room_keys/version/\(second)", numeric).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", "/room_keys/version/77", ["algorithm": Self.algorithm, "auth_data": [:]]).status == 404)
            let update: JSON = ["algorithm": Self.algorithm, "auth_data": ["public_key": "new"], "version": .string(second)]
            let updated = try await alice.call("PUT", "/room_keys/version/\(second)", update)
            #expect(updated.status == 200 && updated.json == [:])
            #expect(try await alice.call("GET", "/room_keys/version").json["auth_data"]?["public_key"] == "new")

            // Delete: keys go with the version, a deleted version is 404 to read and succeeds
            // to delete again; an unknown one is 404.
            #expect(try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=\(second)", Self.key(0)).status == 200)
            #expect(try await alice.call("DELETE", "/room_keys/version/\(second)").status == 200)
            #expect(try await alice.call("GET", "/room_keys/version/\(second)").status == 404)
            #expect(try await alice.call("GET", "/room_keys/keys?version=\(second)").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("DELETE", "/room_keys/version/\(second)").status == 200)
            #expect(try await alice.call("DELETE", "/room_keys/version/77").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", "/room_keys/version").json["version"]?.stringValue == first)
            // A new version gets a new number, never a deleted one's, and starts empty.
            let third = try await Self.create(alice)
            #expect(Int(third) == Int(second)! + 1)
            #expect(try await alice.call("GET", "/room_keys/version").json["count"] == 0)
            // DELETE without a version deletes the current one (Synapse).
            #expect(try await alice.call("DELETE", "/room_keys/version").status == 200)
            #expect(try await alice.call("GET", "/room_keys/version").json["version"]?.stringValue == first)
        }
    }

    @Test(arguments: MediaTest.backends)
    func keysAtThreeLevels(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            // No backup at all: 404 for every key operation.
            #expect(try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=1", Self.key(0)).errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", "/room_keys/keys?version=1").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("DELETE", "/room_keys/keys?version=1").errcode == "M_NOT_FOUND")
            let old = try await Self.create(alice)
            let version = try await Self.create(alice)
            // The version parameter is required.
            #expect(try await alice.call("GET", "/room_keys/keys").errcode == "M_MISSING_PARAM")
            #expect(try await alice.call("GET", "/room_keys/keys?version=abc").errcode == "M_NOT_FOUND")

            // Only the current version takes keys: 403 with the current version.
            let stale = try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=\(old)", Self.key(0))
            #expect(stale.status == 403 && stale.errcode == "M_WRONG_ROOM_KEYS_VERSION")
            #expect(stale.json["current_version"]?.stringValue == version)
            #expect(try await alice.call("PUT", "/room_keys/keys/!r:x/s?version=77", Self.key(0)).errcode == "M_NOT_FOUND")

            // Session level.
            let one = try await alice.call("PUT", "/room_keys/keys/!r:x/s1?version=\(version)", Self.key(3, tag: "s1"))
            #expect(one.status == 200 && one.json["count"] == 1)
            let etag1 = try #require(one.json["etag"]?.stringValue)
            // Room level.
            let room = try await alice.call("PUT", "/room_keys/keys/!r:x?version=\(version)",
                                            ["sessions": ["s2": Self.key(0, tag: "s2"), "s3": Self.key(0, tag: "s3")]])
            #expect(room.json["count"] == 3)
            let etag2 = try #require(room.json["etag"]?.stringValue)
            #expect(etag2 != etag1)
            // All level.
            let all = try await alice.call("PUT", "/room_keys/keys?version=\(version)",
                                           ["rooms": ["!q:x": ["sessions": ["t1": Self.key(0, tag: "t1")]]]])
            #expect(all.json["count"] == 4)
            let etag3 = try #require(all.json["etag"]?.stringValue)
            #expect(etag3 != etag2)
            // An upload that changes nothing (the same key again) leaves the etag alone.
            let same = try await alice.call("PUT", "/room_keys/keys/!r:x/s1?version=\(version)", Self.key(3, tag: "s1"))
            #expect(same.json["etag"]?.stringValue == etag3 && same.json["count"] == 4)
            // The version's info carries the same count and etag.
            let info = try await alice.call("GET", "/room_keys/version/\(version)")
            #expect(info.json["count"] == 4 && info.json["etag"]?.stringValue == etag3)

            // Reads at the three levels; a missing room is empty, a missing session 404.
            let keys = try await alice.call("GET", "/room_keys/keys?version=\(version)")
            #expect(keys.json["rooms"]?["!r:x"]?["sessions"]?.objectValue?.keys.sorted() == ["s1", "s2", "s3"])
            #expect(keys.json["rooms"]?["!q:x"]?["sessions"]?["t1"]?["session_data"]?["ciphertext"] == "t1")
            let roomKeys = try await alice.call("GET", "/room_keys/keys/!r:x?version=\(version)")
            #expect(roomKeys.json["sessions"]?.objectValue?.count == 3)
            #expect(try await alice.call("GET", "/room_keys/keys/!none:x?version=\(version)").json == ["sessions": [:]])
            let session = try await alice.call("GET", "/room_keys/keys/!r:x/s1?version=\(version)")
            #expect(session.json == Self.key(3, tag: "s1"))
            let missing = try await alice.call("GET", "/room_keys/keys/!r:x/nope?version=\(version)")
            #expect(missing.status == 404 && missing.errcode == "M_NOT_FOUND")
            // An older live version can be read (it has no keys here), not written.
            #expect(try await alice.call("GET", "/room_keys/keys?version=\(old)").json == ["rooms": [:]])

            // Deletes at the three levels, each answering the new count and etag.
            let delSession = try await alice.call("DELETE", "/room_keys/keys/!r:x/s1?version=\(version)")
            #expect(delSession.json["count"] == 3 && delSession.json["etag"]?.stringValue != etag3)
            let delRoom = try await alice.call("DELETE", "/room_keys/keys/!r:x?version=\(version)")
            #expect(delRoom.json["count"] == 1)
            let delAll = try await alice.call("DELETE", "/room_keys/keys?version=\(version)")
            #expect(delAll.json["count"] == 0)
            #expect(try await alice.call("GET", "/room_keys/keys?version=\(version)").json == ["rooms": [:]])
            #expect(try await alice.call("DELETE", "/room_keys/keys?version=77").errcode == "M_NOT_FOUND")
        }
    }

    /// The specification's rule, one tie-break at a time: `is_verified` first, then the lower
    /// `first_message_index`, then the lower `forwarded_count`.
    @Test(arguments: MediaTest.backends)
    func replacementRule(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let version = try await Self.create(alice)
            let path = "/room_keys/keys/!r:x/s?version=\(version)"
            func upload(_ key: JSON) async throws -> String? {
                try await alice.call("PUT", path, key).json["etag"]?.stringValue
            }
            func stored() async throws -> String? {
                try await alice.call("GET", path).json["session_data"]?["ciphertext"]?.stringValue
            }
            var etag = try await upload(Self.key(5, forwarded: 2, tag: "start"))
            // Same verification, higher index: kept out (even with fewer forwards).
            var next = try await upload(Self.key(6, forwarded: 0, tag: "higher index"))
            #expect(try await stored() == "start" && next == etag)
            // Same verification and index, more forwards: kept out.
            next = try await upload(Self.key(5, forwarded: 3, tag: "more forwards"))
            #expect(try await stored() == "start" && next == etag)
            // Same verification and index, fewer forwards: replaces.
            next = try await upload(Self.key(5, forwarded: 1, tag: "fewer forwards"))
            #expect(try await stored() == "fewer forwards" && next != etag)
            etag = next
            // Same verification, lower index: replaces, whatever its forwards.
            next = try await upload(Self.key(4, forwarded: 9, tag: "lower index"))
            #expect(try await stored() == "lower index" && next != etag)
            etag = next
            // Verified beats unverified, whatever its index and forwards.
            next = try await upload(Self.key(10, forwarded: 10, verified: true, tag: "verified"))
            #expect(try await stored() == "verified" && next != etag)
            etag = next
            // Unverified never replaces verified, even with a lower index.
            next = try await upload(Self.key(0, forwarded: 0, tag: "unverified"))
            #expect(try await stored() == "verified" && next == etag)
            // Both verified: the lower index wins, then the fewer forwards.
            next = try await upload(Self.key(9, forwarded: 12, verified: true, tag: "verified lower"))
            #expect(try await stored() == "verified lower" && next != etag)
            etag = next
            next = try await upload(Self.key(9, forwarded: 12, verified: true, tag: "identical metadata"))
            #expect(try await stored() == "verified lower" && next == etag)
            next = try await upload(Self.key(9, forwarded: 11, verified: true, tag: "verified fewer"))
            #expect(try await stored() == "verified fewer" && next != etag)
            #expect(try await alice.call("GET", "/room_keys/version").json["count"] == 1)
        }
    }

    /// Two devices of a user may upload the same session at once: every upload succeeds and
    /// the best key stays, whatever the order (on PostgreSQL the writes run concurrently).
    @Test(arguments: MediaTest.backends)
    func concurrentUploadsOfOneSession(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let version = try await Self.create(alice)
            let token = alice.token
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        let client = try MatrixTestClient(port: port, token: token)
                        let key = Self.key(Int64(12 - index), forwarded: Int64(index % 3), tag: "k\(12 - index)")
                        return try await client.call("PUT", "/room_keys/keys/!r:x/s?version=\(version)", key).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 12))
            let stored = try await alice.call("GET", "/room_keys/keys/!r:x/s?version=\(version)")
            #expect(stored.json["first_message_index"] == 1 && stored.json["session_data"]?["ciphertext"] == "k1")
            #expect(try await alice.call("GET", "/room_keys/version").json["count"] == 1)

            // Versions created at once get distinct numbers, each answered 200.
            let created = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await MatrixTestClient(port: port, token: token).call("POST", "/room_keys/version", Self.version)
                            .json["version"]?.stringValue
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(created.compactMap { $0 }).count == 8)
        }
    }

    @Test func boundsAndBadBodies() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let version = try await Self.create(alice)
            let path = "/room_keys/keys/!r:x/s?version=\(version)"
            var bad: [JSON] = []
            for field in ["first_message_index", "forwarded_count", "is_verified", "session_data"] {
                var key = Self.key(0).objectValue!
                key[field] = nil
                bad.append(.object(key))
            }
            bad += [Self.key(-1), Self.key(0, forwarded: -2),
                    ["first_message_index": 0, "forwarded_count": 0, "is_verified": 1, "session_data": [:]],
                    ["first_message_index": 0.5, "forwarded_count": 0, "is_verified": false, "session_data": [:]],
                    ["first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": "opaque"]]
            for body in bad {
                let reply = try await alice.call("PUT", path, body)
                #expect(reply.status == 400 && reply.errcode == "M_BAD_JSON", "\(body)")
            }
            #expect(try await alice.call("PUT", "/room_keys/keys/!r:x?version=\(version)", ["sessions": []]).errcode == "M_BAD_JSON")
            #expect(try await alice.call("PUT", "/room_keys/keys?version=\(version)", ["rooms": "x"]).errcode == "M_BAD_JSON")
            // Identifiers are bounded (path and body alike).
            let long = String(repeating: "a", count: 300)
            #expect(try await alice.call("PUT", "/room_keys/keys/!r:x/\(long)?version=\(version)", Self.key(0)).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("PUT", "/room_keys/keys?version=\(version)",
                                         ["rooms": .object([long: ["sessions": ["s": Self.key(0)]]])]).errcode == "M_INVALID_PARAM")
            // One key's data is bounded, and so is the number of keys in one request.
            let huge: JSON = ["first_message_index": 0, "forwarded_count": 0, "is_verified": false,
                              "session_data": ["ciphertext": .string(String(repeating: "x", count: 70_000))]]
            #expect(try await alice.call("PUT", path, huge).status == 413)
            var sessions: [String: JSON] = [:]
            let small: JSON = ["first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": [:]]
            for i in 0...KeyBackup.maxKeysPerUpload { sessions["s\(i)"] = small }
            let many = try await alice.call("PUT", "/room_keys/keys/!r:x?version=\(version)", ["sessions": .object(sessions)])
            #expect(many.status == 413)
            // Nothing of a refused upload was stored.
            #expect(try await alice.call("GET", "/room_keys/version").json["count"] == 0)
            // Guests have no backups.
            let guest = try await MatrixTestClient(port: port).call("POST", "/register?kind=guest", [:])
            if let token = guest.json["access_token"]?.stringValue {
                #expect(try await alice.call("GET", "/room_keys/version", token: .some(token)).status == 403)
            }
        }
    }

    // MARK: the seed's aliases

    @Test(arguments: MediaTest.backends)
    func seedKeyBackupPaths(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let base = "/_matrix/key_backup/v1"
            #expect(try await alice.call("GET", base + "/version").errcode == "M_NOT_FOUND")
            // The seed's create: algorithm and auth_data may be left out.
            let created = try await alice.call("POST", base + "/version", [:])
            let version = try #require(created.json["version"]?.stringValue)
            let info = try await alice.call("GET", base + "/version")
            #expect(info.json["algorithm"] == Self.algorithm && info.json["auth_data"] == [:])
            #expect(info.json["versions"]?[0]?["version"]?.stringValue == version)
            #expect(try await alice.call("GET", base + "/version/\(version)").json["version"]?.stringValue == version)
            // The seed's update: auth_data alone; answers the version.
            let updated = try await alice.call("PUT", base + "/version/\(version)", ["auth_data": ["public_key": "k"]])
            #expect(updated.json == ["version": .string(version)])
            // The same backup through the specification's path.
            #expect(try await alice.call("GET", "/room_keys/version").json["auth_data"]?["public_key"] == "k")

            // Keys in the seed's bodies: sessions as a list carrying session_id; metadata optional.
            let upload = try await alice.call("POST", base + "/version/\(version)/keys",
                                              ["!a:x": ["sessions": [["session_id": "s1", "session_data": ["ciphertext": "c1"]]]]])
            #expect(upload.json["count"] == 1 && upload.json["etag"]?.stringValue != nil)
            let spec = try await alice.call("POST", base + "/version/\(version)/keys",
                                            ["rooms": ["!a:x": ["sessions": ["s2": Self.key(2, tag: "c2")]]]])
            #expect(spec.json["count"] == 2)
            let keys = try await alice.call("GET", base + "/version/\(version)/keys")
            #expect(keys.json["rooms"]?["!a:x"]?["sessions"]?.objectValue?.count == 2)
            #expect(keys.json["etag"] == spec.json["etag"])
            let count = try await alice.call("POST", base + "/version/\(version)/keys/count")
            #expect(count.json["count"] == 2 && count.json["version"]?.stringValue == version)
            // A seed upload reads back through the specification's path as complete KeyBackupData.
            let normalised = try await alice.call("GET", "/room_keys/keys/!a:x/s1?version=\(version)")
            #expect(normalised.json == ["first_message_index": 0, "forwarded_count": 0, "is_verified": false,
                                        "session_data": ["ciphertext": "c1"]])
            // The same rules as the specification's paths: a stale version is refused.
            let newer = try await Self.create(alice)
            let stale = try await alice.call("POST", base + "/version/\(version)/keys",
                                             ["!a:x": ["sessions": [["session_id": "s3", "session_data": [:]]]]])
            #expect(stale.errcode == "M_WRONG_ROOM_KEYS_VERSION" && stale.json["current_version"]?.stringValue == newer)
            #expect(try await alice.call("POST", base + "/version/\(newer)/keys", ["x": 1]).errcode == "M_BAD_JSON")
            #expect(try await alice.call("GET", base + "/version/abc/keys").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", base + "/version").json["versions"]?.arrayValue?.count == 2)
            #expect(try await MatrixTestClient(port: port).call("GET", base + "/version").status == 401)
            let deleted = try await alice.call("DELETE", base + "/version/\(newer)")
            #expect(deleted.json == ["deleted": true, "version": .string(newer)])
            #expect(try await alice.call("GET", base + "/version").json["version"]?.stringValue == version)
        }
    }

    @Test(arguments: MediaTest.backends)
    func seedR0RoomKeysPaths(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let r0 = "/_matrix/client/r0/room_keys"
            // The seed's create (algorithm left out) on the r0 path the specification also serves.
            let version = try #require(try await alice.call("POST", r0 + "/version", ["auth_data": [:]]).json["version"]?.stringValue)
            // r0's current version carries the seed's list of versions beside the specification's fields.
            let current = try await alice.call("GET", r0 + "/version")
            #expect(current.json["version"]?.stringValue == version && current.json["count"] == 0)
            #expect(current.json["versions"]?.arrayValue?.count == 1)

            // PUT /room_keys/{version}: one room, its sessions as a list.
            let put = try await alice.call("PUT", r0 + "/\(version)",
                                           ["room_id": "!a:x", "sessions": [["session_id": "s1", "session_data": ["c": "1"],
                                                                             "is_verified": true]]])
            #expect(put.json["count"] == 1)
            // POST /room_keys/{version}/keys: rooms keyed at the top level.
            let post = try await alice.call("POST", r0 + "/\(version)/keys",
                                            ["!b:x": ["sessions": [["session_id": "s2", "session_data": ["c": "2"]]]]])
            #expect(post.json["count"] == 2)
            // GET /room_keys/{version}: everything, with the etag.
            let all = try await alice.call("GET", r0 + "/\(version)")
            #expect(all.json["rooms"]?.objectValue?.keys.sorted() == ["!a:x", "!b:x"])
            #expect(all.json["etag"] == post.json["etag"])
            // GET /room_keys/{version}/keys/{roomId}: the room under rooms.
            let room = try await alice.call("GET", r0 + "/\(version)/keys/!a:x")
            #expect(room.json["rooms"]?["!a:x"]?["sessions"]?["s1"]?["is_verified"] == true)
            #expect(try await alice.call("GET", r0 + "/\(version)/keys/!none:x").json == ["rooms": [:]])
            // GET /room_keys/{version}/keys/{roomId}/{sessionId}: the key with its ids.
            let session = try await alice.call("GET", r0 + "/\(version)/keys/!b:x/s2")
            #expect(session.json["room_id"] == "!b:x" && session.json["session_id"] == "s2")
            #expect(session.json["session_data"] == ["c": "2"] && session.json["first_message_index"] == 0)
            #expect(try await alice.call("GET", r0 + "/\(version)/keys/!b:x/none").errcode == "M_NOT_FOUND")
            // The specification's r0 paths still answer as the specification says.
            #expect(try await alice.call("GET", r0 + "/keys/!a:x?version=\(version)").json["sessions"]?["s1"] != nil)
            // The seed's update and delete answers.
            #expect(try await alice.call("PUT", r0 + "/version/\(version)", ["auth_data": ["p": 1]]).json == ["version": .string(version)])
            let deleted = try await alice.call("DELETE", r0 + "/version/\(version)")
            #expect(deleted.json == ["deleted": true, "version": .string(version)])
            #expect(try await alice.call("GET", r0 + "/\(version)").errcode == "M_NOT_FOUND")
            #expect(try await alice.call("GET", r0 + "/version").errcode == "M_NOT_FOUND")
        }
    }

    @Test(arguments: MediaTest.backends)
    func seedDeviceKeyPaths(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let bob = try await MediaTest.user(port, "bob")
            let whoami = try await alice.call("GET", "/account/whoami").json
            let user = try #require(whoami["user_id"]?.stringValue), device = try #require(whoami["device_id"]?.stringValue)
            let keys = "/_matrix/key/v1"

            let upload = try await alice.call("POST", keys + "/upload", [
                "device_keys": ["user_id": .string(user), "device_id": .string(device),
                                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                                "keys": .object(["curve25519:\(device)": "curve", "ed25519:\(device)": "ed"]),
                                "signatures": [:]],
                "one_time_keys": ["signed_curve25519:A": ["key": "a", "signatures": [:]]],
            ])
            #expect(upload.json["one_time_key_counts"]?["signed_curve25519"] == 1)
            let posted = try await bob.call("POST", keys + "/query", ["device_keys": .object([user: []])])
            #expect(posted.json["device_keys"]?[user]?[device]?["keys"]?["curve25519:\(device)"] == "curve")
            let got = try await bob.call("GET", keys + "/query?user_id=\(user)")
            #expect(got.json["device_keys"]?[user]?[device]?["keys"]?["ed25519:\(device)"] == "ed")
            #expect(try await bob.call("GET", keys + "/query?user_id=\(user)&device_id=OTHER").json["device_keys"]?[user] == [:])
            #expect(try await alice.call("GET", keys + "/query").json["device_keys"]?[user]?[device] != nil)
            #expect(try await bob.call("GET", keys + "/query?user_id=not-a-user").status == 400)

            // Cross-signing through the seed's paths.
            let masterKey = CrossSigningTests.Ed25519()
            let master = masterKey.crossSigningKey(user, "master")
            #expect(try await alice.call("POST", keys + "/keys/upload", ["master_key": master]).status == 200)
            let crossSigning = try await bob.call("GET", keys + "/keys/\(user)")
            #expect(crossSigning.json["user_id"]?.stringValue == user)
            #expect(crossSigning.json["master_key"]?["keys"]?[masterKey.keyID] == .string(masterKey.publicKey))
            #expect(crossSigning.json["user_signing_key"] == nil)
            let signatures = try await alice.call("POST", keys + "/keys/signatures/upload", [:])
            #expect(signatures.status == 200 && signatures.json["failures"] == [:])

            // Deleting the device's keys: its device keys and one-time keys are gone.
            #expect(try await alice.call("DELETE", keys + "/delete").status == 200)
            #expect(try await bob.call("GET", keys + "/query?user_id=\(user)").json["device_keys"]?[user] == [:])
            #expect(try await alice.call("POST", "/keys/upload", [:]).json["one_time_key_counts"]?["signed_curve25519"] ?? 0 == 0)
            #expect(try await MatrixTestClient(port: port).call("DELETE", keys + "/delete").status == 401)
        }
    }

    @Test func seedKeyDistribution() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            let bobDevice = try #require(try await bob.call("GET", "/account/whoami").json["device_id"]?.stringValue)
            #expect(try await bob.call("PUT", "/devices/\(bobDevice)", ["display_name": "Bob's phone"]).status == 200)
            let created = try await alice.call("POST", "/createRoom", [
                "invite": ["@bob:localhost"],
                "initial_state": [["type": "m.room.encryption", "state_key": "",
                                   "content": ["algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 50]]],
            ])
            let room = try #require(created.json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(room)/join", [:]).status == 200)
            let path = "/_matrix/client/r0/rooms/\(room)/keys/distribution"
            let answer = try await alice.call("GET", path)
            #expect(answer.status == 200)
            #expect(answer.json["room_id"]?.stringValue == room)
            #expect(answer.json["algorithm"] == "m.megolm.v1.aes-sha2")
            #expect(answer.json["rotation_period_msgs"] == 50)
            #expect(answer.json["distribution"]?.objectValue?.keys.sorted() == ["@alice:localhost", "@bob:localhost"])
            #expect(answer.json["distribution"]?["@bob:localhost"] == [["device_id": .string(bobDevice), "display_name": "Bob's phone"]])
            // Not joined: 403; unknown room: 404.
            #expect(try await carol.call("GET", path).status == 403)
            #expect(try await alice.call("GET", "/_matrix/client/r0/rooms/!nope:localhost/keys/distribution").status == 404)
            // An unencrypted room has no algorithm.
            let plain = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let unencrypted = try await alice.call("GET", "/_matrix/client/r0/rooms/\(plain)/keys/distribution")
            #expect(unencrypted.status == 200 && unencrypted.json["algorithm"] == nil)
        }
    }
}
