import Matrix

/// Current memberships (schema: `room_memberships` in `Schema.roomsClient`): each user's
/// membership in each room, with the event and position that set it. Written by the room
/// actor inside the event's transaction (the static `setMembership`); read through
/// `Database.memberships` by the membership, profile, presence and key handlers and the room
/// index (each method one read or write transaction), and by the key service's device-list
/// read inside its own snapshot (the static `membershipChanges`, `joinedMembers`,
/// `sharingARoom`).
public struct MembershipStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// A user's current membership in one room, with the event and position that set it.
    public struct Membership: Sendable, Equatable {
        public var roomID: String
        public var userID: String
        public var membership: String
        public var eventID: String
        public var streamOrdering: Int64
        public init(roomID: String, userID: String, membership: String, eventID: String, streamOrdering: Int64) {
            self.roomID = roomID; self.userID = userID; self.membership = membership
            self.eventID = eventID; self.streamOrdering = streamOrdering
        }
    }

    // MARK: one transaction each

    /// The user's membership rows (any membership), or only those with `membership`.
    public func rooms(of user: UserID, membership: String? = nil) async throws -> [Membership] {
        let user = user.rawValue
        return try await database.read { db in try Self.memberships(db, userID: user, membership: membership) }
    }

    /// The user's membership in one room, if they have one.
    public func membership(of user: UserID, in room: RoomID) async throws -> Membership? {
        let (user, room) = (user.rawValue, room.rawValue)
        return try await database.read { db in try Self.membership(db, roomID: room, userID: user) }
    }

    /// Every member row of a room (any membership).
    public func members(of room: RoomID) async throws -> [Membership] {
        let room = room.rawValue
        return try await database.read { db in try Self.members(db, roomID: room) }
    }

    /// Removes the user's row of a room they left or were banned from (`/forget`): the room
    /// no longer appears in their leave section.
    public func forget(_ room: RoomID, by user: UserID) async throws {
        let (user, room) = (user.rawValue, room.rawValue)
        try await database.write { db in try Self.forget(db, roomID: room, userID: user) }
    }

    /// Users sharing a joined room with `user` (the user included when joined anywhere).
    public func peers(of user: UserID) async throws -> [UserID] {
        let user = user.rawValue
        return try await database.read { db in try Self.roomPeers(db, userID: user) }.compactMap { try? UserID(parsing: $0) }
    }

    /// Everyone sharing a joined room with any of `users`.
    public func peers(of users: [UserID]) async throws -> Set<UserID> {
        let users = users.map(\.rawValue)
        return Set(try await database.read { db in try Self.roomPeers(db, userIDs: users) }.compactMap { try? UserID(parsing: $0) })
    }

    // MARK: inside a caller's transaction

    public static func setMembership(_ db: any SQLTransaction, _ m: Membership) throws {
        try db.execute("""
            INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                event_id = excluded.event_id, stream_ordering = excluded.stream_ordering
            """, .text(m.roomID), .text(m.userID), .text(m.membership), .text(m.eventID), .int(m.streamOrdering))
    }

    /// Every room the user has a membership row in (any membership), or only `membership`.
    static func memberships(_ db: any SQLConnection, userID: String, membership: String? = nil) throws -> [Membership] {
        let rows: [SQLRow]
        if let membership {
            rows = try db.query("""
                SELECT room_id, user_id, membership, event_id, stream_ordering FROM room_memberships
                WHERE user_id = ? AND membership = ?
                """, .text(userID), .text(membership))
        } else {
            rows = try db.query("""
                SELECT room_id, user_id, membership, event_id, stream_ordering FROM room_memberships WHERE user_id = ?
                """, .text(userID))
        }
        return try rows.map(membershipRow)
    }

    static func membership(_ db: any SQLConnection, roomID: String, userID: String) throws -> Membership? {
        try db.queryFirst("""
            SELECT room_id, user_id, membership, event_id, stream_ordering FROM room_memberships
            WHERE room_id = ? AND user_id = ?
            """, .text(roomID), .text(userID)).map(membershipRow)
    }

    /// Every member row of a room (any membership).
    static func members(_ db: any SQLConnection, roomID: String) throws -> [Membership] {
        try db.query("""
            SELECT room_id, user_id, membership, event_id, stream_ordering FROM room_memberships WHERE room_id = ?
            """, .text(roomID)).map(membershipRow)
    }

    /// Removes the user's row of a room they left (`/forget`): the room no longer appears
    /// in their leave section.
    static func forget(_ db: any SQLTransaction, roomID: String, userID: String) throws {
        try db.execute("DELETE FROM room_memberships WHERE room_id = ? AND user_id = ? AND membership IN ('leave', 'ban')",
                       .text(roomID), .text(userID))
    }

    private static func membershipRow(_ row: SQLRow) throws -> Membership {
        Membership(roomID: try row.text(0), userID: try row.text(1), membership: try row.text(2),
                   eventID: try row.text(3), streamOrdering: try row.int(4))
    }

    /// Users sharing a joined room with `userID` (the user included).
    static func roomPeers(_ db: any SQLConnection, userID: String) throws -> [String] {
        try db.query("""
            SELECT DISTINCT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
            WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'
            """, .text(userID)).map { try $0.text(0) }
    }

    /// Everyone sharing a joined room with any of `userIDs`.
    static func roomPeers(_ db: any SQLConnection, userIDs: [String]) throws -> Set<String> {
        var result = Set<String>()
        for start in stride(from: 0, to: userIDs.count, by: 500) {
            let chunk = userIDs[start..<min(start + 500, userIDs.count)]
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            for row in try db.query("""
                SELECT DISTINCT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                WHERE m1.user_id IN (\(marks)) AND m1.membership = 'join' AND m2.membership = 'join'
                """, chunk.map { .text($0) }) {
                result.insert(try row.text(0))
            }
        }
        return result
    }

    /// Membership changes in `(after, upTo]` of the rooms `userID` is or was in:
    /// (room, user, membership). Includes the user's own changes.
    public static func membershipChanges(_ db: any SQLConnection, userID: String, after: Int64,
                                         upTo: Int64) throws -> [(String, String, String)] {
        try db.query("""
            SELECT m2.room_id, m2.user_id, m2.membership FROM room_memberships m1
            JOIN room_memberships m2 ON m2.room_id = m1.room_id
            WHERE m1.user_id = ? AND (m1.membership = 'join' OR (m1.stream_ordering > ? AND m1.stream_ordering <= ?))
              AND m2.stream_ordering > ? AND m2.stream_ordering <= ?
            """, .text(userID), .int(after), .int(upTo), .int(after), .int(upTo)).map {
            (try $0.text(0), try $0.text(1), try $0.text(2))
        }
    }

    /// The joined members of `rooms`.
    public static func joinedMembers(_ db: any SQLConnection, rooms: [String]) throws -> [String] {
        var result: [String] = []
        for chunk in sqlChunks(rooms) {
            result += try db.query("""
                SELECT DISTINCT user_id FROM room_memberships WHERE membership = 'join' AND room_id IN (\(sqlPlaceholders(chunk.count)))
                """, chunk.map { .text($0) }).map { try $0.text(0) }
        }
        return result
    }

    /// Which of `users` share a joined room with `userID`.
    public static func sharingARoom(_ db: any SQLConnection, with userID: String, among users: [String]) throws -> Set<String> {
        var result = Set<String>()
        for chunk in sqlChunks(users) {
            for row in try db.query("""
                SELECT DISTINCT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'
                  AND m2.user_id IN (\(sqlPlaceholders(chunk.count)))
                """, [.text(userID)] + chunk.map { .text($0) }) {
                result.insert(try row.text(0))
            }
        }
        return result
    }
}

extension Database {
    /// Current memberships.
    public var memberships: MembershipStore { MembershipStore(database: self) }
}
