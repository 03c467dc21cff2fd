@testable import Matrix

/// A room under construction for auth-rule tests: builds events with fixed IDs, authorizes them
/// against the current state and applies the accepted ones.
struct TestRoom {
    let version: RoomVersion
    var state: AuthState = [:]
    var counter = 0
    var create: PDU
    var last: EventID
    var roomID: String

    init(_ version: RoomVersion, creator: String = "@alice:a", createContent: [String: JSON] = [:]) throws {
        self.version = version
        var content = createContent
        content["room_version"] = .string(version.id)
        if version.createHasCreator && content["creator"] == nil { content["creator"] = .string(creator) }
        var json: [String: JSON] = [
            "type": "m.room.create", "state_key": "", "sender": .string(creator), "content": .object(content),
            "prev_events": [], "auth_events": [], "depth": 1, "origin_server_ts": 0,
        ]
        if version.hashBasedRoomIDs {
            create = try PDU(json: .object(json), roomVersion: version)
            roomID = create.effectiveRoomID.rawValue
        } else {
            let domain = creator.split(separator: ":", maxSplits: 1).last.map(String.init) ?? "a"
            roomID = "!room:\(domain)"
            json["room_id"] = .string(roomID)
            create = try PDU(json: .object(json), roomVersion: version, eventID: EventID(parsing: "$create:a"))
        }
        state[.create] = create
        last = create.eventID
    }

    /// Builds an event (not authorized, not applied).
    mutating func make(_ type: String, sender: String, stateKey: String? = nil, content: [String: JSON] = [:],
                       prev: [EventID]? = nil, extra: [String: JSON] = [:], id: String? = nil) -> PDU {
        counter += 1
        var json: [String: JSON] = [
            "type": .string(type), "sender": .string(sender), "room_id": .string(roomID), "content": .object(content),
            "prev_events": .array((prev ?? [last]).map { .string($0.rawValue) }), "auth_events": [],
            "depth": .int(Int64(counter + 1)), "origin_server_ts": .int(Int64(counter)),
        ]
        if let stateKey { json["state_key"] = .string(stateKey) }
        for (k, v) in extra { json[k] = v }
        return try! PDU(json: .object(json), roomVersion: version, eventID: EventID(parsing: id ?? "$e\(counter):a"))
    }

    /// Authorizes against the current state; on success applies the event.
    @discardableResult
    mutating func send(_ type: String, sender: String, stateKey: String? = nil, content: [String: JSON] = [:],
                       prev: [EventID]? = nil, extra: [String: JSON] = [:]) throws(AuthError) -> PDU {
        let e = make(type, sender: sender, stateKey: stateKey, content: content, prev: prev, extra: extra)
        try EventAuth.authorize(e, against: state)
        if let key = e.stateEntry { state[key] = e }
        last = e.eventID
        return e
    }

    /// The rule that rejects the event, or nil if it is allowed. Never applies it.
    mutating func rejection(_ type: String, sender: String, stateKey: String? = nil, content: [String: JSON] = [:],
                            prev: [EventID]? = nil, extra: [String: JSON] = [:], id: String? = nil) -> String? {
        let e = make(type, sender: sender, stateKey: stateKey, content: content, prev: prev, extra: extra, id: id)
        do { try EventAuth.authorize(e, against: state) } catch { return error.rule }
        return nil
    }

    mutating func join(_ user: String) throws(AuthError) {
        try send("m.room.member", sender: user, stateKey: user, content: ["membership": "join"])
    }

    /// Create, creator joins, power levels (creator 100 before v12), public join rules.
    static func standard(_ version: RoomVersion, users: [String: JSON] = [:], joinRule: String = "public",
                         createContent: [String: JSON] = [:]) throws -> TestRoom {
        var room = try TestRoom(version, createContent: createContent)
        try room.join("@alice:a")
        var u = users
        if !version.privilegedCreators && u["@alice:a"] == nil { u["@alice:a"] = 100 }
        try room.send("m.room.power_levels", sender: "@alice:a", stateKey: "",
                      content: ["users": .object(u), "state_default": 50, "events_default": 0, "ban": 50, "kick": 50,
                                "redact": 50, "invite": 0, "users_default": 0, "events": ["m.room.power_levels": 100]])
        try room.send("m.room.join_rules", sender: "@alice:a", stateKey: "", content: ["join_rule": .string(joinRule)])
        return room
    }
}
