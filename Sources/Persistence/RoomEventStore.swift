import Matrix

/// Rooms, events, forward extremities and state groups (schema: `Schema.rooms`), and the
/// history read from them. Plain rows in, plain rows out; the rules (what the state is, which
/// group to write, who may see an event) are the room actor's and the handlers'. Writes are
/// static functions that take the caller's transaction, so that an event, its state group,
/// the extremities and its stream position commit together; the reads that need no other
/// table go through `Database.roomEvents`, one transaction each.
public struct RoomEventStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The room's version, or nil for a room this server does not have.
    public func roomVersion(of room: RoomID) async throws -> String? {
        let room = room.rawValue
        return try await database.read { db in try Self.roomVersion(db, roomID: room) }
    }

    /// The state of the room after position `position` (the state group of the newest event
    /// at or before it): empty before the room's first event.
    public func state(of room: RoomID, atOrBefore position: Int64) async throws -> [StateEntry] {
        let room = room.rawValue
        return try await database.read { db in
            guard let group = try Self.stateGroup(db, roomID: room, atOrBefore: position) else { return [] }
            return try Self.state(db, group: group)
        }
    }

    /// Events by id (missing ones skipped), in no particular order.
    public func events(ids: [String]) async throws -> [EventRow] {
        try await database.read { db in try Self.events(db, ids: ids) }
    }

    public func event(_ eventID: String) async throws -> EventRow? {
        try await database.read { db in try Self.event(db, eventID: eventID) }
    }

    /// The newest event of the room at or before `ts` (backwards) or the oldest at or after
    /// (forwards), at positions up to `ceiling`.
    public func event(in room: RoomID, near ts: Int64, forwards: Bool, ceiling: Int64 = .max) async throws -> EventRow? {
        let room = room.rawValue
        return try await database.read { db in try Self.eventNear(db, roomID: room, ts: ts, forwards: forwards, ceiling: ceiling) }
    }

    /// One event row. `json` is the event's serialized bytes, stored once and served as is.
    public struct EventRow: Sendable, Equatable {
        public var streamOrdering: Int64
        public var eventID: String
        public var roomID: String
        public var type: String
        public var stateKey: String?
        public var sender: String
        public var depth: Int64
        /// The state group of the state after this event.
        public var stateGroup: Int64
        public var json: [UInt8]
        /// The client form (`event_id`, `room_id`, `unsigned` with `prev_content`), served as
        /// is; rewritten once if the event is redacted. Empty for rows written before it existed.
        public var clientJSON: [UInt8]

        public init(streamOrdering: Int64, eventID: String, roomID: String, type: String, stateKey: String?,
                    sender: String, depth: Int64, stateGroup: Int64, json: [UInt8], clientJSON: [UInt8] = []) {
            self.streamOrdering = streamOrdering; self.eventID = eventID; self.roomID = roomID
            self.type = type; self.stateKey = stateKey; self.sender = sender; self.depth = depth
            self.stateGroup = stateGroup; self.json = json; self.clientJSON = clientJSON
        }
    }

    /// One entry of a state map: (type, state_key) → event id.
    public struct StateEntry: Sendable, Hashable {
        public var type: String
        public var stateKey: String
        public var eventID: String
        public init(type: String, stateKey: String, eventID: String) {
            self.type = type; self.stateKey = stateKey; self.eventID = eventID
        }
    }

    /// A state group: the full state when `prevGroup` is nil, else the entries that differ.
    public struct StateGroup: Sendable {
        public var id: Int64
        public var roomID: String
        public var prevGroup: Int64?
        public var deltaDepth: Int
        public var entries: [StateEntry]
        public init(id: Int64, roomID: String, prevGroup: Int64?, deltaDepth: Int, entries: [StateEntry]) {
            self.id = id; self.roomID = roomID; self.prevGroup = prevGroup; self.deltaDepth = deltaDepth
            self.entries = entries
        }
    }

    public static func insertRoom(_ db: any SQLTransaction, roomID: String, roomVersion: String, createdTS: Int64) throws {
        try db.execute("INSERT INTO rooms (room_id, room_version, created_ts) VALUES (?, ?, ?)",
                       .text(roomID), .text(roomVersion), .int(createdTS))
    }

    public static func roomVersion(_ db: any SQLConnection, roomID: String) throws -> String? {
        try db.queryFirst("SELECT room_version FROM rooms WHERE room_id = ?", .text(roomID))?.text(0)
    }

    public static func insertEvent(_ db: any SQLTransaction, _ row: EventRow) throws {
        try db.execute("""
            INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender, depth, state_group, json, client_json)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, .int(row.streamOrdering), .text(row.eventID), .text(row.roomID), .text(row.type),
            .text(row.stateKey), .text(row.sender), .int(row.depth), .int(row.stateGroup), .blob(row.json),
            .blob(row.clientJSON))
    }

    public static func insertStateGroup(_ db: any SQLTransaction, _ group: StateGroup) throws {
        try db.execute("INSERT INTO state_groups (id, room_id, prev_group, delta_depth) VALUES (?, ?, ?, ?)",
                       .int(group.id), .text(group.roomID), .int(group.prevGroup), .int(Int64(group.deltaDepth)))
        for entry in group.entries {
            try db.execute("INSERT INTO state_group_entries (state_group, type, state_key, event_id) VALUES (?, ?, ?, ?)",
                           .int(group.id), .text(entry.type), .text(entry.stateKey), .text(entry.eventID))
        }
    }

    /// Replaces the room's forward extremities.
    public static func setExtremities(_ db: any SQLTransaction, roomID: String, _ eventIDs: [String]) throws {
        try db.execute("DELETE FROM room_forward_extremities WHERE room_id = ?", .text(roomID))
        for id in eventIDs {
            try db.execute("INSERT INTO room_forward_extremities (room_id, event_id) VALUES (?, ?)", .text(roomID), .text(id))
        }
    }

    public static func extremities(_ db: any SQLConnection, roomID: String) throws -> [String] {
        try db.query("SELECT event_id FROM room_forward_extremities WHERE room_id = ? ORDER BY event_id", .text(roomID))
            .map { try $0.text(0) }
    }

    /// The room's newest live events (positive positions: outliers and backfilled history left out), oldest first.
    public static func latestEvents(_ db: any SQLConnection, roomID: String, limit: Int) throws -> [EventRow] {
        try db.query("""
            SELECT \(columns)
            FROM events WHERE room_id = ? AND stream_ordering > 0 ORDER BY stream_ordering DESC LIMIT ?
            """, .text(roomID), .int(Int64(limit))).map(eventRow).reversed()
    }

    /// The room's events after `streamOrdering`, oldest first.
    public static func events(_ db: any SQLConnection, roomID: String, after streamOrdering: Int64, limit: Int) throws -> [EventRow] {
        try db.query("""
            SELECT \(columns)
            FROM events WHERE room_id = ? AND stream_ordering > ? ORDER BY stream_ordering LIMIT ?
            """, .text(roomID), .int(streamOrdering), .int(Int64(limit))).map(eventRow)
    }

    /// Events by id (any order; missing ids are absent).
    public static func events(_ db: any SQLConnection, ids: [String]) throws -> [EventRow] {
        var rows: [EventRow] = []
        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(start + 500, ids.count)])
            start += chunk.count
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            rows += try db.query("""
                SELECT \(columns)
                FROM events WHERE event_id IN (\(placeholders))
                """, chunk.map { SQLValue.text($0) }).map(eventRow)
        }
        return rows
    }

    /// The state map of a group: its snapshot plus deltas, nearest delta winning. One
    /// query; its cost is bounded by the writer's cap on `delta_depth`.
    public static func state(_ db: any SQLConnection, group: Int64) throws -> [StateEntry] {
        let rows = try db.query("""
            WITH RECURSIVE chain(id, prev, n) AS (
                SELECT id, prev_group, 0 FROM state_groups WHERE id = ?
                UNION ALL
                SELECT g.id, g.prev_group, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.prev
            )
            SELECT c.n, e.type, e.state_key, e.event_id
            FROM chain c JOIN state_group_entries e ON e.state_group = c.id
            """, [.int(group)])
        var best: [String: (n: Int64, entry: StateEntry)] = [:]
        for row in rows {
            let n = try row.int(0)
            let entry = StateEntry(type: try row.text(1), stateKey: try row.text(2), eventID: try row.text(3))
            let key = entry.type + "\u{0}" + entry.stateKey
            if let existing = best[key], existing.n <= n { continue }
            best[key] = (n, entry)
        }
        return best.values.map(\.entry)
    }

    public static func deltaDepth(_ db: any SQLConnection, group: Int64) throws -> Int? {
        try db.queryFirst("SELECT delta_depth FROM state_groups WHERE id = ?", .int(group)).map { Int(try $0.int(0)) }
    }

    /// The highest stream ordering stored (0 if none): seeds the room-events stream.
    public static let maxStreamOrderingSQL = "SELECT MAX(stream_ordering) FROM events"

    /// The columns `eventRow` reads, in order.
    static let columns = "stream_ordering, event_id, room_id, type, state_key, sender, depth, state_group, json, client_json"

    static func eventRow(_ row: SQLRow) throws -> EventRow {
        EventRow(streamOrdering: try row.int(0), eventID: try row.text(1), roomID: try row.text(2), type: try row.text(3),
                 stateKey: try row.optionalText(4), sender: try row.text(5), depth: try row.int(6),
                 stateGroup: try row.int(7), json: try row.blob(8), clientJSON: try row.optionalBlob(9) ?? [])
    }

    // MARK: history

    /// Events of a room with `lower < stream_ordering <= upper`, newest first when
    /// `backwards`, else oldest first; at most `limit`.
    /// Only timeline positions are read: the live ones (positive) and, below
    /// `backfillCeiling`, history fetched from other servers; never the outliers between.
    public static func events(_ db: any SQLConnection, roomID: String, after lower: Int64, upTo upper: Int64,
                              backwards: Bool, limit: Int) throws -> [RoomEventStore.EventRow] {
        let live = (max(lower, 0), upper), history = (lower, min(upper, backfillCeiling))
        var rows: [RoomEventStore.EventRow] = []
        for (low, high) in backwards ? [live, history] : [history, live] where low < high && rows.count < limit {
            rows += try db.query("""
                SELECT \(RoomEventStore.columns) FROM events
                WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ?
                ORDER BY stream_ordering \(backwards ? "DESC" : "ASC") LIMIT ?
                """, .text(roomID), .int(low), .int(high), .int(Int64(limit - rows.count))).map(RoomEventStore.eventRow)
        }
        return rows
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

extension Database {
    /// Rooms, events and their state.
    public var roomEvents: RoomEventStore { RoomEventStore(database: self) }
}
