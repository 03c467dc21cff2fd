import Matrix
import TestSupport
import Testing
@testable import App

/// Verified cross-signing over real sockets, on SQLite and PostgreSQL: the master key's
/// signatures on the self-signing and user-signing keys, user-interactive auth to replace
/// any key, `/keys/signatures/upload` checking every signature against the key it names, and
/// what `/keys/query` and `/keys/changes` show of them. Keys are real ed25519 keys (libsodium).
@Suite("Cross-signing over real sockets")
struct CrossSigningTests {
    /// An ed25519 key pair and the JSON signing of the appendix, under any key id.
    struct Ed25519 {
        let key = SigningKey.generate()
        var publicKey: String { key.verifyKey.base64 }
        var keyID: String { "ed25519:" + publicKey }

        /// `json` with a signature by this key added under `signatures.<user>.<keyID>`.
        func sign(_ json: JSON, as user: String, keyID: String? = nil) throws -> JSON {
            var stripped = try #require(json.objectValue)
            let signatures = stripped.removeValue(forKey: "signatures")
            stripped.removeValue(forKey: "unsigned")
            let signature = Base64.encode(key.signature(for: try JSON.object(stripped).canonicalEncoded()))
            var all = signatures?.objectValue ?? [:]
            var mine = all[user]?.objectValue ?? [:]
            mine[keyID ?? self.keyID] = .string(signature)
            all[user] = .object(mine)
            var signed = try #require(json.objectValue)
            signed["signatures"] = .object(all)
            return .object(signed)
        }

        /// The public cross-signing key of `user` for `usage`, unsigned.
        func crossSigningKey(_ user: String, _ usage: String) -> JSON {
            ["user_id": .string(user), "usage": [.string(usage)], "keys": .object([keyID: .string(publicKey)])]
        }
    }

    /// A user's three cross-signing keys, the self-signing and user-signing ones signed by the
    /// master key.
    struct Identity {
        let user: String
        let master = Ed25519(), selfSigning = Ed25519(), userSigning = Ed25519()

        var masterJSON: JSON { master.crossSigningKey(user, "master") }
        func selfSigningJSON() throws -> JSON { try master.sign(selfSigning.crossSigningKey(user, "self_signing"), as: user) }
        func userSigningJSON() throws -> JSON { try master.sign(userSigning.crossSigningKey(user, "user_signing"), as: user) }
        func upload() throws -> JSON {
            ["master_key": masterJSON, "self_signing_key": try selfSigningJSON(), "user_signing_key": try userSigningJSON()]
        }
    }

    static let backends = MediaTest.backends

    static func password(_ user: String) -> JSON {
        ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": .string(user)], "password": "correct horse"]
    }

    /// A registered user with a unique name: (client, full user id, localpart).
    static func user(_ port: Int, _ base: String) async throws -> (MatrixTestClient, String, String) {
        let name = MediaTest.uniqueName(base)
        let client = try await MediaTest.user(port, name)
        let whoami = try await client.call("GET", "/account/whoami")
        return (client, try #require(whoami.json["user_id"]?.stringValue), name)
    }

    /// Uploads signed device keys for the client's device: (device id, device key, the JSON).
    static func uploadDevice(_ client: MatrixTestClient, _ user: String) async throws -> (String, Ed25519, JSON) {
        let device = try #require(try await client.call("GET", "/account/whoami").json["device_id"]?.stringValue)
        let key = Ed25519()
        let keys: JSON = .object([
            "user_id": .string(user), "device_id": .string(device),
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": .object(["curve25519:\(device)": "Y3VydmU", "ed25519:\(device)": .string(key.publicKey)]),
        ])
        let signed = try key.sign(keys, as: user, keyID: "ed25519:\(device)")
        #expect(try await client.call("POST", "/keys/upload", ["device_keys": signed]).status == 200)
        return (device, key, signed)
    }

    @Test("A forged self-signing or user-signing key is refused with 400, a valid chain accepted", arguments: backends)
    func forgedKeysRefused(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let (alice, me, _) = try await Self.user(port, "alice")
            let identity = Identity(user: me)
            let forger = Ed25519()

            // Signed by another key than the master key, under the forger's id or the master's.
            let forgedSelf = try forger.sign(identity.selfSigning.crossSigningKey(me, "self_signing"), as: me)
            let forgedAsMaster = try forger.sign(identity.selfSigning.crossSigningKey(me, "self_signing"), as: me,
                                                 keyID: identity.master.keyID)
            let unsigned = identity.selfSigning.crossSigningKey(me, "self_signing")
            for ssk in [forgedSelf, forgedAsMaster, unsigned] {
                let reply = try await alice.call("POST", "/keys/device_signing/upload",
                                                 ["master_key": identity.masterJSON, "self_signing_key": ssk])
                #expect(reply.status == 400)
                #expect(reply.errcode == "M_INVALID_SIGNATURE")
            }
            // The master key signed a different key than the one uploaded.
            var tampered = try #require(try identity.selfSigningJSON().objectValue)
            tampered["keys"] = .object([forger.keyID: .string(forger.publicKey)])
            let swapped = try await alice.call("POST", "/keys/device_signing/upload",
                                               ["master_key": identity.masterJSON, "self_signing_key": .object(tampered)])
            #expect(swapped.errcode == "M_INVALID_SIGNATURE")
            let forgedUser = try await alice.call("POST", "/keys/device_signing/upload", [
                "master_key": identity.masterJSON, "user_signing_key": try forger.sign(identity.userSigning.crossSigningKey(me, "user_signing"), as: me),
            ])
            #expect(forgedUser.status == 400)
            #expect(forgedUser.errcode == "M_INVALID_SIGNATURE")
            // No master key anywhere: nothing can be checked.
            let orphan = try await alice.call("POST", "/keys/device_signing/upload", ["self_signing_key": try identity.selfSigningJSON()])
            #expect(orphan.status == 400)
            #expect(orphan.errcode == "M_MISSING_PARAM")
            // Refused uploads stored nothing.
            let empty = try await alice.call("POST", "/keys/query", ["device_keys": .object([me: []])])
            #expect(empty.json["master_keys"]?[me] == nil)
            #expect(empty.json["self_signing_keys"]?[me] == nil)

            // Malformed keys.
            var twoKeys = try #require(identity.masterJSON.objectValue)
            twoKeys["keys"] = .object([identity.master.keyID: .string(identity.master.publicKey), forger.keyID: .string(forger.publicKey)])
            var wrongID = try #require(identity.masterJSON.objectValue)
            wrongID["keys"] = .object(["ed25519:MASTER": .string(identity.master.publicKey)])
            var shortKey = try #require(identity.masterJSON.objectValue)
            shortKey["keys"] = ["ed25519:AAAA": "AAAA"]
            for bad in [JSON.object(twoKeys), .object(wrongID), .object(shortKey), identity.master.crossSigningKey(me, "self_signing"),
                        identity.master.crossSigningKey("@someone:localhost", "master")] {
                let reply = try await alice.call("POST", "/keys/device_signing/upload", ["master_key": bad])
                #expect(reply.status == 400)
                #expect(reply.errcode == "M_INVALID_PARAM")
            }

            // The valid chain is accepted and served.
            #expect(try await alice.call("POST", "/keys/device_signing/upload", try identity.upload()).status == 200)
            let query = try await alice.call("POST", "/keys/query", ["device_keys": .object([me: []])])
            #expect(query.json["master_keys"]?[me]?["keys"]?[identity.master.keyID]?.stringValue == identity.master.publicKey)
            #expect(query.json["self_signing_keys"]?[me]?["signatures"]?[me]?[identity.master.keyID] != nil)
            #expect(query.json["user_signing_keys"]?[me]?["keys"]?[identity.userSigning.keyID] != nil)

            // With a master key stored, a forged key is still a 400 (checked before any
            // password is asked for), against the stored master key.
            let replacement = Ed25519()
            let later = try await alice.call("POST", "/keys/device_signing/upload",
                                             ["self_signing_key": try forger.sign(replacement.crossSigningKey(me, "self_signing"), as: me)])
            #expect(later.status == 400)
            #expect(later.errcode == "M_INVALID_SIGNATURE")
            let laterAuthed = try await alice.call("POST", "/keys/device_signing/upload", [
                "self_signing_key": try forger.sign(replacement.crossSigningKey(me, "self_signing"), as: me, keyID: identity.master.keyID),
                "auth": Self.password(me),
            ])
            #expect(laterAuthed.errcode == "M_INVALID_SIGNATURE")
            let kept = try await alice.call("POST", "/keys/query", ["device_keys": .object([me: []])])
            #expect(kept.json["self_signing_keys"]?[me]?["keys"]?[identity.selfSigning.keyID] != nil)

            // Device ids and cross-signing keys share a namespace: a key named like a device is
            // refused, and so is a login asking for a cross-signing key as its device id.
            let named = Ed25519()
            let second = try await alice.call("POST", "/login", ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": .string(me)],
                                                                 "password": "correct horse", "device_id": .string(named.publicKey)])
            #expect(second.status == 200)
            let clash = try await alice.call("POST", "/keys/device_signing/upload", [
                "self_signing_key": try identity.master.sign(named.crossSigningKey(me, "self_signing"), as: me), "auth": Self.password(me),
            ])
            #expect(clash.status == 403)
            #expect(clash.errcode == "M_FORBIDDEN")
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": .string(me)],
                                                                "password": "correct horse", "device_id": .string(identity.master.publicKey)])
            #expect(login.status == 400)
            #expect(login.errcode == "M_INVALID_PARAM")
        }
    }

    @Test("Replacing any cross-signing key needs user-interactive auth; the first upload and a repeat do not", arguments: backends)
    func replacingNeedsAuth(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let (alice, me, _) = try await Self.user(port, "alice")
            let identity = Identity(user: me)
            #expect(try await alice.call("POST", "/keys/device_signing/upload", try identity.upload()).status == 200)
            // The same keys again (a retried request): no challenge.
            #expect(try await alice.call("POST", "/keys/device_signing/upload", try identity.upload()).status == 200)
            #expect(try await alice.call("POST", "/keys/device_signing/upload",
                                         ["master_key": identity.masterJSON]).status == 200)

            let newSelf = Ed25519(), newUser = Ed25519()
            let replaceSelf: JSON = ["self_signing_key": try identity.master.sign(newSelf.crossSigningKey(me, "self_signing"), as: me)]
            let replaceUser: JSON = ["user_signing_key": try identity.master.sign(newUser.crossSigningKey(me, "user_signing"), as: me)]
            let newIdentity = Identity(user: me)
            for replacement in [replaceSelf, replaceUser, try newIdentity.upload()] {
                let challenge = try await alice.call("POST", "/keys/device_signing/upload", replacement)
                #expect(challenge.status == 401)
                #expect(challenge.json["flows"]?[0]?["stages"] == ["m.login.password"])
            }
            // Nothing changed without the password.
            let before = try await alice.call("POST", "/keys/query", ["device_keys": .object([me: []])])
            #expect(before.json["self_signing_keys"]?[me]?["keys"]?[identity.selfSigning.keyID] != nil)
            #expect(before.json["user_signing_keys"]?[me]?["keys"]?[identity.userSigning.keyID] != nil)

            var withAuth = try #require(replaceSelf.objectValue)
            withAuth["auth"] = Self.password(me)
            #expect(try await alice.call("POST", "/keys/device_signing/upload", .object(withAuth)).status == 200)
            var wrongPassword = try #require(replaceUser.objectValue)
            wrongPassword["auth"] = ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": .string(me)], "password": "nope"]
            #expect(try await alice.call("POST", "/keys/device_signing/upload", .object(wrongPassword)).status == 401)
            var all = try #require(try newIdentity.upload().objectValue)
            all["auth"] = Self.password(me)
            #expect(try await alice.call("POST", "/keys/device_signing/upload", .object(all)).status == 200)
            let after = try await alice.call("POST", "/keys/query", ["device_keys": .object([me: []])])
            #expect(after.json["master_keys"]?[me]?["keys"]?[newIdentity.master.keyID] != nil)
            #expect(after.json["self_signing_keys"]?[me]?["keys"]?[newIdentity.selfSigning.keyID] != nil)
            #expect(after.json["user_signing_keys"]?[me]?["keys"]?[newIdentity.userSigning.keyID] != nil)
        }
    }

    @Test("signatures/upload stores valid signatures and reports each failure per key", arguments: backends)
    func signaturesUpload(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let (alice, aliceID, _) = try await Self.user(port, "alice")
            let (bob, bobID, _) = try await Self.user(port, "bob")
            let (carol, _, _) = try await Self.user(port, "carol")
            let (device, deviceKey, deviceJSON) = try await Self.uploadDevice(alice, aliceID)
            let aliceKeys = Identity(user: aliceID), bobKeys = Identity(user: bobID)
            #expect(try await alice.call("POST", "/keys/device_signing/upload", try aliceKeys.upload()).status == 200)
            #expect(try await bob.call("POST", "/keys/device_signing/upload", try bobKeys.upload()).status == 200)
            let forger = Ed25519()

            // Alice: her self-signing key signs her device, her device signs her master key;
            // failures beside them in the same request.
            let signedDevice = try aliceKeys.selfSigning.sign(deviceJSON, as: aliceID)
            let signedMaster = try deviceKey.sign(aliceKeys.masterJSON, as: aliceID, keyID: "ed25519:\(device)")
            var altered = try #require(deviceJSON.objectValue)
            altered["algorithms"] = ["m.megolm.v1.aes-sha2"]
            let own = try await alice.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                device: signedDevice,
                aliceKeys.master.publicKey: signedMaster,
                "NOSUCHDEVICE": try aliceKeys.selfSigning.sign(deviceJSON, as: aliceID),
            ])]))
            #expect(own.status == 200)
            #expect(own.json["failures"]?[aliceID]?[device] == nil)
            #expect(own.json["failures"]?[aliceID]?[aliceKeys.master.publicKey] == nil)
            #expect(own.json["failures"]?[aliceID]?["NOSUCHDEVICE"]?["errcode"] == "M_NOT_FOUND")

            let failing = try await alice.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                device: try forger.sign(deviceJSON, as: aliceID, keyID: aliceKeys.selfSigning.keyID),
                "OTHER": .null,
            ])]))
            #expect(failing.status == 400)  // a non-object is malformed input, not a failure
            // Labelled as the self-signing key but made by another; the master key signed by a
            // key of no device; a device object changed since it was stored.
            let failures = try await alice.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                device: try forger.sign(deviceJSON, as: aliceID, keyID: aliceKeys.selfSigning.keyID),
                aliceKeys.master.publicKey: try forger.sign(aliceKeys.masterJSON, as: aliceID, keyID: "ed25519:NOTADEVICE"),
            ])]))
            #expect(failures.json["failures"]?[aliceID]?[device]?["errcode"] == "M_INVALID_SIGNATURE")
            #expect(failures.json["failures"]?[aliceID]?[aliceKeys.master.publicKey]?["errcode"] == "M_INVALID_SIGNATURE")
            let mismatch = try await alice.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                device: try aliceKeys.selfSigning.sign(.object(altered), as: aliceID),
            ])]))
            #expect(mismatch.json["failures"]?[aliceID]?[device]?["errcode"] == "M_UNKNOWN")
            let unsignedByMe = try await alice.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                device: try aliceKeys.selfSigning.sign(deviceJSON, as: bobID),
            ])]))
            #expect(unsignedByMe.json["failures"]?[aliceID]?[device]?["errcode"] == "M_INVALID_SIGNATURE")

            // Bob signs Alice's master key with his user-signing key; signing anything else of
            // hers, or with another key, fails. Carol has no user-signing key.
            let bobSigns = try bobKeys.userSigning.sign(aliceKeys.masterJSON, as: bobID)
            let fromBob = try await bob.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                aliceKeys.master.publicKey: bobSigns,
                aliceKeys.selfSigning.publicKey: try bobKeys.userSigning.sign(try aliceKeys.selfSigningJSON(), as: bobID),
            ]), "@nobody:localhost": .object(["KEY": bobSigns])]))
            #expect(fromBob.status == 200)
            #expect(fromBob.json["failures"]?[aliceID]?[aliceKeys.master.publicKey] == nil)
            #expect(fromBob.json["failures"]?[aliceID]?[aliceKeys.selfSigning.publicKey]?["errcode"] == "M_NOT_FOUND")
            #expect(fromBob.json["failures"]?["@nobody:localhost"]?["KEY"]?["errcode"] == "M_NOT_FOUND")
            let forgedByBob = try await bob.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                aliceKeys.master.publicKey: try forger.sign(aliceKeys.masterJSON, as: bobID, keyID: bobKeys.userSigning.keyID),
            ])]))
            #expect(forgedByBob.json["failures"]?[aliceID]?[aliceKeys.master.publicKey]?["errcode"] == "M_INVALID_SIGNATURE")
            let fromCarol = try await carol.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                aliceKeys.master.publicKey: bobSigns,
            ])]))
            #expect(fromCarol.json["failures"]?[aliceID]?[aliceKeys.master.publicKey]?["errcode"] == "M_NOT_FOUND")

            // What each sees: Alice's own signatures are public, Bob's only to Bob.
            let byCarol = try await carol.call("POST", "/keys/query", ["device_keys": .object([aliceID: []])])
            let servedDevice = byCarol.json["device_keys"]?[aliceID]?[device]?["signatures"]?[aliceID]
            #expect(servedDevice?[aliceKeys.selfSigning.keyID] == signedDevice["signatures"]?[aliceID]?[aliceKeys.selfSigning.keyID])
            #expect(servedDevice?["ed25519:\(device)"] != nil)
            let servedMaster = byCarol.json["master_keys"]?[aliceID]?["signatures"]
            #expect(servedMaster?[aliceID]?["ed25519:\(device)"] == signedMaster["signatures"]?[aliceID]?["ed25519:\(device)"])
            #expect(servedMaster?[bobID] == nil)
            let byBob = try await bob.call("POST", "/keys/query", ["device_keys": .object([aliceID: []])])
            #expect(byBob.json["master_keys"]?[aliceID]?["signatures"]?[bobID]?[bobKeys.userSigning.keyID]
                    == bobSigns["signatures"]?[bobID]?[bobKeys.userSigning.keyID])
            #expect(byBob.json["user_signing_keys"]?[aliceID] == nil)
            // The served keys verify with the keys they name (a client's checks).
            let served = try #require(byCarol.json["device_keys"]?[aliceID]?[device])
            try CrossSigningKey.checkSignature(on: served, by: aliceID, keyID: aliceKeys.selfSigning.keyID,
                                               key: aliceKeys.selfSigning.key.verifyKey)
        }
    }

    @Test("Signing another user's master key is told to the signer alone", arguments: backends)
    func signingOthersShowsToSignerOnly(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let (alice, aliceID, _) = try await Self.user(port, "alice")
            let (bob, bobID, _) = try await Self.user(port, "bob")
            let (carol, _, _) = try await Self.user(port, "carol")
            let aliceKeys = Identity(user: aliceID), bobKeys = Identity(user: bobID)
            #expect(try await alice.call("POST", "/keys/device_signing/upload", try aliceKeys.upload()).status == 200)
            #expect(try await bob.call("POST", "/keys/device_signing/upload", try bobKeys.upload()).status == 200)
            // Carol shares a room with Alice; Bob shares none with her.
            let created = try await alice.call("POST", "/createRoom", ["preset": "public_chat"])
            let room = try #require(created.json["room_id"]?.stringValue, "\(created.status) \(created.json)")
            #expect(try await carol.call("POST", "/rooms/\(room.addingPercentEncodingForPath)/join", .object([:])).status == 200)
            let bobStart = try #require(try await bob.call("GET", "/sync").json["next_batch"]?.stringValue)
            let aliceStart = try #require(try await alice.call("GET", "/sync").json["next_batch"]?.stringValue)
            let carolStart = try #require(try await carol.call("GET", "/sync").json["next_batch"]?.stringValue)

            let upload = try await bob.call("POST", "/keys/signatures/upload", .object([aliceID: .object([
                aliceKeys.master.publicKey: try bobKeys.userSigning.sign(aliceKeys.masterJSON, as: bobID),
            ])]))
            #expect(upload.json["failures"] == .object([:]))

            let bobSync = try await bob.call("GET", "/sync?since=\(bobStart)")
            #expect(bobSync.json["device_lists"]?["changed"]?.arrayValue?.contains(.string(aliceID)) == true)
            let bobEnd = try #require(bobSync.json["next_batch"]?.stringValue)
            let changes = try await bob.call("GET", "/keys/changes?from=\(bobStart)&to=\(bobEnd)")
            #expect(changes.json["changed"]?.arrayValue?.contains(.string(aliceID)) == true)
            let aliceSync = try await alice.call("GET", "/sync?since=\(aliceStart)&timeout=0")
            #expect(aliceSync.json["device_lists"]?["changed"]?.arrayValue?.contains(.string(aliceID)) != true)
            let carolSync = try await carol.call("GET", "/sync?since=\(carolStart)&timeout=0")
            #expect(carolSync.json["device_lists"]?["changed"]?.arrayValue?.contains(.string(aliceID)) != true)
        }
    }
}
