import Testing
@testable import Matrix

/// Appendix "Cryptographic Test Vectors": seed, server name and key ID.
let testSeed = Base64.decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")!
let testKey = try! SigningKey(seed: testSeed, version: "1")

@Test func base64RoundTrips() {
    #expect(Base64.encode([]) == "")
    #expect(Base64.encode(Array("f".utf8)) == "Zg")
    #expect(Base64.encode(Array("fo".utf8)) == "Zm8")
    #expect(Base64.encode(Array("foo".utf8)) == "Zm9v")
    #expect(Base64.encodeURLSafe([0xFB, 0xFF]) == "-_8")
    #expect(Base64.encode([0xFB, 0xFF]) == "+/8")
    #expect(Base64.decode("Zm8=") == Array("fo".utf8))
    #expect(Base64.decode("-_8") == [0xFB, 0xFF])
    #expect(Base64.decode("Z") == nil)
    #expect(Base64.decode("Zm!v") == nil)
}

@Test func signingEmptyObjectMatchesAppendix() throws {
    let signed = try testKey.sign(json: [:], entity: "domain")
    #expect(signed.encodedString == #"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#)
}

@Test func signingObjectWithDataMatchesAppendix() throws {
    let signed = try testKey.sign(json: try JSON.parse(#"{"one": 1, "two": "Two"}"#), entity: "domain")
    #expect(signed.encodedString == #"{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}"#)
    try JSONSignatures.verify(signed, entity: "domain", keyID: "ed25519:1", key: testKey.verifyKey)
}

@Test func verificationFailsOnTamperingAndWrongKeys() throws {
    let signed = try testKey.sign(json: ["one": 1, "unsigned": ["age": 3]], entity: "domain")
    // unsigned is not covered.
    var changedUnsigned = signed
    changedUnsigned["unsigned"] = ["age": 4]
    try JSONSignatures.verify(changedUnsigned, entity: "domain", keyID: "ed25519:1", key: testKey.verifyKey)
    var tampered = signed
    tampered["one"] = 2
    #expect(errorCode { try JSONSignatures.verify(tampered, entity: "domain", keyID: "ed25519:1", key: testKey.verifyKey) } == .unauthorized)
    let other = SigningKey.generate()
    #expect(errorCode { try JSONSignatures.verify(signed, entity: "domain", keyID: "ed25519:1", key: other.verifyKey) } == .unauthorized)
    #expect(errorCode { try JSONSignatures.verify(signed, entity: "other", keyID: "ed25519:1", key: testKey.verifyKey) } == .unauthorized)
    #expect(JSONSignatures.ed25519KeyIDs(of: signed, entity: "domain") == ["ed25519:1"])
}

@Test func signingKeyFileRoundTripsInSynapseFormat() throws {
    let text = "ed25519 a_abcd YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n"
    let key = try SigningKey(fileContents: text)
    #expect(key.keyID == "ed25519:a_abcd")
    #expect(key.seed == testSeed)
    #expect(try SigningKey(fileContents: key.fileContents).seed == testSeed)
    #expect(key.fileContents.hasPrefix("ed25519 a_abcd "))
    #expect(errorCode { _ = try SigningKey(fileContents: "garbage") } == .invalidParam)
    #expect(errorCode { _ = try SigningKey(fileContents: "ed25519 a_x !!!") } == .invalidParam)
}

@Test func serverKeysResponseVerifiesOverCanonicalJSON() throws {
    let old = SigningKey.generate(version: "old")
    let response = testKey.serverKeysResponse(serverName: "example.org", validUntilTS: 1_700_000_000_000,
                                              oldVerifyKeys: ["ed25519:old": (old.verifyKey, 1_600_000_000_000)])
    #expect(response["server_name"]?.stringValue == "example.org")
    #expect(response["valid_until_ts"]?.intValue == 1_700_000_000_000)
    let keyB64 = try #require(response["verify_keys"]?["ed25519:1"]?["key"]?.stringValue)
    #expect(keyB64 == testKey.verifyKey.base64)
    #expect(response["old_verify_keys"]?["ed25519:old"]?["expired_ts"]?.intValue == 1_600_000_000_000)
    // Verify exactly as a remote server would: key from the body, canonical JSON minus signatures.
    try JSONSignatures.verify(response, entity: "example.org", keyID: "ed25519:1", key: try VerifyKey(base64: keyB64))
}

@Test func serverKeysParseAndCheckTheSelfSignature() throws {
    let response = testKey.serverKeysResponse(serverName: "example.org", validUntilTS: 42,
                                              oldVerifyKeys: ["ed25519:old": (SigningKey.generate().verifyKey, 7)])
    let keys = try ServerKeys(response: response, expectedServerName: "example.org")
    #expect(keys.verifyKeys["ed25519:1"] == testKey.verifyKey)
    #expect(keys.validUntilTS == 42 && keys.oldVerifyKeys["ed25519:old"]?.expiredTS == 7)
    #expect(errorCode { _ = try ServerKeys(response: response, expectedServerName: "other.org") } == .badJSON)
    var tampered = response
    tampered["valid_until_ts"] = 43
    #expect(errorCode { _ = try ServerKeys(response: tampered, expectedServerName: "example.org") } == .unauthorized)
    // A response claiming a key it was not signed with is refused.
    var extraKey = response
    extraKey["verify_keys"] = ["ed25519:1": ["key": .string(testKey.verifyKey.base64)],
                               "ed25519:2": ["key": .string(SigningKey.generate().verifyKey.base64)]]
    #expect(errorCode { _ = try ServerKeys(response: extraKey, expectedServerName: "example.org") } == .unauthorized)
}
