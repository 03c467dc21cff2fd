import Matrix

/// The SQL of full-text search (schema: `Schema.search`), one form per dialect.
public enum SearchStore {
    /// The searchable text of an event: (key, text) for `m.room.message` bodies, room names
    /// and topics.
    public static func searchable(type: String, content: [String: String]) -> (key: String, text: String)? {
        switch type {
        case "m.room.message": return content["body"].map { ("content.body", $0) }
        case "m.room.name": return content["name"].map { ("content.name", $0) }
        case "m.room.topic": return content["topic"].map { ("content.topic", $0) }
        default: return nil
        }
    }

    public static func insert(_ db: any SQLTransaction, eventID: String, roomID: String, streamOrdering: Int64,
                              key: String, text: String) throws {
        switch db.dialect {
        case .sqlite:
            try db.execute("INSERT INTO event_search (body, event_id, room_id, stream_ordering, key) VALUES (?, ?, ?, ?, ?)",
                           .text(text), .text(eventID), .text(roomID), .int(streamOrdering), .text(key))
        case .postgres:
            try db.execute("""
                INSERT INTO event_search (event_id, room_id, stream_ordering, key, vector)
                VALUES (?, ?, ?, ?, to_tsvector('english', ?)) ON CONFLICT (event_id) DO NOTHING
                """, .text(eventID), .text(roomID), .int(streamOrdering), .text(key), .text(text))
        }
    }

    public static func delete(_ db: any SQLTransaction, eventID: String) throws {
        try db.execute("DELETE FROM event_search WHERE event_id = ?", .text(eventID))
    }

    public struct Hit: Sendable {
        public var eventID: String
        public var rank: Double
        public var streamOrdering: Int64
    }

    /// Matches of `term` in `rooms` and `keys`, best first (`byRank`) or newest first; at
    /// most `limit` after skipping `offset`.
    public static func search(_ db: any SQLConnection, term: String, rooms: [RoomID], keys: [String], byRank: Bool,
                              limit: Int, offset: Int) throws -> (hits: [Hit], count: Int) {
        guard !rooms.isEmpty, !keys.isEmpty else { return ([], 0) }
        let roomMarks = Array(repeating: "?", count: rooms.count).joined(separator: ", ")
        let keyMarks = Array(repeating: "?", count: keys.count).joined(separator: ", ")
        let scope = rooms.map { SQLValue.text($0.rawValue) } + keys.map { SQLValue.text($0) }
        switch db.dialect {
        case .sqlite:
            let match = ftsQuery(term)
            guard !match.isEmpty else { return ([], 0) }
            let filter = "event_search MATCH ? AND room_id IN (\(roomMarks)) AND key IN (\(keyMarks))"
            let count = try db.queryFirst("SELECT COUNT(*) FROM event_search WHERE \(filter)", [.text(match)] + scope)?.int(0) ?? 0
            let rows = try db.query("""
                SELECT event_id, bm25(event_search), stream_ordering FROM event_search WHERE \(filter)
                ORDER BY \(byRank ? "bm25(event_search)" : "CAST(stream_ordering AS INTEGER) DESC") LIMIT ? OFFSET ?
                """, [.text(match)] + scope + [.int(Int64(limit)), .int(Int64(offset))])
            // bm25: lower is better; expose a positive rank, higher better, as Synapse does.
            return (try rows.map { Hit(eventID: try $0.text(0), rank: -(try $0.double(1)), streamOrdering: try $0.int(2)) }, Int(count))
        case .postgres:
            let filter = "vector @@ websearch_to_tsquery('english', ?) AND room_id IN (\(roomMarks)) AND key IN (\(keyMarks))"
            let count = try db.queryFirst("SELECT COUNT(*) FROM event_search WHERE \(filter)", [.text(term)] + scope)?.int(0) ?? 0
            let rows = try db.query("""
                SELECT event_id, ts_rank_cd(vector, websearch_to_tsquery('english', ?)), stream_ordering FROM event_search
                WHERE \(filter) ORDER BY \(byRank ? "2 DESC" : "stream_ordering DESC") LIMIT ? OFFSET ?
                """, [.text(term), .text(term)] + scope + [.int(Int64(limit)), .int(Int64(offset))])
            return (try rows.map { Hit(eventID: try $0.text(0), rank: try $0.double(1), streamOrdering: try $0.int(2)) }, Int(count))
        }
    }

    /// The term as an FTS5 query: each word (letters and digits only, so no FTS5 syntax gets
    /// through) a quoted token, all required.
    static func ftsQuery(_ term: String) -> String {
        term.split(whereSeparator: { !($0.isLetter || $0.isNumber) })
            .map { "\"" + String($0) + "\"" }
            .joined(separator: " ")
    }
}
