import Testing
@testable import Matrix

// Appendix "Cryptographic Test Vectors", "Event Signing": both events, byte for byte.
@Test func eventSigningMinimalEventMatchesAppendix() throws {
    let event = try JSON.parse("""
    {"room_id": "!x:domain", "sender": "@a:domain", "origin": "domain", "origin_server_ts": 1000000,
     "signatures": {}, "hashes": {}, "type": "X", "content": {}, "prev_events": [], "auth_events": [],
     "depth": 3, "unsigned": {"age_ts": 1000000}}
    """)
    let signed = try testKey.sign(event: event, roomVersion: .v1, serverName: "domain")
    let expected = #"{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","signatures":{"domain":{"ed25519:1":"KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},"type":"X","unsigned":{"age_ts":1000000}}"#
    #expect(String(decoding: try signed.canonicalEncoded(), as: UTF8.self) == expected)
    #expect(EventHashing.hasValidContentHash(signed, roomVersion: .v1))
    try EventHashing.verifySignature(of: signed, roomVersion: .v1, entity: "domain", keyID: "ed25519:1", key: testKey.verifyKey)
}

@Test func eventSigningRedactableEventMatchesAppendix() throws {
    let event = try JSON.parse("""
    {"content": {"body": "Here is the message content"}, "event_id": "$0:domain", "origin": "domain",
     "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
     "signatures": {}, "unsigned": {"age_ts": 1000000}}
    """)
    let signed = try testKey.sign(event: event, roomVersion: .v1, serverName: "domain")
    let expected = #"{"content":{"body":"Here is the message content"},"event_id":"$0:domain","hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain","signatures":{"domain":{"ed25519:1":"Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},"type":"m.room.message","unsigned":{"age_ts":1000000}}"#
    #expect(String(decoding: try signed.canonicalEncoded(), as: UTF8.self) == expected)
    // The signature covers the redacted event: changing the body keeps it valid, the hash does not.
    var edited = signed
    edited["content"] = ["body": "changed"]
    try EventHashing.verifySignature(of: edited, roomVersion: .v1, entity: "domain", keyID: "ed25519:1", key: testKey.verifyKey)
    #expect(!EventHashing.hasValidContentHash(edited, roomVersion: .v1))
    var forged = signed
    forged["sender"] = "@v:domain"
    #expect(errorCode { try EventHashing.verifySignature(of: forged, roomVersion: .v1, entity: "domain", keyID: "ed25519:1", key: testKey.verifyKey) } == .unauthorized)
}

func sampleEvent(_ version: RoomVersion) throws -> JSON {
    try JSON.parse("""
    {"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","origin_server_ts":1000000,
     "content":{"body":"hi","msgtype":"m.text"},"prev_events":[],"auth_events":[],"depth":4,
     "unsigned":{"age":5}}
    """)
}

@Test func eventIDsAreReferenceHashesInTheRightAlphabet() throws {
    let v3 = try testKey.sign(event: try sampleEvent(.v3), roomVersion: .v3, serverName: "domain")
    let v4 = try testKey.sign(event: try sampleEvent(.v4), roomVersion: .v4, serverName: "domain")
    let hash3 = try EventHashing.referenceHash(of: v3, roomVersion: .v3)
    let hash4 = try EventHashing.referenceHash(of: v4, roomVersion: .v4)
    #expect(hash3 == hash4) // same redacted form, same signatures (same key and content)
    #expect(try EventHashing.eventID(of: v3, roomVersion: .v3).rawValue == "$" + Base64.encode(hash3))
    #expect(try EventHashing.eventID(of: v4, roomVersion: .v4).rawValue == "$" + Base64.encodeURLSafe(hash4))
    // Reference hash: sha256 of the canonical redacted event without signatures/unsigned.
    var r = Redaction.redact(v4.objectValue!, roomVersion: .v4)
    r["signatures"] = nil
    #expect(hash4 == sha256(try JSON.object(r).canonicalEncoded()))
    // The content is redacted, so editing the body does not change the ID; the hash does not either.
    var edited = v4
    edited["content"] = ["body": "other"]
    #expect(try EventHashing.eventID(of: edited, roomVersion: .v4) == EventHashing.eventID(of: v4, roomVersion: .v4))
    var moved = v4
    moved["depth"] = 5
    #expect(try EventHashing.eventID(of: moved, roomVersion: .v4) != EventHashing.eventID(of: v4, roomVersion: .v4))
    // Unsigned data never changes the ID.
    var aged = v4
    aged["unsigned"] = ["age": 99]
    #expect(try EventHashing.eventID(of: aged, roomVersion: .v4) == EventHashing.eventID(of: v4, roomVersion: .v4))
    let pdu = try PDU(json: v4, roomVersion: .v4)
    #expect(pdu.eventID.isValid(for: .v4))
}

@Test func version12CreateEventGivesTheRoomID() throws {
    let create = try testKey.sign(event: try JSON.parse("""
    {"type":"m.room.create","state_key":"","sender":"@u:domain","origin_server_ts":1,"content":{"room_version":"12"},
     "prev_events":[],"auth_events":[],"depth":1}
    """), roomVersion: .v12, serverName: "domain")
    let pdu = try PDU(json: create, roomVersion: .v12)
    #expect(pdu.roomID == nil)
    #expect(pdu.effectiveRoomID.rawValue == "!" + pdu.eventID.rawValue.dropFirst())
    #expect(pdu.effectiveRoomID.createEventID == pdu.eventID)
    #expect(try RoomID(parsing: pdu.effectiveRoomID.rawValue).isHashBased)
}

@Test func strictCanonicalJSONFromVersion6() throws {
    var e = try sampleEvent(.v6)
    e["content"] = ["n": .int(1 << 60)]
    #expect(errorCode { _ = try EventHashing.contentHash(of: e, roomVersion: .v6) } == .badJSON)
    #expect(throws: Never.self) { _ = try EventHashing.contentHash(of: e, roomVersion: .v5) }
}

@Test func pduReadsFieldsAndRejectsBadShapes() throws {
    let pdu = try PDU(bytes: Array(#"{"type":"m.room.member","state_key":"@u:d","room_id":"!r:d","sender":"@u:d","content":{"membership":"join"},"prev_events":[["$p:d",{}]],"auth_events":["$a:d"],"depth":2,"origin_server_ts":7,"event_id":"$e:d"}"#.utf8), roomVersion: .v1)
    #expect(pdu.eventID.rawValue == "$e:d")
    #expect(pdu.prevEvents.map(\.rawValue) == ["$p:d"])
    #expect(pdu.authEvents.map(\.rawValue) == ["$a:d"])
    #expect(pdu.membership == "join" && pdu.stateEntry == StateKey.member("@u:d"))
    #expect(pdu.bytes != nil)
    #expect(errorCode { _ = try PDU(json: ["type": "x"], roomVersion: .v4) } == .badJSON)
    #expect(errorCode { _ = try PDU(json: ["type": "x", "sender": "@u:d", "room_id": "!r:d", "content": []], roomVersion: .v4) } == .badJSON)
    #expect(errorCode { _ = try PDU(json: ["type": "x", "sender": "nope", "room_id": "!r:d", "content": [:]], roomVersion: .v4) } == .invalidParam)
}

@Test func sizeLimits() throws {
    func event(_ body: Int, type: String = "m.room.message", stateKey: String? = nil) throws -> PDU {
        var j: [String: JSON] = ["type": .string(type), "sender": "@u:d", "room_id": "!r:d", "origin_server_ts": 1,
                                 "content": ["body": .string(String(repeating: "x", count: body))], "prev_events": [], "auth_events": [],
                                 "depth": 1, "unsigned": ["big": .string(String(repeating: "y", count: 70_000))]]
        if let stateKey { j["state_key"] = .string(stateKey) }
        return try PDU(json: .object(j), roomVersion: .v11)
    }
    try event(60_000).checkSizeLimits() // unsigned does not count
    #expect(errorCode { try event(66_000).checkSizeLimits() } == .tooLarge)
    #expect(errorCode { try event(1, type: String(repeating: "t", count: 256)).checkSizeLimits() } == .tooLarge)
    #expect(errorCode { try event(1, stateKey: String(repeating: "s", count: 256)).checkSizeLimits() } == .tooLarge)
    try event(1, stateKey: String(repeating: "s", count: 255)).checkSizeLimits()
}
