/// The parsed `m.room.power_levels` content with the specification's defaults applied, plus the
/// room creators (who have infinite power from room version 12, MSC4289). Built from room state
/// by the auth rules and by handlers that check what a user may do.
public struct PowerLevels: Sendable, Equatable {
    /// The level that stands for "infinite" (v12 creators). Real levels are at most 2^53-1.
    public static let infinite: Int64 = .max

    public var ban: Int64 = 50
    public var kick: Int64 = 50
    public var invite: Int64 = 0
    public var redact: Int64 = 50
    public var eventsDefault: Int64 = 0
    public var stateDefault: Int64 = 50
    public var usersDefault: Int64 = 0
    public var events: [String: Int64] = [:]
    public var notifications: [String: Int64] = ["room": 50]
    public var users: [String: Int64] = [:]
    /// Users with infinite power (room version 12 creators).
    public var creators: Set<String> = []

    public init() {}

    /// Levels from a power levels event's content, or the no-event defaults: the creator at 100
    /// (versions 1–11; in 12 the creators are infinite anyway) and `state_default` 50. The
    /// specification says 0 without the event, but Synapse (`event_auth.get_send_level`), the
    /// reference the rooms of the federation are authorised by, keeps 50: with 0, any member
    /// of a room without power levels could send its first `m.room.power_levels` and take it
    /// over (SyTest 41power-levels). Following Synapse keeps auth decisions the same as theirs.
    /// Values that are not valid levels are ignored (the auth rules reject such events before they
    /// reach state in versions 10+; older versions accept integers as strings, MSC3667).
    public init(content: [String: JSON]?, roomVersion: RoomVersion, create: PDU?) {
        let creators = create.map { PowerLevels.creators(of: $0, roomVersion: roomVersion) } ?? []
        if roomVersion.privilegedCreators { self.creators = Set(creators) }
        guard let content else {
            if !roomVersion.privilegedCreators { for c in creators { users[c] = 100 } }
            return
        }
        let integerOnly = roomVersion.integerPowerLevels
        func level(_ key: String) -> Int64? { content[key].flatMap { PowerLevels.parseLevel($0, integerOnly: integerOnly) } }
        ban = level("ban") ?? 50
        kick = level("kick") ?? 50
        invite = level("invite") ?? 0
        redact = level("redact") ?? 50
        eventsDefault = level("events_default") ?? 0
        stateDefault = level("state_default") ?? 50
        usersDefault = level("users_default") ?? 0
        events = PowerLevels.levelMap(content["events"], integerOnly: integerOnly)
        users = PowerLevels.levelMap(content["users"], integerOnly: integerOnly)
        notifications = PowerLevels.levelMap(content["notifications"], integerOnly: integerOnly)
        if notifications["room"] == nil { notifications["room"] = 50 }
    }

    /// The room creators: `content.creator` (v1–10) or `sender` (v11+), plus
    /// `content.additional_creators` from room version 12.
    public static func creators(of create: PDU, roomVersion: RoomVersion) -> [String] {
        var out: [String] = []
        if roomVersion.createHasCreator {
            if let c = create.content["creator"]?.stringValue { out.append(c) }
        } else {
            out.append(create.sender.rawValue)
        }
        if roomVersion.privilegedCreators, let extra = create.content["additional_creators"]?.arrayValue {
            for e in extra { if let s = e.stringValue { out.append(s) } }
        }
        return out
    }

    /// A user's level: infinite for v12 creators, else `users[user]` or `users_default`.
    ///
    /// Keys match byte for byte: Swift's `String` equality (and so `Dictionary` and `Set`
    /// lookups) is Unicode canonical equivalence, under which `@\u{e9}:a` and `@e\u{301}:a`,
    /// two different user IDs, would share one level.
    public func level(of user: String) -> Int64 {
        if let index = creators.firstIndex(of: user), ExactText.equal(creators[index], user) { return PowerLevels.infinite }
        if let index = users.index(forKey: user), ExactText.equal(users[index].key, user) { return users[index].value }
        return usersDefault
    }

    /// The level needed to send an event of `type` (auth rules "required power level"),
    /// matched byte for byte as `level(of:)`.
    public func requiredLevel(eventType: String, isState: Bool) -> Int64 {
        if let index = events.index(forKey: eventType), ExactText.equal(events[index].key, eventType) {
            return events[index].value
        }
        return isState ? stateDefault : eventsDefault
    }

    /// The level needed for a notification key such as `room` (@room mentions).
    public func notificationLevel(_ key: String) -> Int64 { notifications[key] ?? 50 }

    /// Parses one level. Integers always; in versions 1–9 also strings holding an integer
    /// (leading/trailing whitespace, optional sign, leading zeros: "v1 stringy power levels")
    /// and, as Synapse's `int()` does, integral floats.
    public static func parseLevel(_ value: JSON, integerOnly: Bool) -> Int64? {
        switch value {
        case .int(let i): return i
        case .double(let d) where !integerOnly:
            guard d.isFinite, abs(d) < 9.0e15 else { return nil }
            return Int64(d.rounded(.towardZero))
        case .string(let s) where !integerOnly:
            var t = Substring(s)
            while let f = t.first, f.isWhitespace { t = t.dropFirst() }
            while let l = t.last, l.isWhitespace { t = t.dropLast() }
            var negative = false
            if t.first == "+" || t.first == "-" { negative = t.first == "-"; t = t.dropFirst() }
            guard !t.isEmpty, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            let trimmed = t.drop(while: { $0 == "0" })
            guard trimmed.utf8.count <= 16, let v = Int64(trimmed.isEmpty ? "0" : trimmed) else { return nil }
            return negative ? -v : v
        default: return nil
        }
    }

    static func levelMap(_ value: JSON?, integerOnly: Bool) -> [String: Int64] {
        guard let o = value?.objectValue else { return [:] }
        var out: [String: Int64] = [:]
        for (k, v) in o { if let l = parseLevel(v, integerOnly: integerOnly) { out[k] = l } }
        return out
    }

    /// The content a new room gets, as Synapse writes it (`handlers/room.py`): the creator at 100
    /// (not listed from version 12, where creators are infinite), invite 50, tombstone 100 (150 in
    /// version 12, so that only creators can upgrade by default).
    public static func defaultContent(creator: String, roomVersion: RoomVersion) -> JSON {
        var users: [String: JSON] = [:]
        if !roomVersion.privilegedCreators { users[creator] = 100 }
        return [
            "users": .object(users), "users_default": 0,
            "events": [
                EventType.roomName: 50, EventType.roomPowerLevels: 100, EventType.roomHistoryVisibility: 100,
                EventType.roomCanonicalAlias: 50, EventType.roomAvatar: 50,
                EventType.roomTombstone: .int(roomVersion.privilegedCreators ? 150 : 100),
                EventType.roomServerACL: 100, EventType.roomEncryption: 100,
            ],
            "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": 50, "historical": 100,
        ]
    }
}

// Checks for handlers (client-server API): the same comparisons the auth rules make, so that a
// request is refused with a clear error before an event is built.
extension PowerLevels {
    /// May `user` send an event of `eventType` (auth rule 8)?
    public func canSend(_ user: String, eventType: String, isState: Bool) -> Bool {
        level(of: user) >= requiredLevel(eventType: eventType, isState: isState)
    }

    /// May `user` invite (rule 5.4.4)?
    public func canInvite(_ user: String) -> Bool { level(of: user) >= invite }

    /// May `actor` kick `target` (rule 5.5.4)?
    public func canKick(_ actor: String, _ target: String) -> Bool {
        level(of: actor) >= kick && level(of: target) < level(of: actor)
    }

    /// May `actor` ban `target` (rule 5.6.2)?
    public func canBan(_ actor: String, _ target: String) -> Bool {
        level(of: actor) >= ban && level(of: target) < level(of: actor)
    }

    /// May `actor` unban `target` (rules 5.5.3 and 5.5.4: both the ban and the kick level)?
    public func canUnban(_ actor: String, _ target: String) -> Bool {
        level(of: actor) >= ban && canKick(actor, target)
    }

    /// May `actor` redact an event sent by `sender` ("Handling redactions": own events always,
    /// others' with the redact level)?
    public func canRedact(_ actor: String, eventSender: String) -> Bool {
        actor == eventSender || level(of: actor) >= redact
    }

    /// May `user` notify the whole room with `@room`?
    public func canNotifyRoom(_ user: String) -> Bool { level(of: user) >= notificationLevel("room") }

    /// May `user` send notifications of the kind `key` (`notifications.<key>`; push rules'
    /// `sender_notification_permission`)?
    public func canNotify(_ user: String, key: String) -> Bool { level(of: user) >= notificationLevel(key) }
}
