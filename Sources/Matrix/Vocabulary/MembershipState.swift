/// The `membership` of an `m.room.member` event. Stores and events carry it as a string; the
/// comparison operators below let code compare such a string with a case
/// (`row.membership == MembershipState.join`) without spelling the literal; a `switch` over
/// such a string matches `MembershipState.join.rawValue`.
public enum MembershipState: String, Sendable, Hashable, CaseIterable {
    case join, leave, invite, ban, knock

    /// Is `string` this membership (nil is no membership, equal to no case).
    public static func == (string: String?, membership: MembershipState) -> Bool {
        string == membership.rawValue
    }

    public static func != (string: String?, membership: MembershipState) -> Bool {
        string != membership.rawValue
    }

    /// The string as it appears in event content.
    public var json: JSON { .string(rawValue) }
}

