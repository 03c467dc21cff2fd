/// The event types the server reads or writes, by their specification names, so that a typo
/// is a compile error rather than an event that silently matches nothing. Event types are an
/// open set (clients send any type), so these are `String` constants, compared with and stored
/// as the type strings of events; the list grows with what the server understands.
public enum EventType {
    // Room state (client-server API "Room Events", "Spaces", modules).
    public static let roomCreate = "m.room.create"
    public static let roomMember = "m.room.member"
    public static let roomPowerLevels = "m.room.power_levels"
    public static let roomJoinRules = "m.room.join_rules"
    public static let roomHistoryVisibility = "m.room.history_visibility"
    public static let roomGuestAccess = "m.room.guest_access"
    public static let roomName = "m.room.name"
    public static let roomTopic = "m.room.topic"
    public static let roomAvatar = "m.room.avatar"
    public static let roomCanonicalAlias = "m.room.canonical_alias"
    /// Historical (room versions 1–5 authorise it specially).
    public static let roomAliases = "m.room.aliases"
    public static let roomEncryption = "m.room.encryption"
    public static let roomServerACL = "m.room.server_acl"
    public static let roomTombstone = "m.room.tombstone"
    public static let roomThirdPartyInvite = "m.room.third_party_invite"
    public static let spaceChild = "m.space.child"

    // Room timeline.
    public static let roomMessage = "m.room.message"
    public static let roomEncrypted = "m.room.encrypted"
    public static let roomRedaction = "m.room.redaction"
    public static let reaction = "m.reaction"
    public static let callInvite = "m.call.invite"

    // Ephemeral events and account data.
    public static let receipt = "m.receipt"
    public static let typing = "m.typing"
    public static let presence = "m.presence"
    public static let fullyRead = "m.fully_read"
    public static let tag = "m.tag"
}

/// Receipt types (client-server API "Receipts").
public enum ReceiptType {
    public static let read = "m.read"
    public static let readPrivate = "m.read.private"
}

/// Relation types of `m.relates_to.rel_type` (client-server API "Threading", "Event
/// replacements").
public enum RelationType {
    public static let thread = "m.thread"
    public static let replace = "m.replace"
}
