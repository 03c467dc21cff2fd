import Matrix

extension Schema {
    /// What the room administration API keeps (issue 20): rooms blocked by an admin, the
    /// room deletions and history purges with their status (Synapse's `delete_status` and
    /// `purge_history_status`), each user's server-notices room, and the leave events of the
    /// local members of a purged room (their next `/sync` still shows the leave).
    static let adminRooms = Migration(
        version: 116, name: "admin_rooms",
        """
            CREATE TABLE blocked_rooms (
                room_id TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                ts \(.bigint) NOT NULL
            );
            CREATE TABLE admin_room_tasks (
                id TEXT PRIMARY KEY NOT NULL,
                kind TEXT NOT NULL,
                room_id TEXT NOT NULL,
                status TEXT NOT NULL,
                result TEXT,
                error TEXT,
                created_ts \(.bigint) NOT NULL,
                updated_ts \(.bigint) NOT NULL
            );
            CREATE INDEX admin_room_tasks_by_room ON admin_room_tasks (room_id, created_ts);
            CREATE TABLE server_notice_rooms (
                user_id TEXT PRIMARY KEY NOT NULL,
                room_id TEXT NOT NULL
            );
            CREATE TABLE purged_room_leaves (
                event_id TEXT PRIMARY KEY NOT NULL,
                room_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                stream_ordering \(.bigint) NOT NULL,
                client_json \(.bytes) NOT NULL
            );
            """)
}

/// The storage side of the room administration API (`/_synapse/admin/v1/rooms...`,
/// `purge_history`, event reports, server notices): room summaries for the room list, the
/// purge of a whole room and of a room's history, blocked rooms, task status. Obtained from
/// `Database.adminRooms`; called by the App's `AdminRooms*` handlers. No business rules:
/// who may be kicked or which events a purge must keep is decided by the caller or by the
/// arguments.
public struct AdminRoomStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    // MARK: rooms

    /// One room's row and the counts the room list shows.
    public struct RoomRow: Sendable {
        public var roomID: String
        public var version: String
        public var createdTS: Int64
        public var joinedMembers: Int64
        public var joinedLocalMembers: Int64
        public var isPublic: Bool
        /// The current state (type, state key → event id) and the events of the keys asked for.
        public var stateCount: Int
        public var stateEvents: [String: [UInt8]]
    }

    /// Every room of the server (id, version, creation time).
    public func rooms() async throws -> [(roomID: String, version: String, createdTS: Int64)] {
        try await database.read { db in
            try db.query("SELECT room_id, room_version, created_ts FROM rooms").map {
                (try $0.text(0), try $0.text(1), try $0.int(2))
            }
        }
    }

    /// Summaries of `rooms`: member counts (local members: user ids ending in `:serverName`),
    /// directory visibility, the size of the current state and the client JSON of the
    /// current state events of `types` (state key "").
    public func summaries(_ rooms: [String], serverName: String, types: Set<String>) async throws -> [RoomRow] {
        try await database.read { db in
            var out: [RoomRow] = []
            for room in rooms {
                guard let row = try db.queryFirst("SELECT room_version, created_ts FROM rooms WHERE room_id = ?", .text(room)) else { continue }
                let members = try db.query("SELECT user_id FROM room_memberships WHERE room_id = ? AND membership = 'join'", .text(room))
                    .map { try $0.text(0) }
                let local = members.filter { $0.hasSuffix(":" + serverName) }.count
                let visibility = try db.queryFirst("SELECT visibility FROM room_directory WHERE room_id = ?", .text(room))?.text(0)
                var stateCount = 0
                var stateEvents: [String: [UInt8]] = [:]
                if let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: .max) {
                    let entries = try RoomEventStore.state(db, group: group)
                    stateCount = entries.count
                    let wanted = entries.filter { $0.stateKey == "" && types.contains($0.type) }
                    for event in try RoomEventStore.events(db, ids: wanted.map(\.eventID)) {
                        stateEvents[event.type] = event.clientJSON
                    }
                }
                out.append(RoomRow(roomID: room, version: try row.text(0), createdTS: try row.int(1),
                                   joinedMembers: Int64(members.count), joinedLocalMembers: Int64(local),
                                   isPublic: visibility == "public", stateCount: stateCount, stateEvents: stateEvents))
            }
            return out
        }
    }

    /// The client JSON of the room's current state events.
    public func currentState(_ room: RoomID) async throws -> [[UInt8]] {
        let room = room.rawValue
        return try await database.read { db in
            guard let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: .max) else { return [] }
            let entries = try RoomEventStore.state(db, group: group)
            return try RoomEventStore.events(db, ids: entries.map(\.eventID))
                .sorted { $0.streamOrdering < $1.streamOrdering }.map(\.clientJSON)
        }
    }

    /// How many devices the room's joined local members have.
    public func joinedLocalDevices(_ room: RoomID, serverName: String) async throws -> Int64 {
        let room = room.rawValue
        return try await database.read { db in
            try db.queryFirst("""
                SELECT COUNT(*) FROM devices d JOIN room_memberships m ON m.user_id = d.user_id
                WHERE m.room_id = ? AND m.membership = 'join'
                """, .text(room))?.int(0) ?? 0
        }
    }

    // MARK: blocking

    public func isBlocked(_ room: RoomID) async throws -> String? {
        let room = room.rawValue
        return try await database.read { db in
            try db.queryFirst("SELECT user_id FROM blocked_rooms WHERE room_id = ?", .text(room))?.text(0)
        }
    }

    /// Blocks (or unblocks) a room; `by` is the admin who blocked it.
    public func setBlocked(_ room: RoomID, _ blocked: Bool, by admin: UserID, ts: Int64) async throws {
        let (room, admin) = (room.rawValue, admin.rawValue)
        try await database.write { db in
            if blocked {
                try db.execute("""
                    INSERT INTO blocked_rooms (room_id, user_id, ts) VALUES (?, ?, ?)
                    ON CONFLICT (room_id) DO NOTHING
                    """, .text(room), .text(admin), .int(ts))
            } else {
                try db.execute("DELETE FROM blocked_rooms WHERE room_id = ?", .text(room))
            }
        }
    }

    // MARK: purging a room

    /// Removes every trace of a room from the store in one transaction: its events and their
    /// relations, search rows, push actions, transaction ids and state, the state groups,
    /// extremities, memberships, aliases, directory entry, receipts, room account data and
    /// its server-notices mapping. `keptLeaves` (event ids of the leaves of the local members
    /// made to leave) survive as `purged_room_leaves`, with the members' membership rows, so
    /// that their next `/sync` shows the leave. Event reports and the block stay (admins
    /// still need them). Returns the number of events removed.
    @discardableResult
    public func purgeRoom(_ room: RoomID, keptLeaves: [String]) async throws -> Int {
        let room = room.rawValue
        return try await database.write { db in
            // The leaves first, while their events exist.
            for chunk in sqlChunks(keptLeaves) {
                let rows = try db.query("""
                    SELECT event_id, room_id, state_key, stream_ordering, client_json FROM events
                    WHERE room_id = ? AND event_id IN (\(sqlPlaceholders(chunk.count)))
                    """, [.text(room)] + chunk.map { SQLValue.text($0) })
                for row in rows {
                    try db.execute("""
                        INSERT INTO purged_room_leaves (event_id, room_id, user_id, stream_ordering, client_json)
                        VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING
                        """, .text(try row.text(0)), .text(try row.text(1)), .text(try row.optionalText(2) ?? ""),
                        .int(try row.int(3)), .blob(try row.optionalBlob(4) ?? []))
                }
            }
            let removed = try db.execute("DELETE FROM events WHERE room_id = ?", .text(room))
            try db.execute("""
                DELETE FROM state_group_entries WHERE state_group IN (SELECT id FROM state_groups WHERE room_id = ?)
                """, .text(room))
            for table in ["state_groups"] {
                try db.execute("DELETE FROM \(table) WHERE room_id = ?", .text(room))
            }
            for table in ["event_relations", "event_search", "event_push_actions", "event_txns", "event_states",
                          "rejected_events", "room_forward_extremities", "room_aliases", "room_directory", "receipts",
                          "federation_invites", "server_notice_rooms", "rooms"] {
                try db.execute("DELETE FROM \(table) WHERE room_id = ?", .text(room))
            }
            try db.execute("DELETE FROM account_data WHERE room_id = ?", .text(room))
            // Memberships: only the kept leaves remain (also those of an earlier purge of the
            // room, when two deletions raced).
            try db.execute("""
                DELETE FROM room_memberships WHERE room_id = ? AND event_id NOT IN
                    (SELECT event_id FROM purged_room_leaves WHERE room_id = ?)
                """, .text(room), .text(room))
            return removed
        }
    }

    /// The client JSON of a purged room's leave event (see `purgeRoom`).
    public func purgedLeave(_ eventID: String) async throws -> (roomID: String, position: Int64, clientJSON: [UInt8])? {
        try await database.read { db in
            try db.queryFirst("SELECT room_id, stream_ordering, client_json FROM purged_room_leaves WHERE event_id = ?",
                              .text(eventID)).map { (try $0.text(0), try $0.int(1), try $0.blob(2)) }
        }
    }

    /// How many rows of `table` name the room (tests and the purge's own check).
    public func rows(in table: String, room: RoomID) async throws -> Int64 {
        let room = room.rawValue
        return try await database.read { db in
            try db.queryFirst("SELECT COUNT(*) FROM \(table) WHERE room_id = ?", .text(room))?.int(0) ?? 0
        }
    }

    // MARK: purging history

    /// Removes the room's timeline events (not state events, not outliers) positioned before
    /// `before`, keeping the forward extremities and, unless `deleteLocalEvents`, the events
    /// sent by users of `serverName`. State groups and state events stay: the state at every
    /// later event still resolves. Returns the number of events removed.
    public func purgeHistory(_ room: RoomID, before: Int64, deleteLocalEvents: Bool, serverName: String) async throws -> Int {
        let room = room.rawValue
        return try await database.write { db in
            var keep = Set<String>()
            if let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: .max) {
                keep.formUnion(try RoomEventStore.state(db, group: group).map(\.eventID))
            }
            keep.formUnion(try RoomEventStore.extremities(db, roomID: room))
            // Timeline messages only: state events stay (the state at every later event, the
            // visibility of history and the auth chains of federation read them), and so do
            // outliers (positions between `backfillCeiling` and 0, not history).
            let candidates = try db.query("""
                SELECT event_id, sender FROM events
                WHERE room_id = ? AND stream_ordering < ? AND state_key IS NULL
                    AND (stream_ordering > 0 OR stream_ordering <= ?)
                """, .text(room), .int(before), .int(RoomEventStore.backfillCeiling))
            var doomed: [String] = []
            for row in candidates {
                let id = try row.text(0), sender = try row.text(1)
                if keep.contains(id) { continue }
                if !deleteLocalEvents && sender.hasSuffix(":" + serverName) { continue }
                doomed.append(id)
            }
            for chunk in sqlChunks(doomed) {
                let ids = chunk.map { SQLValue.text($0) }
                let list = sqlPlaceholders(chunk.count)
                for table in ["events", "event_relations", "event_search", "event_push_actions", "event_txns", "event_states",
                              "rejected_events"] {
                    try db.execute("DELETE FROM \(table) WHERE event_id IN (\(list))", ids)
                }
            }
            return doomed.count
        }
    }

    // MARK: tasks

    /// A room deletion or history purge, as its status endpoint shows it.
    public struct Task: Sendable {
        public var id: String
        public var kind: String
        public var roomID: String
        public var status: String
        public var result: String?
        public var error: String?
        public var updatedTS: Int64
    }

    public func createTask(id: String, kind: String, room: RoomID, status: String, ts: Int64) async throws {
        let room = room.rawValue
        try await database.write { db in
            try db.execute("""
                INSERT INTO admin_room_tasks (id, kind, room_id, status, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?)
                """, .text(id), .text(kind), .text(room), .text(status), .int(ts), .int(ts))
        }
    }

    public func updateTask(id: String, status: String, result: String? = nil, error: String? = nil, ts: Int64) async throws {
        try await database.write { db in
            try db.execute("""
                UPDATE admin_room_tasks SET status = ?, result = COALESCE(?, result), error = COALESCE(?, error), updated_ts = ?
                WHERE id = ?
                """, .text(status), .text(result), .text(error), .int(ts), .text(id))
        }
    }

    public func task(id: String, kind: String) async throws -> Task? {
        try await database.read { db in
            try db.queryFirst("SELECT id, kind, room_id, status, result, error, updated_ts FROM admin_room_tasks WHERE id = ? AND kind = ?",
                              .text(id), .text(kind)).map(Self.taskRow)
        }
    }

    public func tasks(room: RoomID, kind: String) async throws -> [Task] {
        let room = room.rawValue
        return try await database.read { db in
            try db.query("""
                SELECT id, kind, room_id, status, result, error, updated_ts FROM admin_room_tasks WHERE room_id = ? AND kind = ?
                ORDER BY created_ts, id
                """, .text(room), .text(kind)).map(Self.taskRow)
        }
    }

    /// Tasks left `scheduled` or `active` since before `startedTS` (a process that stopped
    /// while running them): they failed.
    public func failTasksInterrupted(before startedTS: Int64, ts: Int64) async throws {
        try await database.write { db in
            try db.execute("""
                UPDATE admin_room_tasks SET status = 'failed', error = 'The server restarted during the task', updated_ts = ?
                WHERE status IN ('scheduled', 'active') AND updated_ts < ?
                """, .int(ts), .int(startedTS))
        }
    }

    static func taskRow(_ row: SQLRow) throws -> Task {
        Task(id: try row.text(0), kind: try row.text(1), roomID: try row.text(2), status: try row.text(3),
             result: try row.optionalText(4), error: try row.optionalText(5), updatedTS: try row.int(6))
    }

    // MARK: server notices

    public func serverNoticeRoom(for user: UserID) async throws -> String? {
        let user = user.rawValue
        return try await database.read { db in
            try db.queryFirst("SELECT room_id FROM server_notice_rooms WHERE user_id = ?", .text(user))?.text(0)
        }
    }

    public func setServerNoticeRoom(_ room: RoomID, for user: UserID) async throws {
        let (room, user) = (room.rawValue, user.rawValue)
        try await database.write { db in
            try db.execute("""
                INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?)
                ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id
                """, .text(user), .text(room))
        }
    }

    // MARK: event reports

    /// One stored report.
    public struct Report: Sendable {
        public var id: Int64
        public var roomID: String
        public var eventID: String?
        public var targetUserID: String?
        public var userID: String
        public var reason: String?
        public var score: Int64?
        public var receivedTS: Int64
    }

    static let reportColumns = "id, room_id, event_id, target_user_id, user_id, reason, score, received_ts"

    static func reportRow(_ row: SQLRow) throws -> Report {
        Report(id: try row.int(0), roomID: try row.text(1), eventID: try row.optionalText(2), targetUserID: try row.optionalText(3),
               userID: try row.text(4), reason: try row.optionalText(5), score: try row.optionalInt(6), receivedTS: try row.int(7))
    }

    /// Reports of events (newest first unless `forwards`), filtered by room and reporter;
    /// the page and the total matching.
    public func eventReports(offset: Int, limit: Int, forwards: Bool, room: String?, user: String?) async throws -> ([Report], Int64) {
        try await database.read { db in
            var conditions = ["event_id IS NOT NULL"]
            var bindings: [SQLValue] = []
            if let room { conditions.append("room_id = ?"); bindings.append(.text(room)) }
            if let user { conditions.append("user_id = ?"); bindings.append(.text(user)) }
            let clause = conditions.joined(separator: " AND ")
            let total = try db.queryFirst("SELECT COUNT(*) FROM event_reports WHERE \(clause)", bindings)?.int(0) ?? 0
            let rows = try db.query("""
                SELECT \(Self.reportColumns) FROM event_reports WHERE \(clause)
                ORDER BY received_ts \(forwards ? "ASC" : "DESC"), id \(forwards ? "ASC" : "DESC") LIMIT ? OFFSET ?
                """, bindings + [.int(Int64(limit)), .int(Int64(offset))]).map(Self.reportRow)
            return (rows, total)
        }
    }

    public func eventReport(id: Int64) async throws -> Report? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.reportColumns) FROM event_reports WHERE id = ? AND event_id IS NOT NULL", .int(id))
                .map(Self.reportRow)
        }
    }

    public func deleteEventReport(id: Int64) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM event_reports WHERE id = ? AND event_id IS NOT NULL", .int(id)) > 0
        }
    }
}

extension Database {
    /// The room administration API's storage.
    public var adminRooms: AdminRoomStore { AdminRoomStore(database: self) }
}
