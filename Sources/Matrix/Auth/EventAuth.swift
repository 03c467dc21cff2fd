/// Why an event failed the authorization rules: the rule (numbered as in the room version 12
/// specification; rules that exist only in older versions say which) and a human reason.
public struct AuthError: Error, Sendable, Equatable, CustomStringConvertible {
    public let rule: String
    public let reason: String
    public init(_ rule: String, _ reason: String) {
        self.rule = rule
        self.reason = reason
    }
    public var description: String { "auth rule \(rule): \(reason)" }
    /// The client-facing error, `M_FORBIDDEN`.
    public var matrixError: MatrixError { MatrixError(.forbidden, description) }
}

/// The room state the auth rules look at: events keyed by (type, state key). Either the
/// event's `auth_events` or the room state before the event. From room version 12 the create
/// event is not among `auth_events`; callers put it in the map anyway (it is implied by `room_id`).
public typealias AuthState = [StateKey: PDU]

/// The authorization rules of every room version (room version specifications, "Authorization
/// rules"). Called by the RoomActor for every new event, by federation on receipt, and by state
/// resolution's iterative auth checks.
public enum EventAuth {
    /// Hook for the two rules that need signature checks with remote keys: rule 5.2
    /// (`join_authorised_via_users_server`'s server signed the event). Returns whether `event`
    /// carries a valid signature from `server`. When nil the caller has already checked.
    public typealias SignatureCheck = @Sendable (_ event: PDU, _ server: ServerName) -> Bool

    /// Rules that depend only on the event and its listed auth events (rules 1 and 3): run on
    /// receipt, before the event is checked against any state. `authEvents` are the events its
    /// `auth_events` name, in order; `rejected` says whether one of them was rejected.
    public static func checkAuthEvents(_ event: PDU, authEvents: [PDU], rejected: (EventID) -> Bool = { _ in false })
        throws(AuthError)
    {
        let version = event.roomVersion
        if event.type == EventType.roomCreate {
            try checkCreate(event)
            return
        }
        var seen: Set<StateKey> = []
        let allowed = Set(AuthEventsSelection.stateKeys(for: event))
        var hasCreate = false
        for auth in authEvents {
            guard let key = auth.stateEntry else { throw AuthError("3.2", "auth event \(auth.eventID) is not a state event") }
            if !seen.insert(key).inserted { throw AuthError("3.1", "duplicate auth event for \(key)") }
            if key == .create {
                if version.hashBasedRoomIDs { throw AuthError("3.2", "m.room.create must not be an auth event in this room version") }
                hasCreate = true
            } else if !allowed.contains(key) {
                throw AuthError("3.2", "auth event \(key) is not one the auth events selection picks")
            }
            if rejected(auth.eventID) { throw AuthError("3.3", "auth event \(auth.eventID) was rejected") }
            if auth.effectiveRoomID != event.effectiveRoomID {
                throw AuthError("3.5", "auth event \(auth.eventID) belongs to another room")
            }
        }
        if !version.hashBasedRoomIDs && !hasCreate { throw AuthError("3.4 (v1–11)", "no m.room.create among the auth events") }
    }

    /// Rule 1: `m.room.create`.
    static func checkCreate(_ event: PDU) throws(AuthError) {
        let version = event.roomVersion
        if !event.prevEvents.isEmpty { throw AuthError("1.1", "m.room.create has prev_events") }
        if version.hashBasedRoomIDs {
            if event.json["room_id"] != nil { throw AuthError("1.2", "m.room.create has a room_id") }
        } else if event.roomID?.serverName != event.sender.serverName {
            throw AuthError("1.2 (v1–11)", "room ID domain does not match the sender's")
        }
        if let rv = event.content["room_version"] {
            guard let s = rv.stringValue, RoomVersion(id: s) != nil else {
                throw AuthError("1.3", "unknown room_version in m.room.create")
            }
        }
        if version.privilegedCreators, let extra = event.content["additional_creators"] {
            guard let list = extra.arrayValue else { throw AuthError("1.4", "additional_creators is not an array") }
            for e in list {
                guard let s = e.stringValue, (try? UserID(parsing: s)) != nil else {
                    throw AuthError("1.4", "additional_creators holds an invalid user ID")
                }
            }
        }
        if version.createHasCreator && event.content["creator"] == nil {
            throw AuthError("1.4 (v1–10)", "m.room.create has no creator")
        }
    }

    /// Authorizes `event` against `state` (rules 1, 2 and 4–11). Throws the first rule that fails.
    public static func authorize(_ event: PDU, against state: AuthState, signatureCheck: SignatureCheck? = nil) throws(AuthError) {
        let version = event.roomVersion
        if event.type == EventType.roomCreate {
            try checkCreate(event)
            return
        }
        guard let create = state[.create] else { throw AuthError("3.4", "no m.room.create event in the room state") }
        // Rule 2 (v12): the room ID is the create event's ID.
        if version.hashBasedRoomIDs, event.roomID != RoomID(createEventID: create.eventID) {
            throw AuthError("2", "room_id is not the ID of the room's m.room.create event")
        }
        // Rule 4: m.federate.
        if create.content["m.federate"] == .bool(false), event.sender.serverName != create.sender.serverName {
            throw AuthError("4", "the room does not federate and the sender is from another server")
        }
        // v1–5: m.room.aliases (removed by v6).
        if version.specialCaseAliasesAuth && event.type == EventType.roomAliases {
            guard let sk = event.stateKey else { throw AuthError("4.1 (v1–5)", "m.room.aliases without state_key") }
            if sk != event.sender.serverName.rawValue {
                throw AuthError("4.2 (v1–5)", "m.room.aliases state_key is not the sender's domain")
            }
            return
        }
        let power = PowerLevels(content: state[.powerLevels]?.content, roomVersion: version, create: create)
        if event.type == EventType.roomMember {
            try authorizeMember(event, state: state, create: create, power: power, signatureCheck: signatureCheck)
            return
        }
        // Rule 6.
        let sender = event.sender.rawValue
        if membership(of: sender, in: state) != MembershipState.join {
            throw AuthError("6", "\(sender) is not joined to the room")
        }
        let senderLevel = power.level(of: sender)
        // Rule 7.
        if event.type == EventType.roomThirdPartyInvite {
            if senderLevel >= power.invite { return }
            throw AuthError("7.1", "sender's power level is below the invite level")
        }
        // Rule 8.
        if power.requiredLevel(eventType: event.type, isState: event.isState) > senderLevel {
            throw AuthError("8", "sender's power level is too low to send \(event.type)")
        }
        // Rule 9.
        if let sk = event.stateKey, sk.hasPrefix("@"), sk != sender {
            throw AuthError("9", "state_key starting with @ must be the sender")
        }
        // Rule 10.
        if event.type == EventType.roomPowerLevels {
            try authorizePowerLevels(event, state: state, create: create, power: power)
            return
        }
        // v1–2: m.room.redaction has its own rule.
        if version.redactionAuthRule && event.type == EventType.roomRedaction {
            if senderLevel >= power.redact { return }
            if let target = event.redacts, let d = target.serverName, d == event.eventID.serverName { return }
            throw AuthError("11 (v1–2)", "sender may not redact this event")
        }
        // Rule 11.
    }

    static func membership(of user: String, in state: AuthState) -> String {
        state[.member(user)]?.membership ?? MembershipState.leave.rawValue
    }

    /// Rule 5: `m.room.member`.
    static func authorizeMember(_ event: PDU, state: AuthState, create: PDU, power: PowerLevels,
                                signatureCheck: SignatureCheck?) throws(AuthError) {
        let version = event.roomVersion
        guard let target = event.stateKey, let membership = event.membership else {
            throw AuthError("5.1", "m.room.member without state_key or content.membership")
        }
        let sender = event.sender.rawValue
        // Rule 5.2 (v8+).
        if version.restrictedJoinRule, let via = event.content["join_authorised_via_users_server"] {
            guard let viaText = via.stringValue, let viaUser = try? UserID(parsing: viaText) else {
                throw AuthError("5.2", "join_authorised_via_users_server is not a user ID")
            }
            if let signatureCheck, !signatureCheck(event, viaUser.serverName) {
                throw AuthError("5.2", "event is not signed by \(viaUser.serverName)")
            }
        }
        let senderMembership = EventAuth.membership(of: sender, in: state)
        let targetMembership = EventAuth.membership(of: target, in: state)
        let joinRule = state[.joinRules]?.content["join_rule"]?.stringValue ?? "invite"
        let senderLevel = power.level(of: sender)
        let targetLevel = power.level(of: target)

        switch membership {
        case MembershipState.join.rawValue:
            // 5.3.1: the creator's own first join.
            let creators = PowerLevels.creators(of: create, roomVersion: version)
            let creator = version.createHasCreator ? creators.first : create.sender.rawValue
            if event.prevEvents.count == 1, event.prevEvents[0] == create.eventID, target == creator { return }
            if sender != target { throw AuthError("5.3.2", "sender cannot join on behalf of another user") }
            if senderMembership == MembershipState.ban { throw AuthError("5.3.3", "sender is banned") }
            if joinRule == "invite" || (version.knockJoinRule && joinRule == "knock") {
                if senderMembership == MembershipState.invite || senderMembership == MembershipState.join { return }
                throw AuthError("5.3.4", "the room is invite-only and the sender is not invited")
            }
            if (version.restrictedJoinRule && joinRule == "restricted")
                || (version.knockRestrictedJoinRule && joinRule == "knock_restricted") {
                if senderMembership == MembershipState.join || senderMembership == MembershipState.invite { return }
                guard let via = event.content["join_authorised_via_users_server"]?.stringValue,
                      EventAuth.membership(of: via, in: state) == MembershipState.join, power.level(of: via) >= power.invite else {
                    throw AuthError("5.3.5.2", "join_authorised_via_users_server is not a joined user who may invite")
                }
                return
            }
            if joinRule == "public" { return }
            throw AuthError("5.3.7", "join rule \(joinRule) does not allow joining")
        case MembershipState.invite.rawValue:
            if let tpi = event.content["third_party_invite"] {
                if targetMembership == MembershipState.ban { throw AuthError("5.4.1.1", "target is banned") }
                guard let signed = tpi["signed"], signed.objectValue != nil else {
                    throw AuthError("5.4.1.2", "third_party_invite has no signed")
                }
                guard let mxid = signed["mxid"]?.stringValue, let token = signed["token"]?.stringValue else {
                    throw AuthError("5.4.1.3", "signed has no mxid and token")
                }
                if mxid != target { throw AuthError("5.4.1.4", "signed.mxid does not match state_key") }
                guard let invite = state[StateKey(EventType.roomThirdPartyInvite, token)] else {
                    throw AuthError("5.4.1.5", "no m.room.third_party_invite for the token")
                }
                if invite.sender != event.sender { throw AuthError("5.4.1.6", "sender did not send the third-party invite") }
                if thirdPartySignatureMatches(signed: signed, invite: invite) { return }
                throw AuthError("5.4.1.8", "no signature in signed matches the invite's public keys")
            }
            if senderMembership != MembershipState.join { throw AuthError("5.4.2", "sender is not joined") }
            if targetMembership == MembershipState.join || targetMembership == MembershipState.ban {
                throw AuthError("5.4.3", "target is already joined or banned")
            }
            if senderLevel >= power.invite { return }
            throw AuthError("5.4.5", "sender's power level is below the invite level")
        case MembershipState.leave.rawValue:
            if sender == target {
                if senderMembership == MembershipState.invite || senderMembership == MembershipState.join
                    || (version.knockJoinRule && senderMembership == MembershipState.knock) { return }
                throw AuthError("5.5.1", "sender cannot leave from membership \(senderMembership)")
            }
            if senderMembership != MembershipState.join { throw AuthError("5.5.2", "sender is not joined") }
            if targetMembership == MembershipState.ban && senderLevel < power.ban {
                throw AuthError("5.5.3", "sender may not unban (below the ban level)")
            }
            if senderLevel >= power.kick && targetLevel < senderLevel { return }
            throw AuthError("5.5.5", "sender may not kick the target")
        case MembershipState.ban.rawValue:
            if senderMembership != MembershipState.join { throw AuthError("5.6.1", "sender is not joined") }
            if senderLevel >= power.ban && targetLevel < senderLevel { return }
            throw AuthError("5.6.3", "sender may not ban the target")
        case MembershipState.knock.rawValue where version.knockJoinRule:
            if !(joinRule == "knock" || (version.knockRestrictedJoinRule && joinRule == "knock_restricted")) {
                throw AuthError("5.7.1", "the join rule does not allow knocking")
            }
            if sender != target { throw AuthError("5.7.2", "sender cannot knock on behalf of another user") }
            if senderMembership != MembershipState.ban && senderMembership != MembershipState.invite && senderMembership != MembershipState.join { return }
            throw AuthError("5.7.4", "sender cannot knock from membership \(senderMembership)")
        default:
            throw AuthError("5.8", "unknown membership \(membership)")
        }
    }

    /// Rule 5.4.1.7: a signature in `signed` verifies with a public key of the third-party invite.
    static func thirdPartySignatureMatches(signed: JSON, invite: PDU) -> Bool {
        var keys: [VerifyKey] = []
        if let k = invite.content["public_key"]?.stringValue, let vk = try? VerifyKey(base64: k) { keys.append(vk) }
        for entry in invite.content["public_keys"]?.arrayValue ?? [] {
            if let k = entry["public_key"]?.stringValue, let vk = try? VerifyKey(base64: k) { keys.append(vk) }
        }
        guard let signatures = signed["signatures"]?.objectValue else { return false }
        for (entity, sigs) in signatures {
            for keyID in (sigs.objectValue ?? [:]).keys where keyID.hasPrefix("ed25519:") {
                for key in keys {
                    if (try? JSONSignatures.verify(signed, entity: entity, keyID: keyID, key: key)) != nil { return true }
                }
            }
        }
        return false
    }

    static let namedLevels = ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]

    /// Rule 10: `m.room.power_levels`.
    static func authorizePowerLevels(_ event: PDU, state: AuthState, create: PDU, power: PowerLevels) throws(AuthError) {
        let version = event.roomVersion
        let content = event.content
        let integerOnly = version.integerPowerLevels
        if integerOnly {
            for key in namedLevels {
                if let v = content[key], case .int = v {} else if content[key] != nil {
                    throw AuthError("10.1", "\(key) is not an integer")
                }
            }
            for key in ["events", "notifications"] {
                guard let v = content[key] else { continue }
                guard let o = v.objectValue, o.values.allSatisfy({ if case .int = $0 { true } else { false } }) else {
                    throw AuthError("10.2", "\(key) is not an object of integers")
                }
            }
        }
        if let users = content["users"] {
            guard let o = users.objectValue else { throw AuthError("10.3", "users is not an object") }
            for (k, v) in o {
                guard (try? UserID(parsing: k)) != nil, PowerLevels.parseLevel(v, integerOnly: integerOnly) != nil else {
                    throw AuthError("10.3", "users has an invalid entry for \(k)")
                }
                if version.privilegedCreators && power.creators.contains(k) {
                    throw AuthError("10.4", "users must not list a room creator")
                }
            }
        }
        guard let previous = state[.powerLevels] else { return } // 10.5
        let old = previous.content
        let senderLevel = power.level(of: event.sender.rawValue)
        func level(_ v: JSON?) -> Int64? { v.flatMap { PowerLevels.parseLevel($0, integerOnly: integerOnly) } }
        for key in namedLevels {
            let before = level(old[key]), after = level(content[key])
            if before == after { continue }
            if let before, before > senderLevel { throw AuthError("10.6.1", "sender cannot change \(key) from \(before)") }
            if let after, after > senderLevel { throw AuthError("10.6.2", "sender cannot set \(key) to \(after)") }
        }
        var maps = ["events"]
        if version.limitNotificationsPowerLevels { maps.append("notifications") }
        for map in maps {
            let before = old[map]?.objectValue ?? [:], after = content[map]?.objectValue ?? [:]
            for key in Set(before.keys).union(after.keys) {
                let b = level(before[key]), a = level(after[key])
                if b == a { continue }
                if let b, b > senderLevel { throw AuthError("10.7.1", "sender cannot change \(map).\(key) from \(b)") }
                if let a, a > senderLevel { throw AuthError("10.8.1", "sender cannot set \(map).\(key) to \(a)") }
            }
        }
        let before = old["users"]?.objectValue ?? [:], after = content["users"]?.objectValue ?? [:]
        for user in Set(before.keys).union(after.keys) {
            let b = level(before[user]), a = level(after[user])
            if b == a { continue }
            if let b, user != event.sender.rawValue, b >= senderLevel {
                throw AuthError("10.9.1", "sender cannot change the level of \(user) from \(b)")
            }
            if let a, a > senderLevel { throw AuthError("10.10.1", "sender cannot give \(user) level \(a)") }
        }
    }
}

/// The auth events selection algorithm (server-server API "Auth events selection"): which
/// state entries an event's `auth_events` must come from. Used to build events and by rule 3.2.
public enum AuthEventsSelection {
    public static func stateKeys(type: String, sender: String, stateKey: String?, content: [String: JSON],
                                 roomVersion: RoomVersion) -> [StateKey] {
        if type == EventType.roomCreate { return [] }
        var keys: [StateKey] = []
        if !roomVersion.hashBasedRoomIDs { keys.append(.create) }
        keys.append(.powerLevels)
        keys.append(.member(sender))
        if type == EventType.roomMember, let target = stateKey {
            if target != sender { keys.append(.member(target)) }
            let membership = content["membership"]?.stringValue
            if membership == MembershipState.join || membership == MembershipState.invite || membership == MembershipState.knock { keys.append(.joinRules) }
            if membership == MembershipState.invite, let token = content["third_party_invite"]?["signed"]?["token"]?.stringValue {
                keys.append(StateKey(EventType.roomThirdPartyInvite, token))
            }
            if membership == MembershipState.join, roomVersion.restrictedJoinRule,
               let via = content["join_authorised_via_users_server"]?.stringValue, via != sender {
                keys.append(.member(via))
            }
        }
        return keys
    }

    public static func stateKeys(for event: PDU) -> [StateKey] {
        stateKeys(type: event.type, sender: event.sender.rawValue, stateKey: event.stateKey, content: event.content,
                  roomVersion: event.roomVersion)
    }
}
