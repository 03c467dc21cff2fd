import Testing
@testable import Matrix

/// `CrossSigningKey`: the shape every cross-signing key must have and the signature checks
/// of the cross-signing chain, with the appendix's test key as a master key.
@Suite struct CrossSigningKeyTests {
    let user = "@alice:example.com"
    let master = testKey
    let other = try! SigningKey(seed: [UInt8](repeating: 7, count: 32), version: "x")

    func key(_ signing: SigningKey, _ usage: String, user: String? = nil) -> JSON {
        let pub = signing.verifyKey.base64
        return ["user_id": .string(user ?? self.user), "usage": [.string(usage)], "keys": .object(["ed25519:" + pub: .string(pub)])]
    }

    /// `json` signed by `signing` under `signatures.<user>.<keyID>`.
    func sign(_ json: JSON, with signing: SigningKey, keyID: String) throws -> JSON {
        var object = try #require(json.objectValue)
        object.removeValue(forKey: "signatures")
        let signature = Base64.encode(signing.signature(for: try JSON.object(object).canonicalEncoded()))
        object["signatures"] = .object([user: .object([keyID: .string(signature)])])
        return .object(object)
    }

    @Test func acceptsWellFormedKeys() throws {
        let parsed = try CrossSigningKey(key(master, "master"), userID: user, usage: .master)
        #expect(parsed.publicKey == master.verifyKey.base64)
        #expect(parsed.keyID == "ed25519:" + master.verifyKey.base64)
        #expect(parsed.verifyKey == master.verifyKey)
        // `usage` may list more than one usage; the one asked for must be among them.
        var both = try #require(key(master, "master").objectValue)
        both["usage"] = ["master", "self_signing"]
        _ = try CrossSigningKey(.object(both), userID: user, usage: .selfSigning)
    }

    @Test func refusesMalformedKeys() throws {
        let pub = master.verifyKey.base64
        var cases: [JSON] = [
            .string("not an object"),
            key(master, "master", user: "@mallory:example.com"),
            key(master, "self_signing"),
        ]
        for keys: JSON in [
            [:],
            .object(["ed25519:" + pub: .string(pub), "ed25519:AAAA": "AAAA"]),  // two keys
            .object(["ed25519:DEVICE": .string(pub)]),  // id is not the key
            .object(["curve25519:" + pub: .string(pub)]),  // not ed25519
            ["ed25519:AAAA": "AAAA"],  // not 32 bytes
            ["ed25519:!!": "!!"],  // not base64
            .object(["ed25519:" + pub: 1]),
        ] {
            var object = try #require(key(master, "master").objectValue)
            object["keys"] = keys
            cases.append(.object(object))
        }
        var badSignatures = try #require(key(master, "master").objectValue)
        badSignatures["signatures"] = "x"
        cases.append(.object(badSignatures))
        for json in cases {
            #expect(throws: MatrixError.self) { try CrossSigningKey(json, userID: user, usage: .master) }
            do {
                _ = try CrossSigningKey(json, userID: user, usage: .master)
            } catch {
                #expect(error.code == .invalidParam)
                #expect(error.status == 400)
            }
        }
    }

    @Test func checksTheMasterKeysSignature() throws {
        let masterKey = try CrossSigningKey(key(master, "master"), userID: user, usage: .master)
        let selfSigning = key(other, "self_signing")
        let signed = try sign(selfSigning, with: master, keyID: masterKey.keyID)
        try masterKey.checkSignature(on: signed)

        // Signed by another key under the master key's id; not signed; signed, then changed.
        let forged = try sign(selfSigning, with: other, keyID: masterKey.keyID)
        var changed = try #require(signed.objectValue)
        changed["usage"] = ["self_signing", "user_signing"]
        for json in [forged, selfSigning, .object(changed)] {
            do {
                try masterKey.checkSignature(on: json)
                Issue.record("accepted \(json)")
            } catch {
                #expect(error.code == .invalidSignature)
                #expect(error.status == 400)
            }
        }
        // `unsigned` is not signed: adding it keeps the signature valid.
        var withUnsigned = try #require(signed.objectValue)
        withUnsigned["unsigned"] = ["device_display_name": "phone"]
        try masterKey.checkSignature(on: .object(withUnsigned))
    }

    @Test func sameKeyIgnoresSignaturesAndUnsigned() throws {
        let a = key(master, "master")
        var b = try #require(try sign(a, with: other, keyID: "ed25519:x").objectValue)
        b["unsigned"] = ["k": "v"]
        #expect(CrossSigningKey.sameKey(a, .object(b)))
        b["usage"] = ["self_signing"]
        #expect(!CrossSigningKey.sameKey(a, .object(b)))
        #expect(!CrossSigningKey.sameKey(a, "string"))
    }
}
