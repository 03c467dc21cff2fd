import Testing
@testable import Matrix

func redacted(_ text: String, _ v: RoomVersion) throws -> String {
    String(decoding: try Redaction.redact(try JSON.parse(text), roomVersion: v).canonicalEncoded(), as: UTF8.self)
}

let topLevel = #""event_id":"$e:d","type":"m.room.message","room_id":"!r:d","sender":"@u:d","state_key":"","hashes":{"sha256":"x"},"signatures":{},"depth":1,"prev_events":[],"prev_state":[],"auth_events":[],"origin":"d","origin_server_ts":1,"membership":"join","unsigned":{"age":1},"extra":1"#

@Test func topLevelKeysBeforeAndFromVersion11() throws {
    let e = "{" + topLevel + #","content":{"body":"x"}}"#
    #expect(try redacted(e, .v10) == #"{"auth_events":[],"content":{},"depth":1,"event_id":"$e:d","hashes":{"sha256":"x"},"membership":"join","origin":"d","origin_server_ts":1,"prev_events":[],"prev_state":[],"room_id":"!r:d","sender":"@u:d","signatures":{},"state_key":"","type":"m.room.message"}"#)
    #expect(try redacted(e, .v11) == #"{"auth_events":[],"content":{},"depth":1,"event_id":"$e:d","hashes":{"sha256":"x"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:d","sender":"@u:d","signatures":{},"state_key":"","type":"m.room.message"}"#)
}

func content(_ type: String, _ body: String, _ v: RoomVersion) throws -> String {
    let r = Redaction.redact(try JSON.parse(#"{"type":"\#(type)","content":\#(body)}"#), roomVersion: v)
    return r["content"]!.encodedString
}

@Test func contentRulesPerVersion() throws {
    let member = #"{"membership":"join","displayname":"U","join_authorised_via_users_server":"@a:d","third_party_invite":{"signed":{"mxid":"@u:d"},"display_name":"x"}}"#
    #expect(try content("m.room.member", member, .v8) == #"{"membership":"join"}"#)
    #expect(try content("m.room.member", member, .v9) == #"{"join_authorised_via_users_server":"@a:d","membership":"join"}"#)
    #expect(try content("m.room.member", member, .v11) == #"{"join_authorised_via_users_server":"@a:d","membership":"join","third_party_invite":{"signed":{"mxid":"@u:d"}}}"#)

    let create = #"{"creator":"@u:d","room_version":"10","m.federate":false}"#
    #expect(try content("m.room.create", create, .v10) == #"{"creator":"@u:d"}"#)
    #expect(try content("m.room.create", create, .v11) == #"{"creator":"@u:d","m.federate":false,"room_version":"10"}"#)

    let joinRules = #"{"join_rule":"restricted","allow":[{"type":"m.room_membership"}],"x":1}"#
    #expect(try content("m.room.join_rules", joinRules, .v7) == #"{"join_rule":"restricted"}"#)
    #expect(try content("m.room.join_rules", joinRules, .v8) == #"{"allow":[{"type":"m.room_membership"}],"join_rule":"restricted"}"#)

    let pl = #"{"ban":50,"events":{},"events_default":0,"invite":0,"kick":50,"notifications":{"room":50},"redact":50,"state_default":50,"users":{},"users_default":0}"#
    #expect(try content("m.room.power_levels", pl, .v10) == #"{"ban":50,"events":{},"events_default":0,"kick":50,"redact":50,"state_default":50,"users":{},"users_default":0}"#)
    #expect(try content("m.room.power_levels", pl, .v11) == #"{"ban":50,"events":{},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{},"users_default":0}"#)

    #expect(try content("m.room.aliases", ##"{"aliases":["#a:d"]}"##, .v5) == ##"{"aliases":["#a:d"]}"##)
    #expect(try content("m.room.aliases", ##"{"aliases":["#a:d"]}"##, .v6) == "{}")
    #expect(try content("m.room.history_visibility", #"{"history_visibility":"shared","x":1}"#, .v1) == #"{"history_visibility":"shared"}"#)
    #expect(try content("m.room.redaction", #"{"redacts":"$x","reason":"r"}"#, .v10) == "{}")
    #expect(try content("m.room.redaction", #"{"redacts":"$x","reason":"r"}"#, .v11) == #"{"redacts":"$x"}"#)
    #expect(try content("m.room.topic", #"{"topic":"t"}"#, .v12) == "{}")
}

@Test func handlingRedactionsFromVersion3() throws {
    var room = try TestRoom.standard(.v11, users: ["@mod:b": 50])
    try room.join("@bob:b"); try room.join("@carol:c"); try room.join("@mod:b")
    let msg = try room.send("m.room.message", sender: "@carol:c", content: ["body": "x"])
    let power = PowerLevels(content: room.state[.powerLevels]!.content, roomVersion: .v11, create: room.create)
    let own = try room.send("m.room.redaction", sender: "@carol:c", content: ["redacts": .string(msg.eventID.rawValue)])
    let byOther = try room.send("m.room.redaction", sender: "@bob:b", content: ["redacts": .string(msg.eventID.rawValue)])
    let byMod = try room.send("m.room.redaction", sender: "@mod:b", content: ["redacts": .string(msg.eventID.rawValue)])
    #expect(Redaction.mayApply(own, to: msg, power: power))       // same server as the sender
    #expect(!Redaction.mayApply(byOther, to: msg, power: power))  // accepted by auth, but not applied
    #expect(Redaction.mayApply(byMod, to: msg, power: power))     // redact level
    let other = try room.send("m.room.message", sender: "@bob:b")
    #expect(!Redaction.mayApply(byMod, to: other, power: power))  // redacts a different event
}
