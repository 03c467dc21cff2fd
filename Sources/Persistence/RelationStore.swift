import Matrix

/// The SQL of event relations (schema: `Schema.relations`).
public enum RelationStore {
    public struct Relation: Sendable, Equatable {
        public var eventID: String
        public var relatesTo: String
        public var relType: String
        public var roomID: String
        public var type: String
        public var sender: String
        public var streamOrdering: Int64
        public init(eventID: String, relatesTo: String, relType: String, roomID: String, type: String, sender: String,
                    streamOrdering: Int64) {
            self.eventID = eventID; self.relatesTo = relatesTo; self.relType = relType; self.roomID = roomID
            self.type = type; self.sender = sender; self.streamOrdering = streamOrdering
        }
    }

    public static func insert(_ db: any SQLTransaction, _ r: Relation) throws {
        try db.execute("""
            INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id, type, sender, stream_ordering)
            VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING
            """, .text(r.eventID), .text(r.relatesTo), .text(r.relType), .text(r.roomID), .text(r.type), .text(r.sender),
            .int(r.streamOrdering))
    }

    /// Children of `parent` (optionally of one relation and event type) with positions in
    /// `(after, upTo]`, newest first when `backwards`.
    public static func children(_ db: any SQLConnection, parent: EventID, relType: String?, eventType: String?,
                                after: Int64, upTo: Int64, backwards: Bool, limit: Int) throws -> [RoomEventStore.EventRow] {
        var sql = """
            SELECT \(RoomEventStore.columns.split(separator: ",").map { "e." + $0.trimmingSpaces }.joined(separator: ", "))
            FROM event_relations r JOIN events e ON e.event_id = r.event_id
            WHERE r.relates_to_id = ? AND r.stream_ordering > ? AND r.stream_ordering <= ?
            """
        var bindings: [SQLValue] = [.text(parent.rawValue), .int(after), .int(upTo)]
        if let relType { sql += " AND r.rel_type = ?"; bindings.append(.text(relType)) }
        if let eventType { sql += " AND r.type = ?"; bindings.append(.text(eventType)) }
        sql += " ORDER BY r.stream_ordering \(backwards ? "DESC" : "ASC") LIMIT ?"
        bindings.append(.int(Int64(limit)))
        return try db.query(sql, bindings).map(RoomEventStore.eventRow)
    }

    /// Thread roots of a room with their reply count, newest reply position and whether
    /// `user` took part (root sender or a reply), ordered by latest activity, newest first.
    /// A root is the `m.relates_to.event_id` a client sent, not necessarily a valid event id:
    /// it stays a string until it is found among the room's events.
    public static func threads(_ db: any SQLConnection, roomID: RoomID, user: UserID, before: Int64,
                               limit: Int) throws -> [(root: String, latest: Int64, count: Int64, participated: Bool)] {
        try db.query("""
            SELECT r.relates_to_id, MAX(r.stream_ordering), COUNT(*), SUM(CASE WHEN r.sender = ? THEN 1 ELSE 0 END)
            FROM event_relations r WHERE r.room_id = ? AND r.rel_type = 'm.thread'
            GROUP BY r.relates_to_id HAVING MAX(r.stream_ordering) <= ?
            ORDER BY MAX(r.stream_ordering) DESC LIMIT ?
            """, .text(user.rawValue), .text(roomID.rawValue), .int(before), .int(Int64(limit))).map { row in
            (try row.text(0), try row.int(1), try row.int(2), try row.int(3) > 0)
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
