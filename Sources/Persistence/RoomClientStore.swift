/// The SQL behind the client-server room API (schema: `Schema.roomsClient`): memberships,
/// transaction ids, history pages, aliases, directory visibility, receipts and reports.
/// Membership and transaction rows are written by the room actor inside the event's
/// transaction (the `db` forms); the rest are single statements.
public enum RoomClientStore {
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

    // MARK: memberships

    public static func setMembership(_ db: any SQLTransaction, _ m: Membership) throws {
        try db.execute("""
            INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                event_id = excluded.event_id, stream_ordering = excluded.stream_ordering
            """, .text(m.roomID), .text(m.userID), .text(m.membership), .text(m.eventID), .int(m.streamOrdering))
    }

    /// Every room the user has a membership row in (any membership), or only `membership`.
    public static func memberships(_ db: any SQLConnection, userID: String, membership: String? = nil) throws -> [Membership] {
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

    public static func membership(_ db: any SQLConnection, roomID: String, userID: String) throws -> Membership? {
        try db.queryFirst("""
            SELECT room_id, user_id, membership, event_id, stream_ordering FROM room_memberships
            WHERE room_id = ? AND user_id = ?
            """, .text(roomID), .text(userID)).map(membershipRow)
    }

    /// Every member row of a room (any membership).
    public static func members(_ db: any SQLConnection, roomID: String) throws -> [Membership] {
        try db.query("""
            SELECT room_id, user_id, membership, event_id, stream_ordering FROM room_memberships WHERE room_id = ?
            """, .text(roomID)).map(membershipRow)
    }

    /// Removes the user's row of a room they left (`/forget`): the room no longer appears
    /// in their leave section.
    public static func forget(_ db: any SQLTransaction, roomID: String, userID: String) throws {
        try db.execute("DELETE FROM room_memberships WHERE room_id = ? AND user_id = ? AND membership IN ('leave', 'ban')",
                       .text(roomID), .text(userID))
    }

    private static func membershipRow(_ row: SQLRow) throws -> Membership {
        Membership(roomID: try row.text(0), userID: try row.text(1), membership: try row.text(2),
                   eventID: try row.text(3), streamOrdering: try row.int(4))
    }

    // MARK: transaction ids

    /// Records the event a transaction produced; `scope` is the request path without the
    /// transaction id (spec: transaction ids are scoped to the endpoint and the device).
    public static func insertTxn(_ db: any SQLTransaction, userID: String, deviceID: String, scope: String, txnID: String,
                                 roomID: String, eventID: String) throws {
        try db.execute("""
            INSERT INTO event_txns (user_id, device_id, scope, txn_id, room_id, event_id) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (user_id, device_id, scope, txn_id) DO NOTHING
            """, .text(userID), .text(deviceID), .text(scope), .text(txnID), .text(roomID), .text(eventID))
    }

    /// The event a transaction id already produced in `scope`, if any.
    public static func txnEvent(_ db: any SQLConnection, userID: String, deviceID: String, scope: String,
                                txnID: String) throws -> (roomID: String, eventID: String)? {
        try db.queryFirst("""
            SELECT room_id, event_id FROM event_txns WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?
            """, .text(userID), .text(deviceID), .text(scope), .text(txnID)).map { (try $0.text(0), try $0.text(1)) }
    }

    /// The (device, scope, transaction id) of events, for `unsigned.transaction_id`.
    public static func txns(_ db: any SQLConnection, eventIDs: [String]) throws -> [String: (deviceID: String, scope: String, txnID: String)] {
        guard !eventIDs.isEmpty else { return [:] }
        var result: [String: (String, String, String)] = [:]
        for start in stride(from: 0, to: eventIDs.count, by: 500) {
            let chunk = eventIDs[start..<min(start + 500, eventIDs.count)]
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            for row in try db.query("SELECT event_id, device_id, scope, txn_id FROM event_txns WHERE event_id IN (\(placeholders))",
                                    chunk.map { SQLValue.text($0) }) {
                result[try row.text(0)] = (try row.text(1), try row.text(2), try row.text(3))
            }
        }
        return result
    }

    // MARK: history

    /// Events of a room with `lower < stream_ordering <= upper`, newest first when
    /// `backwards`, else oldest first; at most `limit`.
    public static func events(_ db: any SQLConnection, roomID: String, after lower: Int64, upTo upper: Int64,
                              backwards: Bool, limit: Int) throws -> [RoomEventStore.EventRow] {
        try db.query("""
            SELECT \(RoomEventStore.columns) FROM events
            WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ?
            ORDER BY stream_ordering \(backwards ? "DESC" : "ASC") LIMIT ?
            """, .text(roomID), .int(lower), .int(upper), .int(Int64(limit))).map(RoomEventStore.eventRow)
    }

    public static func event(_ db: any SQLConnection, eventID: String) throws -> RoomEventStore.EventRow? {
        try db.queryFirst("SELECT \(RoomEventStore.columns) FROM events WHERE event_id = ?", .text(eventID))
            .map(RoomEventStore.eventRow)
    }

    /// The state group of the state just before position `streamOrdering` in the room (the
    /// group of the newest earlier event); nil before the room's first event.
    public static func stateGroup(_ db: any SQLConnection, roomID: String, before streamOrdering: Int64) throws -> Int64? {
        try db.queryFirst("""
            SELECT state_group FROM events WHERE room_id = ? AND stream_ordering < ?
            ORDER BY stream_ordering DESC LIMIT 1
            """, .text(roomID), .int(streamOrdering)).map { try $0.int(0) }
    }

    /// The state group after position `streamOrdering` (the group of the newest event at or
    /// before it).
    public static func stateGroup(_ db: any SQLConnection, roomID: String, atOrBefore streamOrdering: Int64) throws -> Int64? {
        // Saturating: `Int64.max` means "the current state" and must not trap.
        try stateGroup(db, roomID: roomID, before: streamOrdering == .max ? .max : streamOrdering + 1)
    }

    /// Replaces an event's client form (redaction).
    public static func setRedacted(_ db: any SQLTransaction, eventID: String, clientJSON: [UInt8]) throws {
        try db.execute("UPDATE events SET client_json = ?, redacted = 1 WHERE event_id = ?", .blob(clientJSON), .text(eventID))
    }

    /// The newest event of the room at or before `ts` (dir b) or the oldest at or after (dir f).
    public static func eventNear(_ db: any SQLConnection, roomID: String, ts: Int64, forwards: Bool,
                                 ceiling: Int64 = .max) throws -> RoomEventStore.EventRow? {
        // origin_server_ts lives in the JSON, and grows with the stream order (events are
        // created in order): a binary search over positions reads ~log2(positions) rows,
        // never the whole room. Finds the smallest position p whose first event at or after
        // it has a timestamp >= ts (forwards) or > ts (backwards).
        guard let bounds = try db.queryFirst("""
            SELECT MIN(stream_ordering), MAX(stream_ordering) FROM events WHERE room_id = ? AND stream_ordering <= ?
            """, .text(roomID), .int(ceiling)), let low = try bounds.optionalInt(0), let high = try bounds.optionalInt(1) else {
            return nil
        }
        func firstAtOrAfter(_ position: Int64) throws -> RoomEventStore.EventRow? {
            try db.queryFirst("""
                SELECT \(RoomEventStore.columns) FROM events WHERE room_id = ? AND stream_ordering >= ? AND stream_ordering <= ?
                ORDER BY stream_ordering ASC LIMIT 1
                """, .text(roomID), .int(position), .int(high)).map(RoomEventStore.eventRow)
        }
        func past(_ row: RoomEventStore.EventRow) -> Bool {
            let eventTS = originServerTS(row.json) ?? 0
            return forwards ? eventTS >= ts : eventTS > ts
        }
        var a = low, b = high + 1
        while a < b {
            let mid = a + (b - a) / 2
            if let row = try firstAtOrAfter(mid), past(row) { b = mid } else { a = mid + 1 }
        }
        if forwards { return a <= high ? try firstAtOrAfter(a) : nil }
        let row = try db.queryFirst("""
            SELECT \(RoomEventStore.columns) FROM events WHERE room_id = ? AND stream_ordering < ? AND stream_ordering <= ?
            ORDER BY stream_ordering DESC LIMIT 1
            """, .text(roomID), .int(a), .int(high)).map(RoomEventStore.eventRow)
        guard let row, (originServerTS(row.json) ?? .max) <= ts else { return nil }
        return row
    }

    static func originServerTS(_ json: [UInt8]) -> Int64? {
        let key = Array("\"origin_server_ts\":".utf8)
        guard let start = json.firstRange(of: key)?.upperBound else { return nil }
        var value: Int64 = 0
        var index = start
        // At most 18 digits: an event's JSON is ours, but a timestamp that overflows must
        // not trap.
        while index < json.count, index - start < 18, json[index] >= 0x30, json[index] <= 0x39 {
            value = value * 10 + Int64(json[index] - 0x30)
            index += 1
        }
        return index > start ? value : nil
    }
}

extension RoomClientStore {
    /// Users sharing a joined room with `userID` (the user included).
    public static func roomPeers(_ db: any SQLConnection, userID: String) throws -> [String] {
        try db.query("""
            SELECT DISTINCT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
            WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'
            """, .text(userID)).map { try $0.text(0) }
    }

    /// Everyone sharing a joined room with any of `userIDs`.
    public static func roomPeers(_ db: any SQLConnection, userIDs: [String]) throws -> Set<String> {
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

    /// Presence of the user and of those sharing a joined room with them, changed in
    /// `(after, upTo]`: (user, state, status message, last active ts).
    public static func presenceChanges(_ db: any SQLConnection, userID: String, after: Int64,
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
