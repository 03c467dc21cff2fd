/// A room ID (appendix "Room IDs"): `!opaque:domain` in room versions 1–11, or from room
/// version 12 the create event's reference hash, `!` plus 43 URL-safe base64 characters.
public struct RoomID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String
    /// The domain of a versions 1–11 room ID; nil for hash-based room IDs.
    public let serverName: ServerName?

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        if s.contains(":") {
            let (local, server) = try Sigiled.split(s, sigil: UInt8(ascii: "!"), what: "room ID")
            guard !local.isEmpty else { throw MatrixError(.invalidParam, "Invalid room ID: empty localpart") }
            self.serverName = server
        } else {
            guard s.utf8.first == UInt8(ascii: "!"), EventID.isReferenceHash(s.utf8.dropFirst(), urlSafe: true) else {
                throw MatrixError(.invalidParam, "Invalid room ID: \(s.prefix(64))")
            }
            self.serverName = nil
        }
        self.rawValue = s
    }

    /// The room ID of a version 12 room whose create event has `eventID`: the same hash, sigil `!`.
    public init(createEventID: EventID) {
        self.rawValue = "!" + createEventID.rawValue.dropFirst()
        self.serverName = nil
    }

    /// True for room version 12's hash-based room IDs.
    public var isHashBased: Bool { serverName == nil }

    /// For hash-based room IDs, the event ID of the room's create event.
    public var createEventID: EventID? {
        guard isHashBased else { return nil }
        return EventID(unchecked: "$" + rawValue.dropFirst())
    }

    public var description: String { rawValue }
    public static func < (a: RoomID, b: RoomID) -> Bool { a.rawValue < b.rawValue }
}
