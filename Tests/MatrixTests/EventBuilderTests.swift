import Testing
@testable import Matrix

@Test(arguments: [RoomVersion.v1, .v3, .v4, .v10, .v11, .v12])
func buildsASignedAuthorisedRoom(version: RoomVersion) throws {
    let server = try ServerName(parsing: "example.org")
    let builder = EventBuilder(roomVersion: version, signingKey: testKey, serverName: server)
    let alice = try UserID(parsing: "@alice:example.org")
    let create = try builder.createEvent(creator: alice, roomID: version.hashBasedRoomIDs ? nil : try RoomID(parsing: "!new:example.org"),
                                         originServerTS: 1)
    let roomID = create.effectiveRoomID
    #expect(roomID.isHashBased == version.hashBasedRoomIDs)
    var state: AuthState = [.create: create]
    var last = create
    var all: [PDU] = [create]
    func send(_ type: String, _ sk: String?, _ content: [String: JSON], as sender: UserID = alice) throws -> PDU {
        let e = try builder.build(type: type, sender: sender, stateKey: sk, content: content, roomID: roomID,
                                  prevEvents: [last.eventID], depth: last.depth + 1, originServerTS: last.originServerTS + 1,
                                  state: state)
        if let key = e.stateEntry { state[key] = e }
        last = e
        all.append(e)
        return e
    }
    _ = try send("m.room.member", alice.rawValue, ["membership": "join"])
    _ = try send("m.room.power_levels", "", PowerLevels.defaultContent(creator: alice.rawValue, roomVersion: version).objectValue!)
    _ = try send("m.room.join_rules", "", ["join_rule": "invite"])
    let msg = try send("m.room.message", nil, ["msgtype": "m.text", "body": "hello"])
    // A stranger cannot join an invite-only room: the builder refuses with the rule.
    let bob = try UserID(parsing: "@bob:example.org")
    #expect(errorCode { _ = try send("m.room.member", bob.rawValue, ["membership": "join"], as: bob) } == .forbidden)

    for e in all {
        #expect(e.eventID.isValid(for: version))
        #expect(EventHashing.hasValidContentHash(.object(e.json), roomVersion: version))
        try EventHashing.verifySignature(of: .object(e.json), roomVersion: version, entity: "example.org",
                                         keyID: testKey.keyID, key: testKey.verifyKey)
        // What a receiving server does: parse the bytes, recompute the ID, check auth events.
        let received = try PDU(bytes: e.bytes!, roomVersion: version)
        #expect(received.eventID == e.eventID)
        let authEvents = all.filter { e.authEvents.contains($0.eventID) }
        try EventAuth.checkAuthEvents(e, authEvents: authEvents)
    }
    #expect(msg.authEvents.contains(create.eventID) == !version.hashBasedRoomIDs)
}
