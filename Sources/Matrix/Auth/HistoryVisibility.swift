/// The `history_visibility` of a room (client-server API "Room History Visibility") and the
/// rule that decides whether a user may see an event. Pure: the caller reads the state at the
/// event (the setting and the user's membership there) and says whether the user joined after
/// it; App's history filters (`/messages`, `/context`, relations, sync) call `allows`.
public enum HistoryVisibility: String, Sendable, Hashable, CaseIterable {
    case worldReadable = "world_readable"
    case shared
    case invited
    case joined

    /// The setting an `m.room.history_visibility` content value stands for: absent or not
    /// understood is `shared` (spec, "Server behaviour").
    public init(content value: String?) {
        self = value.flatMap(HistoryVisibility.init(rawValue:)) ?? .shared
    }

    /// The string as it appears in event content.
    public var json: JSON { .string(rawValue) }

    /// Settings under which an event sent before the user's membership may be hidden from them
    /// even while they are joined (`invited`, `joined`); under the others every event a joined
    /// user is shown is visible.
    public var hidesHistoryBeforeMembership: Bool { self == .invited || self == .joined }

    /// May a user see an event (spec, "Server behaviour", steps 1–5)?
    /// - `visibility`: the setting in the room's state at the event.
    /// - `membership`: the user's membership in the state at the event (nil: none).
    /// - `joinedAfter`: the user joined the room at some point after the event was sent.
    public static func allows(_ visibility: HistoryVisibility, membership: MembershipState?, joinedAfter: Bool) -> Bool {
        if visibility == .worldReadable { return true }                    // 1
        if membership == .join { return true }                             // 2
        if visibility == .shared && joinedAfter { return true }            // 3
        if membership == .invite && visibility == .invited { return true } // 4
        return false                                                       // 5
    }

    /// For an `m.room.history_visibility` event, and for the user's own `m.room.member` event:
    /// visible if the state before *or* after the event allows it (spec, "Server behaviour").
    public static func allowsChange(before: (HistoryVisibility, MembershipState?), after: (HistoryVisibility, MembershipState?),
                                    joinedAfter: Bool) -> Bool {
        allows(before.0, membership: before.1, joinedAfter: joinedAfter)
            || allows(after.0, membership: after.1, joinedAfter: joinedAfter)
    }
}
