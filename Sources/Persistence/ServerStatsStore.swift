/// Counts for the operators' admin endpoints (`server_stats`, `user_stats`, `status`):
/// accounts, rooms, messages, and users active by the last-seen time of their devices.
/// Each is one aggregate query over existing tables (read connections only); nothing
/// here is on a client's path. Reached as `database.serverStats`.
public struct ServerStatsStore: Sendable {
    let database: Database

    public struct Counts: Sendable, Equatable {
        public var totalUsers: Int
        public var deactivatedUsers: Int
        public var guestUsers: Int
        public var adminUsers: Int
        public var totalRooms: Int
        /// Events of type `m.room.message` or `m.room.encrypted`.
        public var totalMessages: Int
        /// Local users with a device seen since the given times.
        public var dailyActiveUsers: Int
        public var monthlyActiveUsers: Int
        /// Accounts created since the given time.
        public var newUsers: Int
    }

    /// - Parameters: times in ms since the epoch: active "today" means a device seen since
    ///   `dailySince`, "this month" since `monthlySince`; new users are created since `newSince`.
    public func counts(dailySince: Int64, monthlySince: Int64, newSince: Int64) async throws -> Counts {
        try await database.read { db in
            func count(_ sql: String, _ bindings: SQLValue...) throws -> Int {
                Int(try db.queryFirst(sql, bindings)?.int(0) ?? 0)
            }
            let users = try db.queryFirst("""
                SELECT COUNT(*),
                       COALESCE(SUM(CASE WHEN deactivated = ? THEN 1 ELSE 0 END), 0),
                       COALESCE(SUM(CASE WHEN is_guest = ? THEN 1 ELSE 0 END), 0),
                       COALESCE(SUM(CASE WHEN is_admin = ? THEN 1 ELSE 0 END), 0),
                       COALESCE(SUM(CASE WHEN created_ts >= ? THEN 1 ELSE 0 END), 0)
                FROM users
                """, [.bool(true), .bool(true), .bool(true), .int(newSince)])
            let active = """
                SELECT COUNT(DISTINCT devices.user_id) FROM devices JOIN users ON users.user_id = devices.user_id
                WHERE devices.last_seen_ts >= ? AND users.deactivated = ?
                """
            return Counts(
                totalUsers: Int(try users?.int(0) ?? 0),
                deactivatedUsers: Int(try users?.int(1) ?? 0),
                guestUsers: Int(try users?.int(2) ?? 0),
                adminUsers: Int(try users?.int(3) ?? 0),
                totalRooms: try count("SELECT COUNT(*) FROM rooms"),
                totalMessages: try count("SELECT COUNT(*) FROM events WHERE type IN (?, ?)",
                                         .text("m.room.message"), .text("m.room.encrypted")),
                dailyActiveUsers: try count(active, .int(dailySince), .bool(false)),
                monthlyActiveUsers: try count(active, .int(monthlySince), .bool(false)),
                newUsers: Int(try users?.int(4) ?? 0))
        }
    }

    /// Runs one trivial query on a read connection: true if the database answered.
    public func ping() async -> Bool {
        (try? await database.read { db in try db.queryFirst("SELECT 1")?.int(0) }) == 1
    }
}

extension Database {
    /// The operators' counts (`ServerStatsStore`).
    public var serverStats: ServerStatsStore { ServerStatsStore(database: self) }
}
