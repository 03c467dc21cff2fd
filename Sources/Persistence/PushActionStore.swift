import Matrix

/// The notifying outcomes of push rules, one row per (recipient, event) (schema:
/// `event_push_actions` in `Schema.pushActions`). Obtained from `Database.pushActions`;
/// written by the App's push pipeline in one transaction per room batch, read by
/// `GET /notifications` and by the pusher deliveries' badge count.
public struct PushActionStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// One recipient's outcome for one event.
    public struct Action: Sendable, Equatable {
        public var userID: String
        public var roomID: String
        public var eventID: String
        public var streamOrdering: Int64
        /// The actions as JSON (an array).
        public var actions: String
        public var highlight: Bool
        public var threadID: String?
        public var ts: Int64

        public init(userID: String, roomID: String, eventID: String, streamOrdering: Int64, actions: String,
                    highlight: Bool, threadID: String?, ts: Int64) {
            self.userID = userID; self.roomID = roomID; self.eventID = eventID; self.streamOrdering = streamOrdering
            self.actions = actions; self.highlight = highlight; self.threadID = threadID; self.ts = ts
        }
    }

    /// A notification as `/notifications` lists it: the outcome, the event's client form and
    /// whether the user's read receipt in the room is at or after it.
    public struct Notification: Sendable {
        public var action: Action
        public var clientJSON: [UInt8]
        public var read: Bool
    }

    /// Records the outcomes (one transaction; a row already there is kept, so a batch
    /// evaluated twice after a restart records nothing twice).
    public func record(_ actions: [Action]) async throws {
        guard !actions.isEmpty else { return }
        try await database.write { db in
            // Multi-row inserts: a message to a room of 1,000 members is a few statements.
            let columns = 8
            let perStatement = 100
            for start in stride(from: 0, to: actions.count, by: perStatement) {
                let chunk = actions[start..<min(start + perStatement, actions.count)]
                let row = "(" + Array(repeating: "?", count: columns).joined(separator: ", ") + ")"
                var bindings: [SQLValue] = []
                bindings.reserveCapacity(chunk.count * columns)
                for a in chunk {
                    bindings += [.text(a.userID), .text(a.roomID), .text(a.eventID), .int(a.streamOrdering), .text(a.actions),
                                 .bool(a.highlight), a.threadID.map(SQLValue.text) ?? .null, .int(a.ts)]
                }
                try db.execute("""
                    INSERT INTO event_push_actions (user_id, room_id, event_id, stream_ordering, actions, highlight, thread_id, ts)
                    VALUES \(Array(repeating: row, count: chunk.count).joined(separator: ", "))
                    ON CONFLICT (user_id, stream_ordering) DO NOTHING
                    """, bindings)
            }
        }
    }

    /// The user's notifications before `before` (exclusive; nil: the newest), newest first,
    /// at most `limit`; with `onlyHighlight`, the highlighting ones only.
    public func notifications(of user: UserID, before: Int64?, limit: Int, onlyHighlight: Bool) async throws -> [Notification] {
        let user = user.rawValue
        let limit = max(1, min(limit, 1000))
        return try await database.read { db in
            let rows = try db.query("""
                SELECT a.room_id, a.event_id, a.stream_ordering, a.actions, a.highlight, a.thread_id, a.ts, e.client_json
                FROM event_push_actions a JOIN events e ON e.event_id = a.event_id
                WHERE a.user_id = ? AND a.stream_ordering < ?\(onlyHighlight ? " AND a.highlight = ?" : "")
                ORDER BY a.stream_ordering DESC LIMIT ?
                """, [.text(user), .int(before ?? .max)] + (onlyHighlight ? [.bool(true)] : []) + [.int(Int64(limit))])
            var reads: [String: Int64] = [:]
            var result: [Notification] = []
            for row in rows {
                let room = try row.text(0)
                if reads[room] == nil { reads[room] = try Self.readUpTo(db, user: user, room: room) }
                let action = Action(userID: user, roomID: room, eventID: try row.text(1), streamOrdering: try row.int(2),
                                    actions: try row.text(3), highlight: try row.bool(4), threadID: try row.optionalText(5),
                                    ts: try row.int(6))
                result.append(Notification(action: action, clientJSON: try row.optionalBlob(7) ?? [],
                                           read: action.streamOrdering <= reads[room] ?? 0))
            }
            return result
        }
    }

    /// The push gateway's `counts.unread` as Synapse sends it by default
    /// (`group_unread_count_by_room`): the rooms where the user has notifications after
    /// their read receipt.
    public func unreadRooms(of user: UserID) async throws -> Int {
        let user = user.rawValue
        return try await database.read { db in
            let rooms = try db.query("""
                SELECT room_id, MAX(stream_ordering) FROM event_push_actions WHERE user_id = ? GROUP BY room_id
                """, .text(user))
            var unread = 0
            for row in rooms where try row.int(1) > Self.readUpTo(db, user: user, room: try row.text(0)) {
                unread += 1
            }
            return unread
        }
    }

    /// The position the user's unthreaded read receipts (public or private) read up to.
    static func readUpTo(_ db: any SQLConnection, user: String, room: String) throws -> Int64 {
        try db.queryFirst("""
            SELECT MAX(e.stream_ordering) FROM receipts r JOIN events e ON e.event_id = r.event_id
            WHERE r.room_id = ? AND r.user_id = ? AND r.thread_id = '' AND r.receipt_type IN ('m.read', 'm.read.private')
            """, .text(room), .text(user))?.optionalInt(0) ?? 0
    }

    /// Removes the outcomes recorded before `ts`; returns how many went.
    @discardableResult
    public func deleteOlder(than ts: Int64) async throws -> Int {
        try await database.write { db in
            try db.execute("DELETE FROM event_push_actions WHERE ts < ?", .int(ts))
        }
    }
}

extension Database {
    /// Push rule outcomes (`/notifications`, badge counts).
    public var pushActions: PushActionStore { PushActionStore(database: self) }
}
