// libFuzzer target for event authorization (Sources/Matrix/Auth/EventAuth.swift, PowerLevels.swift,
// RoomVersion, PDU); built by scripts/fuzz-event-auth.sh together with the Matrix sources.
//
// A small room is built once per room version (1, 3, 6, 8, 10, 11, 12) with the Matrix API, each
// event authorized as it is added: create, @alice:a (creator) joins, power levels (alice 100 before
// v12, @bob:b 50, @mod:a 50), join rules (public; knock from v7), @bob:b joins, @carol:a is invited,
// @dave:a is banned, @mod:a joins, a third-party invite from alice, and a message from bob.
//
// Input: byte 0 picks the room version (low 3 bits) and the mode (bits 3-5); the rest is JSON.
//  mode 0, 4: the JSON object overlays a message template (type, sender, room_id, content, prev/auth
//          events, depth) — keys from the input win; other JSON becomes the content;
//  mode 1:    the JSON is the whole event as received (no template);
//  mode 2, 5: the JSON is the content of an m.room.power_levels event from alice (mode 5: from mod);
//             also PowerLevels(content:) and every can* check for the known users;
//  mode 3, 6: the JSON object overlays an m.room.member template (state_key, membership from input);
//  mode 7:    the JSON is the content of an m.room.create event (checkCreate, creators).
// For every PDU that can be made: EventAuth.authorize with and without a signature check,
// AuthEventsSelection, checkAuthEvents with the selected state events, the size limits, the
// redaction algorithm, Redaction.mayApply, the client form. Nothing may trap; an event that is
// authorized again gets the same outcome (the rules are pure; the reported rule may differ, see
// authorizeTwice).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEventAuth(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = data[0]
    let rooms = FuzzRooms.all
    let room = rooms[Int(selector & 7) % rooms.count]
    let mode = Int((selector >> 3) & 7)
    guard let input = try? JSON.parse(UnsafeBufferPointer(start: data + 1, count: size - 1)) else { return 0 }
    switch mode {
    case 0, 4:
        var base = room.template(type: "m.room.message", sender: mode == 0 ? "@bob:b" : "@carol:a")
        overlay(&base, input)
        tryEvent(.object(base), room)
    case 1:
        tryEvent(input, room)
    case 2, 5:
        let sender = mode == 2 ? "@alice:a" : "@mod:a"
        if let content = input.objectValue {
            let power = PowerLevels(content: content, roomVersion: room.version, create: room.create)
            exercise(power)
        }
        var base = room.template(type: "m.room.power_levels", sender: sender)
        base["state_key"] = ""
        base["content"] = input.objectValue.map { JSON.object($0) } ?? .object([:])
        tryEvent(.object(base), room)
        // Against a state whose current power levels are the input (rule 10's "before" side).
        if let content = input.objectValue {
            var state = room.state
            var prior = room.template(type: "m.room.power_levels", sender: "@alice:a")
            prior["state_key"] = ""
            prior["content"] = .object(content)
            if let pl = try? PDU(json: .object(prior), roomVersion: room.version, eventID: EventID(parsing: "$pl2:a")) {
                state[.powerLevels] = pl
                var next = room.template(type: "m.room.power_levels", sender: sender)
                next["state_key"] = ""
                next["content"] = room.state[.powerLevels]!.json["content"]!
                if let e = try? PDU(json: .object(next), roomVersion: room.version, eventID: EventID(parsing: "$pl3:a")) {
                    authorizeTwice(e, state)
                }
                for user in FuzzRooms.users {
                    if let m = try? PDU(json: .object(room.template(type: "m.room.message", sender: user)),
                                        roomVersion: room.version, eventID: EventID(parsing: "$m:a")) {
                        authorizeTwice(m, state)
                    }
                }
            }
        }
    case 3, 6:
        var base = room.template(type: "m.room.member", sender: mode == 3 ? "@bob:b" : "@eve:e")
        base["state_key"] = mode == 3 ? "@carol:a" : "@eve:e"
        base["content"] = ["membership": mode == 3 ? "invite" : "join"]
        overlay(&base, input)
        tryEvent(.object(base), room)
    default:
        var base = room.template(type: "m.room.create", sender: "@alice:a")
        base["state_key"] = ""
        base["prev_events"] = []
        base["content"] = input.objectValue.map { JSON.object($0) } ?? ["room_version": .string(room.version.id)]
        if room.version.hashBasedRoomIDs { base["room_id"] = nil }
        if let e = makePDU(.object(base), room) {
            _ = PowerLevels.creators(of: e, roomVersion: room.version)
            exercise(PowerLevels(content: room.state[.powerLevels]?.content, roomVersion: room.version, create: e))
            exercise(PowerLevels(content: nil, roomVersion: room.version, create: e))
            authorizeTwice(e, [:])
        }
    }
    return 0
}

private func overlay(_ base: inout [String: JSON], _ input: JSON) {
    if let o = input.objectValue {
        for (k, v) in o { base[k] = v }
    } else {
        base["content"] = ["body": input]
    }
}

private func makePDU(_ json: JSON, _ room: FuzzRoom) -> PDU? {
    // Versions 1–2 read event_id from the JSON; supply one when the input has none.
    var explicit: EventID? = nil
    if room.version.eventIDFormat == .opaqueWithDomain, json["event_id"]?.stringValue == nil {
        explicit = try? EventID(parsing: "$fuzz:a")
    }
    return try? PDU(json: json, roomVersion: room.version, eventID: explicit)
}

private func tryEvent(_ json: JSON, _ room: FuzzRoom) {
    _ = Redaction.redact(json, roomVersion: room.version)
    guard let e = makePDU(json, room) else { return }
    _ = try? e.checkSizeLimits()
    _ = e.clientJSON
    _ = e.redacts
    _ = e.effectiveRoomID
    let keys = AuthEventsSelection.stateKeys(for: e)
    let authEvents = keys.compactMap { room.state[$0] }
    _ = try? EventAuth.checkAuthEvents(e, authEvents: authEvents)
    _ = try? EventAuth.checkAuthEvents(e, authEvents: authEvents + [room.create], rejected: { $0 == room.create.eventID })
    authorizeTwice(e, room.state)
    _ = try? EventAuth.authorize(e, against: room.state, signatureCheck: { _, server in server.rawValue.utf8.count & 1 == 0 })
    let power = PowerLevels(content: room.state[.powerLevels]?.content, roomVersion: room.version, create: room.create)
    if e.type == "m.room.redaction" {
        _ = Redaction.mayApply(e, to: room.message, power: power)
    }
    _ = Redaction.mayApply(room.redaction, to: e, power: power)
    // Without a create event in the state, and with only the create event.
    _ = try? EventAuth.authorize(e, against: [:])
    _ = try? EventAuth.authorize(e, against: [.create: room.create])
}

private func authorizeTwice(_ e: PDU, _ state: AuthState) {
    var first: AuthError? = nil
    do { try EventAuth.authorize(e, against: state) } catch { first = error }
    var second: AuthError? = nil
    do { try EventAuth.authorize(e, against: state) } catch { second = error }
    // The outcome must not change; which failing rule is reported may (rule 10 walks a Set of
    // users, whose order differs between Set instances).
    if (first == nil) != (second == nil) {
        fatalError("authorization is not deterministic: \(String(describing: first)) vs \(String(describing: second))")
    }
}

private func exercise(_ power: PowerLevels) {
    var sink = 0
    for a in FuzzRooms.users {
        sink &+= Int(truncatingIfNeeded: power.level(of: a))
        for t in ["m.room.message", "m.room.power_levels", "m.room.name", ""] {
            if power.canSend(a, eventType: t, isState: true) { sink &+= 1 }
            if power.canSend(a, eventType: t, isState: false) { sink &+= 1 }
        }
        if power.canInvite(a) { sink &+= 1 }
        if power.canNotifyRoom(a) { sink &+= 1 }
        for b in FuzzRooms.users {
            if power.canKick(a, b) { sink &+= 1 }
            if power.canBan(a, b) { sink &+= 1 }
            if power.canUnban(a, b) { sink &+= 1 }
            if power.canRedact(a, eventSender: b) { sink &+= 1 }
        }
    }
    for (_, v) in power.users { sink &+= Int(truncatingIfNeeded: v) }
    if sink == 0x5eed { print("") }
}

struct FuzzRoom: @unchecked Sendable {
    let version: RoomVersion
    var state: AuthState = [:]
    var create: PDU
    var last: EventID
    var roomID: String
    var counter = 0
    var message: PDU! = nil
    var redaction: PDU! = nil

    init(_ version: RoomVersion) {
        self.version = version
        var content: [String: JSON] = ["room_version": .string(version.id)]
        if version.createHasCreator { content["creator"] = "@alice:a" }
        var json: [String: JSON] = [
            "type": "m.room.create", "state_key": "", "sender": "@alice:a", "content": .object(content),
            "prev_events": [], "auth_events": [], "depth": 1, "origin_server_ts": 0,
        ]
        if version.hashBasedRoomIDs {
            create = try! PDU(json: .object(json), roomVersion: version)
            roomID = create.effectiveRoomID.rawValue
        } else {
            roomID = "!room:a"
            json["room_id"] = .string(roomID)
            create = try! PDU(json: .object(json), roomVersion: version, eventID: EventID(parsing: "$create:a"))
        }
        try! EventAuth.authorize(create, against: [:])
        state[.create] = create
        last = create.eventID
        send("m.room.member", "@alice:a", stateKey: "@alice:a", ["membership": "join"])
        var users: [String: JSON] = ["@bob:b": 50, "@mod:a": 50]
        if !version.privilegedCreators { users["@alice:a"] = 100 }
        send("m.room.power_levels", "@alice:a", stateKey: "",
             ["users": .object(users), "state_default": 50, "events_default": 0, "ban": 50, "kick": 50,
              "redact": 50, "invite": 0, "users_default": 0, "events": ["m.room.power_levels": 100],
              "notifications": ["room": 20]])
        send("m.room.join_rules", "@alice:a", stateKey: "", ["join_rule": version.knockJoinRule ? "knock" : "public"])
        if version.knockJoinRule {
            send("m.room.member", "@alice:a", stateKey: "@bob:b", ["membership": "invite"])
            send("m.room.member", "@alice:a", stateKey: "@mod:a", ["membership": "invite"])
        }
        send("m.room.member", "@bob:b", stateKey: "@bob:b", ["membership": "join"])
        send("m.room.member", "@mod:a", stateKey: "@mod:a", ["membership": "join"])
        send("m.room.member", "@alice:a", stateKey: "@carol:a", ["membership": "invite"])
        send("m.room.member", "@alice:a", stateKey: "@dave:a", ["membership": "ban"])
        send("m.room.third_party_invite", "@alice:a", stateKey: "tok",
             ["display_name": "x", "key_validity_url": "https://a/", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
              "public_keys": [["public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]]])
        message = send("m.room.message", "@bob:b", stateKey: nil, ["body": "hi"])
        redaction = send("m.room.redaction", "@mod:a", stateKey: nil, ["redacts": .string(message.eventID.rawValue)],
                         extra: ["redacts": .string(message.eventID.rawValue)])
    }

    func template(type: String, sender: String) -> [String: JSON] {
        [
            "type": .string(type), "sender": .string(sender), "room_id": .string(roomID), "content": [:],
            "prev_events": [.string(last.rawValue)], "auth_events": [], "depth": 100, "origin_server_ts": 1,
        ]
    }

    @discardableResult
    mutating func send(_ type: String, _ sender: String, stateKey: String?, _ content: [String: JSON],
                       extra: [String: JSON] = [:]) -> PDU {
        counter += 1
        var json = template(type: type, sender: sender)
        json["content"] = .object(content)
        json["depth"] = .int(Int64(counter + 1))
        if let stateKey { json["state_key"] = .string(stateKey) }
        for (k, v) in extra { json[k] = v }
        let e = try! PDU(json: .object(json), roomVersion: version,
                         eventID: version.eventIDFormat == .opaqueWithDomain ? EventID(parsing: "$e\(counter):a") : nil)
        do { try EventAuth.authorize(e, against: state) } catch { fatalError("fixture event \(type) refused: \(error)") }
        if let key = e.stateEntry { state[key] = e }
        last = e.eventID
        return e
    }
}

enum FuzzRooms {
    static let users = ["@alice:a", "@bob:b", "@mod:a", "@carol:a", "@dave:a", "@eve:e", ""]
    static let all: [FuzzRoom] = [RoomVersion.v1, .v3, .v6, .v8, .v10, .v11, .v12].map(FuzzRoom.init)
}
