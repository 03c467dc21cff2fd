import Matrix

/// Read receipts (spec: "Receipts"; schema: `receipts` in `Schema.roomsClient`): the newest
/// receipt of each (room, type, user, thread), positioned on the receipts stream. Obtained
/// from `Database.receipts`; called by the receipt handler, sync and the unread counts. Each
/// method is one read or one write transaction.
public struct ReceiptStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    public struct Receipt: Sendable, Equatable {
        public var roomID: String
        public var type: String
        public var userID: String
        public var threadID: String
        public var eventID: String
        public var ts: Int64
        public var streamID: Int64
        public init(roomID: String, type: String, userID: String, threadID: String, eventID: String, ts: Int64, streamID: Int64) {
            self.roomID = roomID; self.type = type; self.userID = userID; self.threadID = threadID
            self.eventID = eventID; self.ts = ts; self.streamID = streamID
        }
    }

    /// The highest position of the receipts stream (`StreamTracker.load`).
    public static let maxPositionSQL = "SELECT MAX(stream_id) FROM receipts"

    /// Stores the receipt, replacing the user's earlier one of the same type and thread.
    public func put(_ r: Receipt) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id,
                    ts = excluded.ts, stream_id = excluded.stream_id
                """, .text(r.roomID), .text(r.type), .text(r.userID), .text(r.threadID), .text(r.eventID), .int(r.ts),
                .int(r.streamID))
        }
    }

    /// The event id of the user's current receipt of `type` in `room` and `thread`, if any.
    public func receiptEventID(room: RoomID, type: String, user: UserID, thread: String) async throws -> String? {
        let (room, user) = (room.rawValue, user.rawValue)
        return try await database.read { db in
            try db.queryFirst("""
                SELECT event_id FROM receipts WHERE room_id = ? AND receipt_type = ? AND user_id = ? AND thread_id = ?
                """, .text(room), .text(type), .text(user), .text(thread))?.text(0)
        }
    }

    /// Receipts of `rooms` with `after < stream_id <= upTo` (all of them when `after` is 0).
    public func receipts(rooms: [RoomID], after: Int64, upTo: Int64) async throws -> [Receipt] {
        guard !rooms.isEmpty else { return [] }
        return try await database.read { db in
            var result: [Receipt] = []
            for start in stride(from: 0, to: rooms.count, by: 500) {
                let chunk = rooms[start..<min(start + 500, rooms.count)]
                let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
                result += try db.query("""
                    SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id FROM receipts
                    WHERE room_id IN (\(placeholders)) AND stream_id > ? AND stream_id <= ?
                    """, chunk.map { SQLValue.text($0.rawValue) } + [.int(after), .int(upTo)]).map { row in
                    Receipt(roomID: try row.text(0), type: try row.text(1), userID: try row.text(2), threadID: try row.text(3),
                            eventID: try row.text(4), ts: try row.int(5), streamID: try row.int(6))
                }
            }
            return result
        }
    }

    /// What the user has not read in the room, from one snapshot: the position each of their
    /// read receipts (public or private) reads up to, by thread id (`""` for an unthreaded
    /// receipt, which reads everything up to it), and the room's events after the
    /// unthreaded one up to `upper`, oldest first, at most the newest `limit`.
    public func unread(by user: UserID, in room: RoomID, upTo upper: Int64,
                       limit: Int) async throws -> (events: [RoomEventStore.EventRow], readUpTo: [String: Int64]) {
        let (user, room) = (user.rawValue, room.rawValue)
        return try await database.read { db in
            let receipts = try db.query("""
                SELECT r.thread_id, e.stream_ordering FROM receipts r JOIN events e ON e.event_id = r.event_id
                WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private')
                """, .text(room), .text(user))
            var reads: [String: Int64] = [:]
            for row in receipts {
                let thread = try row.text(0), position = try row.int(1)
                reads[thread] = max(reads[thread] ?? 0, position)
            }
            let events = try RoomEventStore.events(db, roomID: room, after: reads[""] ?? 0, upTo: upper, backwards: true,
                                                    limit: limit)
            return (events.reversed(), reads)
        }
    }
}

extension Database {
    /// Read receipts.
    public var receipts: ReceiptStore { ReceiptStore(database: self) }
}
