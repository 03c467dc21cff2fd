/// The redaction algorithm of every room version (room version specs, "Redactions"). Used for
/// reference hashes, event signatures, and to serve redacted events.
public enum Redaction {
    static let topLevelV1: Set<String> = [
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
        "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership",
    ]
    // v11 (MSC2176) stops protecting origin, membership and prev_state.
    static let topLevelV11: Set<String> = [
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
        "prev_events", "auth_events", "origin_server_ts",
    ]

    /// Returns the redacted form of an event object.
    public static func redact(_ event: [String: JSON], roomVersion: RoomVersion) -> [String: JSON] {
        let rules = roomVersion.redaction
        let keep = rules == .v11 ? topLevelV11 : topLevelV1
        var out: [String: JSON] = [:]
        out.reserveCapacity(keep.count)
        for (k, v) in event where keep.contains(k) { out[k] = v }
        let type = event["type"]?.stringValue ?? ""
        let content = event["content"]?.objectValue ?? [:]
        out["content"] = .object(redactContent(content, type: type, rules: rules))
        return out
    }

    public static func redact(_ event: JSON, roomVersion: RoomVersion) -> JSON {
        .object(redact(event.objectValue ?? [:], roomVersion: roomVersion))
    }

    static func redactContent(_ content: [String: JSON], type: String, rules: RoomVersion.RedactionRules) -> [String: JSON] {
        var keys: [String]
        switch type {
        case EventType.roomMember:
            keys = ["membership"]
            if rules == .v9 || rules == .v11 { keys.append("join_authorised_via_users_server") }
            var out = pick(content, keys)
            // v11 keeps third_party_invite.signed (MSC3821).
            if rules == .v11, let signed = content["third_party_invite"]?["signed"] {
                out["third_party_invite"] = ["signed": signed]
            }
            return out
        case EventType.roomCreate:
            if rules == .v11 { return content } // MSC2176: the whole content
            keys = ["creator"]
        case EventType.roomJoinRules:
            keys = ["join_rule"]
            if rules == .v8 || rules == .v9 || rules == .v11 { keys.append("allow") }
        case EventType.roomPowerLevels:
            keys = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"]
            if rules == .v11 { keys.append("invite") }
        case EventType.roomAliases:
            keys = rules == .v1 ? ["aliases"] : []
        case EventType.roomHistoryVisibility:
            keys = ["history_visibility"]
        case EventType.roomRedaction:
            keys = rules == .v11 ? ["redacts"] : []
        default:
            keys = []
        }
        return pick(content, keys)
    }

    static func pick(_ content: [String: JSON], _ keys: [String]) -> [String: JSON] {
        var out: [String: JSON] = [:]
        for k in keys { if let v = content[k] { out[k] = v } }
        return out
    }
}

extension Redaction {
    /// Whether a received redaction may be applied to `target` (room version 3+ "Handling
    /// redactions"): the redacter has the redact level, or is on the same server as the original
    /// sender. In versions 1–2 the auth rules already decided, so any authorised redaction applies.
    /// `power` is the room's power levels at the redaction.
    public static func mayApply(_ redaction: PDU, to target: PDU, power: PowerLevels) -> Bool {
        guard redaction.type == EventType.roomRedaction, redaction.redacts == target.eventID else { return false }
        if redaction.roomVersion.redactionAuthRule { return true }
        if power.level(of: redaction.sender.rawValue) >= power.redact { return true }
        return redaction.sender.serverName == target.sender.serverName
    }
}
