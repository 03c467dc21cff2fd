import Transport
import Matrix

/// A parsed `RoomEventFilter` / `EventFilter` (spec: "Filtering"): which events pass by
/// type (with `*` wildcards), sender, room and URL, the limit, and lazy-loading flags.
struct EventFilter: Sendable {
    var limit: Int?
    var types: [String]?
    var notTypes: [String] = []
    var senders: Set<String>?
    var notSenders: Set<String> = []
    var rooms: Set<String>?
    var notRooms: Set<String> = []
    var containsURL: Bool?
    var lazyLoadMembers = false
    var includeRedundantMembers = false
    var unreadThreadNotifications = false

    static let all = EventFilter()

    init() {}

    init(_ value: JSON?) {
        guard let object = value?.objectValue else { return }
        // Clamped: a timeline of 2^63 events is a request for a crash or the whole room.
        limit = object["limit"]?.intValue.map { Int(max(0, min($0, Int64(RequestBounds.maxTimelineLimit)))) }
        types = object["types"]?.arrayValue?.compactMap(\.stringValue)
        notTypes = object["not_types"]?.arrayValue?.compactMap(\.stringValue) ?? []
        senders = object["senders"]?.arrayValue.map { Set($0.compactMap(\.stringValue)) }
        notSenders = Set(object["not_senders"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        rooms = object["rooms"]?.arrayValue.map { Set($0.compactMap(\.stringValue)) }
        notRooms = Set(object["not_rooms"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        containsURL = object["contains_url"]?.boolValue
        lazyLoadMembers = object["lazy_load_members"]?.boolValue ?? false
        includeRedundantMembers = object["include_redundant_members"]?.boolValue ?? false
        unreadThreadNotifications = object["unread_thread_notifications"]?.boolValue ?? false
    }

    /// True when the filter lets every event through (no per-event check needed).
    var passesAll: Bool {
        types == nil && notTypes.isEmpty && senders == nil && notSenders.isEmpty && containsURL == nil
    }

    func allowsRoom(_ room: String) -> Bool {
        if notRooms.contains(room) { return false }
        if let rooms { return rooms.contains(room) }
        return true
    }

    func allows(type: String, sender: String) -> Bool {
        if notSenders.contains(sender) { return false }
        if let senders, !senders.contains(sender) { return false }
        if notTypes.contains(where: { Self.matches($0, type) }) { return false }
        if let types { return types.contains { Self.matches($0, type) } }
        return true
    }

    /// Whether no event of `type` can pass, whoever sent it: the type rules exclude it (or
    /// `senders` is empty). Lets sync skip reading what the client filtered out entirely
    /// (e.g. `"presence": {"not_types": ["*"]}`).
    func excludesEveryEvent(ofType type: String) -> Bool {
        if let senders, senders.isEmpty { return true }
        if notTypes.contains(where: { Self.matches($0, type) }) { return true }
        if let types { return !types.contains { Self.matches($0, type) } }
        return false
    }

    /// Also checks `contains_url` against the event's content (client bytes).
    func allows(type: String, sender: String, clientBytes: [UInt8]) -> Bool {
        guard allows(type: type, sender: sender) else { return false }
        if let containsURL {
            let hasURL = ((try? JSON.parse(clientBytes))?["content"]?["url"]?.stringValue) != nil
            return hasURL == containsURL
        }
        return true
    }

    /// `*` matches any run of characters (spec: "A '*' can be used as a wildcard").
    static func matches(_ pattern: String, _ value: String) -> Bool {
        guard pattern.contains("*") else { return pattern == value }
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false)
        var rest = Substring(value)
        for (index, part) in parts.enumerated() {
            if index == 0 {
                guard rest.hasPrefix(part) else { return false }
                rest = rest.dropFirst(part.count)
            } else if index == parts.count - 1 {
                return part.isEmpty || rest.hasSuffix(part)
            } else if !part.isEmpty {
                guard let range = rest.firstRange(of: part) else { return false }
                rest = rest[range.upperBound...]
            }
        }
        return true
    }
}
