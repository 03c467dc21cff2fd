import Testing
@testable import Matrix

let latest = RoomVersion.v12

// MARK: Rule 1: m.room.create

@Test func rule1CreateEvent() throws {
    let room = try TestRoom(latest)
    try EventAuth.authorize(room.create, against: [:])
    func create(_ v: RoomVersion, _ json: [String: JSON]) throws -> PDU {
        var j: [String: JSON] = ["type": "m.room.create", "state_key": "", "sender": "@alice:a", "content": [:],
                                 "prev_events": [], "auth_events": [], "depth": 1]
        for (k, val) in json { j[k] = val }
        return try PDU(json: .object(j), roomVersion: v, eventID: EventID(parsing: "$c:a"))
    }
    func rule(_ e: PDU) -> String? {
        do { try EventAuth.authorize(e, against: [:]) } catch { return error.rule }
        return nil
    }
    #expect(rule(try create(latest, ["prev_events": ["$x:a"]])) == "1.1")
    #expect(rule(try create(latest, ["room_id": "!r:a"])) == "1.2")
    #expect(rule(try create(.v11, ["room_id": "!r:b"])) == "1.2 (v1–11)")
    #expect(rule(try create(.v11, ["room_id": "!r:a"])) == nil)
    #expect(rule(try create(latest, ["content": ["room_version": "99"]])) == "1.3")
    #expect(rule(try create(latest, ["content": ["room_version": 12]])) == "1.3")
    #expect(rule(try create(latest, ["content": ["additional_creators": "@b:a"]])) == "1.4")
    #expect(rule(try create(latest, ["content": ["additional_creators": ["not a user"]]])) == "1.4")
    #expect(rule(try create(latest, ["content": ["additional_creators": ["@bob:b"]]])) == nil)
    // additional_creators is only validated from v12.
    #expect(rule(try create(.v11, ["room_id": "!r:a", "content": ["additional_creators": "x"]])) == nil)
    // v1–10 need a creator; v11 does not.
    #expect(rule(try create(.v10, ["room_id": "!r:a"])) == "1.4 (v1–10)")
    #expect(rule(try create(.v10, ["room_id": "!r:a", "content": ["creator": "@alice:a"]])) == nil)
}

// MARK: Rule 2 (v12): room ID is the create event's ID

@Test func rule2RoomIDMustBeCreateEventID() throws {
    var room = try TestRoom.standard(latest)
    let wrongRoom = "!" + String(repeating: "B", count: 43)
    #expect(room.rejection("m.room.message", sender: "@alice:a", extra: ["room_id": .string(wrongRoom)]) == "2")
    #expect(room.rejection("m.room.message", sender: "@alice:a") == nil)
}

// MARK: Rule 3: auth events

@Test func rule3AuthEventsChecks() throws {
    var room = try TestRoom.standard(latest)
    let pl = room.state[.powerLevels]!, jr = room.state[.joinRules]!, alice = room.state[.member("@alice:a")]!
    let msg = room.make("m.room.message", sender: "@alice:a")
    try EventAuth.checkAuthEvents(msg, authEvents: [pl, alice])
    func rule(_ e: PDU, _ auth: [PDU], rejected: Set<EventID> = []) -> String? {
        do { try EventAuth.checkAuthEvents(e, authEvents: auth, rejected: { rejected.contains($0) }) } catch { return error.rule }
        return nil
    }
    #expect(rule(msg, [pl, pl]) == "3.1")
    #expect(rule(msg, [pl, jr]) == "3.2") // join rules are not selected for a message
    #expect(rule(msg, [room.create, pl]) == "3.2") // v12: create must not be listed
    #expect(rule(msg, [pl, alice], rejected: [pl.eventID]) == "3.3")
    var other = try TestRoom.standard(latest, createContent: ["x": 1])
    #expect(rule(msg, [other.state[.powerLevels]!]) == "3.5")
    _ = other.make("m.room.message", sender: "@alice:a")
    // v1–11: create is required among the auth events.
    var v11 = try TestRoom.standard(.v11)
    let m11 = v11.make("m.room.message", sender: "@alice:a")
    #expect(rule(m11, [v11.state[.powerLevels]!]) == "3.4 (v1–11)")
    #expect(rule(m11, [v11.create, v11.state[.powerLevels]!, v11.state[.member("@alice:a")]!]) == nil)
    // A member event may cite the target's membership and the join rules.
    let join = room.make("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"])
    #expect(rule(join, [pl, jr]) == nil)
}

// MARK: Rule 4: m.federate

@Test func rule4MFederate() throws {
    var room = try TestRoom.standard(latest, createContent: ["m.federate": false])
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "4")
    #expect(room.rejection("m.room.member", sender: "@carol:a", stateKey: "@carol:a", content: ["membership": "join"]) == nil)
}

// MARK: Rule 5: m.room.member

@Test func rule5_1MemberNeedsStateKeyAndMembership() throws {
    var room = try TestRoom.standard(latest)
    #expect(room.rejection("m.room.member", sender: "@bob:b", content: ["membership": "join"]) == "5.1")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b") == "5.1")
}

@Test func rule5_3JoinCreatorFirstJoin() throws {
    var room = try TestRoom(latest)
    // Only the creator may join right after create; with no join rules event the rule is invite.
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.4")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@alice:a", content: ["membership": "join"]) == nil)
    // v1–10: the creator is content.creator, not the sender.
    var old = try TestRoom(.v10, creator: "@alice:a", createContent: ["creator": "@zed:a"])
    #expect(old.rejection("m.room.member", sender: "@alice:a", stateKey: "@alice:a", content: ["membership": "join"]) == "5.3.4")
    #expect(old.rejection("m.room.member", sender: "@zed:a", stateKey: "@zed:a", content: ["membership": "join"]) == nil)
}

@Test func rule5_3JoinRules() throws {
    var room = try TestRoom.standard(latest, joinRule: "invite")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.2")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.4")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@bob:b", content: ["membership": "invite"])
    try room.join("@bob:b")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: ["membership": "ban"])
    #expect(room.rejection("m.room.member", sender: "@carol:c", stateKey: "@carol:c", content: ["membership": "join"]) == "5.3.3")

    var pub = try TestRoom.standard(latest, joinRule: "public")
    #expect(pub.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == nil)
    var priv = try TestRoom.standard(latest, joinRule: "private")
    #expect(priv.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.7")
    // knock join rule behaves as invite for joins (v7+); unknown before.
    var knock = try TestRoom.standard(latest, joinRule: "knock")
    #expect(knock.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.4")
    var knock6 = try TestRoom.standard(.v6, joinRule: "knock")
    #expect(knock6.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.7")
}

@Test func rule5_3_5RestrictedJoins() throws {
    var room = try TestRoom.standard(latest, users: ["@mod:a": 50], joinRule: "restricted")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@mod:a", content: ["membership": "invite"])
    try room.join("@mod:a")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@low:a", content: ["membership": "invite"])
    try room.join("@low:a")
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "",
                  content: ["users": ["@mod:a": 50], "invite": 10, "events": ["m.room.power_levels": 100]])
    let join: (String) -> [String: JSON] = { ["membership": "join", "join_authorised_via_users_server": .string($0)] }
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == "5.3.5.2")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@low:a")) == "5.3.5.2")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@nobody:a")) == "5.3.5.2")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@mod:a")) == nil)
    // Rule 5.2: the authorising server's signature, via the hook.
    let e = room.make("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@mod:a"))
    #expect(throws: AuthError.self) { try EventAuth.authorize(e, against: room.state, signatureCheck: { _, _ in false }) }
    try EventAuth.authorize(e, against: room.state, signatureCheck: { _, server in server.rawValue == "a" })
    // restricted is unknown before v8, knock_restricted before v10.
    var v7 = try TestRoom.standard(.v7, joinRule: "restricted")
    #expect(v7.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@alice:a")) == "5.3.7")
    var v9 = try TestRoom.standard(.v9, joinRule: "knock_restricted")
    #expect(v9.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@alice:a")) == "5.3.7")
    var v10 = try TestRoom.standard(.v10, joinRule: "knock_restricted")
    #expect(v10.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: join("@alice:a")) == nil)
}

@Test func rule5_4Invites() throws {
    var room = try TestRoom.standard(latest)
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@carol:c", content: ["membership": "invite"]) == "5.4.2")
    try room.join("@bob:b")
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["invite": 50])
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@carol:c", content: ["membership": "invite"]) == "5.4.5")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@bob:b", content: ["membership": "invite"]) == "5.4.3")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: ["membership": "invite"]) == nil)
}

@Test func rule5_4_1ThirdPartyInvites() throws {
    var room = try TestRoom.standard(latest)
    let idKey = SigningKey.generate(version: "0")
    try room.send("m.room.third_party_invite", sender: "@alice:a", stateKey: "tok",
                  content: ["public_key": .string(idKey.verifyKey.base64), "display_name": "c..."])
    func invite(_ signed: JSON?) -> [String: JSON] {
        var tpi: [String: JSON] = ["display_name": "c..."]
        if let signed { tpi["signed"] = signed }
        return ["membership": "invite", "third_party_invite": .object(tpi)]
    }
    let good = try idKey.sign(json: ["mxid": "@carol:c", "token": "tok"], entity: "id.example")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: invite(good)) == nil)
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: invite(nil)) == "5.4.1.2")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: invite(["mxid": "@carol:c"])) == "5.4.1.3")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@dave:d", content: invite(good)) == "5.4.1.4")
    let otherToken = try idKey.sign(json: ["mxid": "@carol:c", "token": "nope"], entity: "id.example")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: invite(otherToken)) == "5.4.1.5")
    let forged = try SigningKey.generate().sign(json: ["mxid": "@carol:c", "token": "tok"], entity: "id.example")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: invite(forged)) == "5.4.1.8")
    try room.join("@bob:b")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@carol:c", content: invite(good)) == "5.4.1.6")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: ["membership": "ban"])
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@carol:c", content: invite(good)) == "5.4.1.1")
}

@Test func rule5_5LeaveAndKick() throws {
    var room = try TestRoom.standard(latest, users: ["@mod:a": 50])
    try room.join("@mod:a")
    try room.join("@bob:b")
    #expect(room.rejection("m.room.member", sender: "@carol:c", stateKey: "@carol:c", content: ["membership": "leave"]) == "5.5.1")
    #expect(room.rejection("m.room.member", sender: "@carol:c", stateKey: "@bob:b", content: ["membership": "leave"]) == "5.5.2")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@mod:a", content: ["membership": "leave"]) == "5.5.5")
    #expect(room.rejection("m.room.member", sender: "@mod:a", stateKey: "@bob:b", content: ["membership": "leave"]) == nil)
    // Creators (v12) cannot be kicked by anyone, not even each other.
    #expect(room.rejection("m.room.member", sender: "@mod:a", stateKey: "@alice:a", content: ["membership": "leave"]) == "5.5.5")
    try room.send("m.room.member", sender: "@mod:a", stateKey: "@bob:b", content: ["membership": "ban"])
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@mod:a": 50], "ban": 60])
    #expect(room.rejection("m.room.member", sender: "@mod:a", stateKey: "@bob:b", content: ["membership": "leave"]) == "5.5.3")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@bob:b", content: ["membership": "leave"]) == nil)
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@alice:a", content: ["membership": "leave"]) == nil)
}

@Test func rule5_6Ban() throws {
    var room = try TestRoom.standard(latest, users: ["@mod:a": 50, "@peer:a": 50])
    try room.join("@mod:a"); try room.join("@peer:a"); try room.join("@bob:b")
    #expect(room.rejection("m.room.member", sender: "@carol:c", stateKey: "@bob:b", content: ["membership": "ban"]) == "5.6.1")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@carol:c", content: ["membership": "ban"]) == "5.6.3")
    #expect(room.rejection("m.room.member", sender: "@mod:a", stateKey: "@peer:a", content: ["membership": "ban"]) == "5.6.3")
    #expect(room.rejection("m.room.member", sender: "@mod:a", stateKey: "@bob:b", content: ["membership": "ban"]) == nil)
    #expect(room.rejection("m.room.member", sender: "@mod:a", stateKey: "@carol:c", content: ["membership": "ban"]) == nil)
}

@Test func rule5_7Knock() throws {
    var room = try TestRoom.standard(latest, joinRule: "knock")
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "knock"]) == nil)
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@carol:c", content: ["membership": "knock"]) == "5.7.2")
    try room.join("@alice:a")
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@alice:a", content: ["membership": "knock"]) == "5.7.4")
    try room.send("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "knock"])
    // A knocking user may withdraw (leave, v7+).
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "leave"]) == nil)
    var pub = try TestRoom.standard(latest, joinRule: "public")
    #expect(pub.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "knock"]) == "5.7.1")
    var kr = try TestRoom.standard(latest, joinRule: "knock_restricted")
    #expect(kr.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "knock"]) == nil)
    // Knock is an unknown membership before v7; knock_restricted is not a knock rule before v10.
    var v6 = try TestRoom.standard(.v6, joinRule: "knock")
    #expect(v6.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "knock"]) == "5.8")
    var v9 = try TestRoom.standard(.v9, joinRule: "knock_restricted")
    #expect(v9.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "knock"]) == "5.7.1")
}

@Test func rule5_8UnknownMembership() throws {
    var room = try TestRoom.standard(latest)
    #expect(room.rejection("m.room.member", sender: "@alice:a", stateKey: "@alice:a", content: ["membership": "dance"]) == "5.8")
}

// MARK: Rules 6–9

@Test func rule6SenderMustBeJoined() throws {
    var room = try TestRoom.standard(latest)
    #expect(room.rejection("m.room.message", sender: "@bob:b") == "6")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@bob:b", content: ["membership": "invite"])
    #expect(room.rejection("m.room.message", sender: "@bob:b") == "6")
    try room.join("@bob:b")
    #expect(room.rejection("m.room.message", sender: "@bob:b") == nil)
}

@Test func rule7ThirdPartyInviteNeedsInviteLevel() throws {
    var room = try TestRoom.standard(latest)
    try room.join("@bob:b")
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["invite": 10, "state_default": 0])
    #expect(room.rejection("m.room.third_party_invite", sender: "@bob:b", stateKey: "t") == "7.1")
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["invite": 0, "state_default": 100])
    // Allowed by rule 7 even though state_default would forbid it (rule 8 is not reached).
    #expect(room.rejection("m.room.third_party_invite", sender: "@bob:b", stateKey: "t") == nil)
}

@Test func rule8RequiredPowerLevel() throws {
    var room = try TestRoom.standard(latest)
    try room.join("@bob:b")
    #expect(room.rejection("m.room.topic", sender: "@bob:b", stateKey: "", content: ["topic": "t"]) == "8")
    #expect(room.rejection("m.room.topic", sender: "@alice:a", stateKey: "", content: ["topic": "t"]) == nil)
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["events": ["m.room.message": 10]])
    #expect(room.rejection("m.room.message", sender: "@bob:b") == "8")
    #expect(room.rejection("m.custom", sender: "@bob:b") == nil)
    // With no power levels event, state_default stays 50 (as Synapse; the spec says 0): a
    // member who is not the creator can send no state, power levels included.
    var bare = try TestRoom(.v10)
    try bare.join("@alice:a")
    try bare.send("m.room.join_rules", sender: "@alice:a", stateKey: "", content: ["join_rule": "public"])
    try bare.join("@bob:b")
    #expect(bare.rejection("m.room.topic", sender: "@bob:b", stateKey: "", content: ["topic": "t"]) == "8")
    #expect(bare.rejection("m.room.power_levels", sender: "@bob:b", stateKey: "", content: ["users": ["@bob:b": 100]]) == "8")
    #expect(bare.rejection("m.room.topic", sender: "@alice:a", stateKey: "", content: ["topic": "t"]) == nil)
}

@Test func rule9UserStateKeys() throws {
    var room = try TestRoom.standard(latest, users: ["@bob:b": 50])
    try room.join("@bob:b")
    #expect(room.rejection("m.custom.state", sender: "@bob:b", stateKey: "@alice:a") == "9")
    #expect(room.rejection("m.custom.state", sender: "@bob:b", stateKey: "@bob:b") == nil)
}

// MARK: Rule 10: m.room.power_levels

@Test func rule10PowerLevelsShape() throws {
    var room = try TestRoom.standard(latest)
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["ban": "50"]) == "10.1")
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["events": ["x": "1"]]) == "10.2")
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["notifications": 5]) == "10.2")
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["bob": 1]]) == "10.3")
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@bob:b": "1"]]) == "10.3")
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@alice:a": 100]]) == "10.4")
    // Versions 1–9 accept string levels (and do not run 10.1/10.2); 10.4 only exists from v12.
    var v9 = try TestRoom.standard(.v9)
    #expect(v9.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["ban": " +50 ", "users": ["@alice:a": "100"]]) == nil)
    #expect(v9.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@bob:b": "lots"]]) == "10.3")
    var v11 = try TestRoom.standard(.v11)
    #expect(v11.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@alice:a": 100]]) == nil)
    #expect(v11.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@alice:a": "100"]]) == "10.3")
}

@Test func rule10PowerLevelsChanges() throws {
    var room = try TestRoom.standard(latest, users: ["@mod:a": 50, "@high:a": 60, "@peer:a": 50])
    try room.join("@mod:a")
    let base: [String: JSON] = ["users": ["@mod:a": 50, "@high:a": 60, "@peer:a": 50], "ban": 50, "kick": 50,
                                "events": ["m.room.power_levels": 50, "m.room.name": 70], "state_default": 50]
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: .init(uniqueKeysWithValues: base.map { ($0, $1) }))
    func with(_ change: (inout [String: JSON]) -> Void) -> [String: JSON] { var c = base; change(&c); return c }
    func users(_ u: [String: JSON]) -> [String: JSON] { with { $0["users"] = .object(u) } }
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: base) == nil) // 10.5+: no change
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: with { $0["ban"] = 40 }) == nil)
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: with { $0["ban"] = 51 }) == "10.6.2")
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: with { $0["kick"] = nil }) == nil)
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: with { $0["kick"] = 55 })
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: base) == "10.6.1")
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: base)
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: with { $0["events"] = ["m.room.power_levels": 50] }) == "10.7.1")
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: with { $0["events"] = ["m.room.power_levels": 50, "m.room.name": 70, "x": 51] }) == "10.8.1")
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: with { $0["events"] = ["m.room.power_levels": 50, "m.room.name": 70, "x": 50] }) == nil)
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: users(["@mod:a": 50, "@high:a": 60])) == "10.9.1") // removes a peer at own level
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: users(["@mod:a": 50, "@high:a": 0, "@peer:a": 50])) == "10.9.1")
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: users(["@mod:a": 50, "@high:a": 60, "@peer:a": 50, "@new:a": 51])) == "10.10.1")
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: users(["@mod:a": 50, "@high:a": 60, "@peer:a": 50, "@new:a": 50])) == nil)
    #expect(room.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: users(["@mod:a": 10, "@high:a": 60, "@peer:a": 50])) == nil) // own demotion
    // notifications are checked from v6 only.
    var v5 = try TestRoom.standard(.v5, users: ["@mod:a": 50])
    try v5.join("@mod:a")
    try v5.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@alice:a": 100, "@mod:a": 50], "events": ["m.room.power_levels": 50], "notifications": ["room": 80]])
    #expect(v5.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: ["users": ["@alice:a": 100, "@mod:a": 50], "events": ["m.room.power_levels": 50], "notifications": ["room": 10]]) == nil)
    var v6 = try TestRoom.standard(.v6, users: ["@mod:a": 50])
    try v6.join("@mod:a")
    try v6.send("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@alice:a": 100, "@mod:a": 50], "events": ["m.room.power_levels": 50], "notifications": ["room": 80]])
    #expect(v6.rejection("m.room.power_levels", sender: "@mod:a", stateKey: "", content: ["users": ["@alice:a": 100, "@mod:a": 50], "events": ["m.room.power_levels": 50], "notifications": ["room": 10]]) == "10.7.1")
}

// MARK: Version-specific rules

@Test func aliasesRuleInVersions1To5() throws {
    var v5 = try TestRoom.standard(.v5)
    // Anyone, even a non-member, may send aliases for their own domain in v1–5.
    #expect(v5.rejection("m.room.aliases", sender: "@bob:b", stateKey: "b", content: ["aliases": ["#x:b"]]) == nil)
    #expect(v5.rejection("m.room.aliases", sender: "@bob:b", stateKey: "a") == "4.2 (v1–5)")
    #expect(v5.rejection("m.room.aliases", sender: "@bob:b") == "4.1 (v1–5)")
    var v6 = try TestRoom.standard(.v6)
    #expect(v6.rejection("m.room.aliases", sender: "@bob:b", stateKey: "b") == "6")
}

@Test func redactionRuleInVersions1And2() throws {
    var v2 = try TestRoom.standard(.v2)
    try v2.join("@bob:b")
    // Below the redact level: only events from the redaction's own server.
    #expect(v2.rejection("m.room.redaction", sender: "@bob:b", extra: ["redacts": "$x:a"], id: "$r:b") == "11 (v1–2)")
    #expect(v2.rejection("m.room.redaction", sender: "@bob:b", extra: ["redacts": "$x:b"], id: "$r:b") == nil)
    #expect(v2.rejection("m.room.redaction", sender: "@alice:a", extra: ["redacts": "$x:b"]) == nil)
    var v3 = try TestRoom.standard(.v3)
    try v3.join("@bob:b")
    #expect(v3.rejection("m.room.redaction", sender: "@bob:b", extra: ["redacts": "$x:a"]) == nil)
}

@Test func v12CreatorsHaveInfinitePower() throws {
    var room = try TestRoom.standard(latest, createContent: ["additional_creators": ["@co:b"]])
    try room.join("@co:b")
    try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "",
                  content: ["users": ["@top:a": 1_000_000], "events": ["m.room.power_levels": 100]])
    try room.join("@top:a")
    // An additional creator outranks any listed level and may change anything.
    #expect(room.rejection("m.room.member", sender: "@co:b", stateKey: "@top:a", content: ["membership": "ban"]) == nil)
    #expect(room.rejection("m.room.member", sender: "@top:a", stateKey: "@co:b", content: ["membership": "ban"]) == "5.6.3")
    #expect(room.rejection("m.room.power_levels", sender: "@co:b", stateKey: "", content: ["users": ["@top:a": 0]]) == nil)
    #expect(room.rejection("m.room.power_levels", sender: "@alice:a", stateKey: "", content: ["users": ["@co:b": 0]]) == "10.4")
    // In v11 the creator is an ordinary user at their listed level.
    var v11 = try TestRoom.standard(.v11, users: ["@alice:a": 100, "@top:a": 100])
    try v11.join("@top:a")
    #expect(v11.rejection("m.room.member", sender: "@top:a", stateKey: "@alice:a", content: ["membership": "ban"]) == "5.6.3")
}

@Test func authEventsSelection() throws {
    let keys = AuthEventsSelection.stateKeys(type: "m.room.member", sender: "@a:a", stateKey: "@b:b",
        content: ["membership": "invite", "third_party_invite": ["signed": ["token": "t"]]], roomVersion: .v11)
    #expect(keys == [.create, .powerLevels, .member("@a:a"), .member("@b:b"), .joinRules, StateKey("m.room.third_party_invite", "t")])
    let v12 = AuthEventsSelection.stateKeys(type: "m.room.member", sender: "@b:b", stateKey: "@b:b",
        content: ["membership": "join", "join_authorised_via_users_server": "@m:a"], roomVersion: .v12)
    #expect(v12 == [.powerLevels, .member("@b:b"), .joinRules, .member("@m:a")])
    #expect(AuthEventsSelection.stateKeys(type: "m.room.create", sender: "@a:a", stateKey: "", content: [:], roomVersion: .v1).isEmpty)
}

@Test func powerLevelParsing() {
    #expect(PowerLevels.parseLevel(" +050 ", integerOnly: false) == 50)
    #expect(PowerLevels.parseLevel("-7", integerOnly: false) == -7)
    #expect(PowerLevels.parseLevel("5.0", integerOnly: false) == nil)
    #expect(PowerLevels.parseLevel("50", integerOnly: true) == nil)
    #expect(PowerLevels.parseLevel(.double(20.0), integerOnly: false) == 20)
    let pl = PowerLevels(content: nil, roomVersion: .v11, create: nil)
    #expect(pl.stateDefault == 50 && pl.ban == 50 && pl.invite == 0)
    #expect(pl.requiredLevel(eventType: "m.room.name", isState: true) == 50)
}

@Test func knockJoinRuleLetsInvitedUsersJoinFromVersion7() throws {
    var room = try TestRoom.standard(.v7, joinRule: "knock")
    try room.send("m.room.member", sender: "@alice:a", stateKey: "@bob:b", content: ["membership": "invite"])
    #expect(room.rejection("m.room.member", sender: "@bob:b", stateKey: "@bob:b", content: ["membership": "join"]) == nil)
    #expect(room.rejection("m.room.member", sender: "@carol:c", stateKey: "@carol:c", content: ["membership": "join"]) == "5.3.4")
}

@Test func powerLevelChecksForHandlers() throws {
    let room = try TestRoom.standard(.v11, users: ["@mod:a": 50, "@peer:a": 50])
    let pl = PowerLevels(content: room.state[.powerLevels]!.content, roomVersion: .v11, create: room.create)
    #expect(pl.canSend("@alice:a", eventType: "m.room.power_levels", isState: true))
    #expect(!pl.canSend("@mod:a", eventType: "m.room.power_levels", isState: true))
    #expect(pl.canSend("@mod:a", eventType: "m.room.topic", isState: true))
    #expect(!pl.canSend("@x:a", eventType: "m.room.topic", isState: true))
    #expect(pl.canSend("@x:a", eventType: "m.room.message", isState: false))
    #expect(pl.canKick("@mod:a", "@x:a") && !pl.canKick("@mod:a", "@peer:a") && !pl.canKick("@x:a", "@y:a"))
    #expect(pl.canBan("@alice:a", "@mod:a") && !pl.canBan("@mod:a", "@alice:a"))
    #expect(pl.canUnban("@mod:a", "@x:a"))
    #expect(pl.canRedact("@x:a", eventSender: "@x:a") && !pl.canRedact("@x:a", eventSender: "@y:a") && pl.canRedact("@mod:a", eventSender: "@y:a"))
    #expect(pl.canNotifyRoom("@mod:a") && !pl.canNotifyRoom("@x:a"))
    #expect(pl.canInvite("@x:a"))
    // v12: creators outrank everyone, including for checks.
    let v12 = try TestRoom.standard(.v12, users: ["@mod:a": 100])
    let p12 = PowerLevels(content: v12.state[.powerLevels]!.content, roomVersion: .v12, create: v12.create)
    #expect(p12.level(of: "@alice:a") == PowerLevels.infinite)
    #expect(p12.canBan("@alice:a", "@mod:a") && !p12.canBan("@mod:a", "@alice:a"))
}

/// Found while writing the libFuzzer targets (bench/MICRO.md): Swift's String equality is
/// canonical equivalence, so byte-distinct user IDs and state keys were one key.
@Suite("Identifiers and state keys compare by bytes")
struct ExactIdentifierTests {
    @Test func canonicallyEquivalentIDsAreDistinct() throws {
        let nfc = "@\u{e9}:a", nfd = "@e\u{301}:a"
        #expect(nfc == nfd)  // Swift's view
        #expect(try UserID(parsing: nfc) != UserID(parsing: nfd))
        #expect(Set([try UserID(parsing: nfc), try UserID(parsing: nfd)]).count == 2)
        #expect(StateKey.member(nfc) != StateKey.member(nfd))
        var state: [StateKey: Int] = [.member(nfc): 1]
        #expect(state[.member(nfd)] == nil)
        state[.member(nfd)] = 2
        #expect(state.count == 2)
        let power = PowerLevels(content: ["users": .object([nfc: 100]), "events": .object(["m.t\u{e9}": 90])],
                                roomVersion: .v10, create: nil)
        #expect(power.level(of: nfc) == 100)
        #expect(power.level(of: nfd) == 0)
        #expect(power.requiredLevel(eventType: "m.t\u{e9}", isState: false) == 90)
        #expect(power.requiredLevel(eventType: "m.te\u{301}", isState: false) == 0)
    }
}
