import Matrix

/// Presence (spec: "Presence"; schema: `presence` in `Schema.clientData`), one row per user
/// positioned on the presence stream. Obtained from `Database.presence`; called by the
/// presence handlers and sync. Positions are allocated by the caller and passed in.
public struct PresenceStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The highest stored position of the presence stream (seed for its tracker).
    public static let maxPositionSQL = "SELECT MAX(stream_id) FROM presence"

    public struct Presence: Sendable, Hashable {
        public var state: String
        public var statusMessage: String?
        public var lastActiveTs: Int64
        public init(state: String, statusMessage: String?, lastActiveTs: Int64) {
            self.state = state
            self.statusMessage = statusMessage
            self.lastActiveTs = lastActiveTs
        }
    }

    public func setPresence(userID: UserID, _ presence: Presence, position: Int64) async throws {
        let userID = userID.rawValue
        try await database.write { db in
            try db.execute("""
                INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                    last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id
                """, .text(userID), .text(presence.state), .text(presence.statusMessage),
                .int(presence.lastActiveTs), .int(position))
        }
    }

    /// Stores several users' presence at one position, in one transaction.
    public func setPresences(_ entries: [(userID: UserID, presence: Presence)], position: Int64) async throws {
        let entries = entries.map { ($0.userID.rawValue, $0.presence) }
        try await database.write { db in
            for (userID, presence) in entries {
                try db.execute("""
                    INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                        last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id
                    """, .text(userID), .text(presence.state), .text(presence.statusMessage),
                    .int(presence.lastActiveTs), .int(position))
            }
        }
    }

    /// The stored presence of each of `users` that has one.
    public func presences(of users: [UserID]) async throws -> [UserID: Presence] {
        let userIDs = users.map(\.rawValue)
        return try await database.read { db in
            var result: [UserID: Presence] = [:]
            for start in stride(from: 0, to: userIDs.count, by: 500) {
                let chunk = userIDs[start..<min(start + 500, userIDs.count)]
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
                for row in try db.query("SELECT user_id, state, status_msg, last_active_ts FROM presence WHERE user_id IN (\(marks))",
                                        chunk.map { .text($0) }) {
                    guard let user = try? UserID(parsing: row.text(0)) else { continue }
                    result[user] = Presence(state: try row.text(1), statusMessage: try row.optionalText(2),
                                            lastActiveTs: try row.int(3))
                }
            }
            return result
        }
    }

    public func presence(userID: UserID) async throws -> Presence? {
        let userID = userID.rawValue
        return try await database.read { db in
            try db.queryFirst("SELECT state, status_msg, last_active_ts FROM presence WHERE user_id = ?", .text(userID))
                .map { Presence(state: try $0.text(0), statusMessage: try $0.optionalText(1), lastActiveTs: try $0.int(2)) }
        }
    }

    /// Presence of the user and of those sharing a joined room with them, changed in
    /// `(after, upTo]`: (user, state, status message, last active ts).
    public func changes(seenBy user: UserID, after: Int64, upTo: Int64) async throws -> [(String, String, String?, Int64)] {
        let user = user.rawValue
        return try await database.read { db in try Self.presenceChanges(db, userID: user, after: after, upTo: upTo) }
    }

    /// Presence of the user and of those sharing a joined room with them, changed in
    /// `(after, upTo]`: (user, state, status message, last active ts).
    static func presenceChanges(_ db: any SQLConnection, userID: String, after: Int64,
                                       upTo: Int64) throws -> [(String, String, String?, Int64)] {
        try db.query("""
            SELECT p.user_id, p.state, p.status_msg, p.last_active_ts FROM presence p
            WHERE p.stream_id > ? AND p.stream_id <= ? AND (p.user_id = ? OR p.user_id IN (
                SELECT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'))
            ORDER BY p.stream_id
            """, .int(after), .int(upTo), .text(userID), .text(userID)).map {
            (try $0.text(0), try $0.text(1), try $0.optionalText(2), try $0.int(3))
        }
    }
}

extension Database {
    /// Users' presence.
    public var presence: PresenceStore { PresenceStore(database: self) }
}
