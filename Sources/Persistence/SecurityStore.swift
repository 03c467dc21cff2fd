/// One IP block as stored: a normalised CIDR range and who blocked it, why, until when.
public struct IPBlockRecord: Sendable, Equatable {
    public var range: String
    public var reason: String?
    public var blockedBy: String?
    public var blockedTs: Int64
    public var expiresTs: Int64?

    public init(range: String, reason: String?, blockedBy: String?, blockedTs: Int64, expiresTs: Int64?) {
        self.range = range
        self.reason = reason
        self.blockedBy = blockedBy
        self.blockedTs = blockedTs
        self.expiresTs = expiresTs
    }
}

/// One entry of the security event log.
public struct SecurityEventRecord: Sendable, Equatable {
    public var id: Int64
    public var type: String
    public var userID: String?
    public var ip: String?
    public var ts: Int64
    /// A JSON object as text, or nil.
    public var details: String?

    public init(id: Int64 = 0, type: String, userID: String?, ip: String?, ts: Int64, details: String?) {
        self.id = id
        self.type = type
        self.userID = userID
        self.ip = ip
        self.ts = ts
        self.details = details
    }
}

/// A registration token (Synapse's admin API shape).
public struct RegistrationTokenRecord: Sendable, Equatable {
    public var token: String
    public var usesAllowed: Int64?
    public var pending: Int64
    public var completed: Int64
    public var expiryTime: Int64?

    public init(token: String, usesAllowed: Int64?, pending: Int64 = 0, completed: Int64 = 0, expiryTime: Int64?) {
        self.token = token
        self.usesAllowed = usesAllowed
        self.pending = pending
        self.completed = completed
        self.expiryTime = expiryTime
    }

    /// Usable at `now`: not expired, and uses left counting the ones in progress.
    public func isValid(now: Int64) -> Bool {
        if let expiryTime, expiryTime <= now { return false }
        if let usesAllowed, pending + completed >= usesAllowed { return false }
        return true
    }
}

/// The tables of the admin security extension (`Schema.adminSecurity`): IP blocks, the
/// security event log, rate-limit overrides, registration tokens. Obtained from
/// `Database.security`; called by the App's `SecurityService` and the admin handlers.
public struct SecurityStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    // MARK: IP blocks

    /// Adds or replaces the block of `record.range`.
    public func putBlock(_ record: IPBlockRecord) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO ip_blocks (ip_range, reason, blocked_by, blocked_ts, expires_ts) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (ip_range) DO UPDATE SET reason = excluded.reason, blocked_by = excluded.blocked_by,
                    blocked_ts = excluded.blocked_ts, expires_ts = excluded.expires_ts
                """, .text(record.range), .text(record.reason), .text(record.blockedBy), .int(record.blockedTs),
                .int(record.expiresTs))
        }
    }

    /// Removes the block of `range`; false if there was none.
    public func removeBlock(_ range: String) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM ip_blocks WHERE ip_range = ?", .text(range)) > 0
        }
    }

    /// Every block, in range order.
    public func blocks() async throws -> [IPBlockRecord] {
        try await database.read { db in
            try db.query("SELECT ip_range, reason, blocked_by, blocked_ts, expires_ts FROM ip_blocks ORDER BY ip_range").map {
                IPBlockRecord(range: try $0.text(0), reason: try $0.optionalText(1), blockedBy: try $0.optionalText(2),
                              blockedTs: try $0.int(3), expiresTs: try $0.optionalInt(4))
            }
        }
    }

    /// Deletes the blocks expired at `now`; returns how many.
    @discardableResult
    public func removeExpiredBlocks(now: Int64) async throws -> Int {
        try await database.write { db in
            try db.execute("DELETE FROM ip_blocks WHERE expires_ts IS NOT NULL AND expires_ts <= ?", .int(now))
        }
    }

    // MARK: Security events

    /// Appends `events` (their `id` is ignored: the table assigns it).
    public func appendEvents(_ events: [SecurityEventRecord]) async throws {
        guard !events.isEmpty else { return }
        try await database.write { db in
            for event in events {
                try db.execute("INSERT INTO security_events (event_type, user_id, ip, ts, details) VALUES (?, ?, ?, ?, ?)",
                               .text(event.type), .text(event.userID), .text(event.ip), .int(event.ts), .text(event.details))
            }
        }
    }

    /// Keeps only the newest `cap` events.
    public func trimEvents(keeping cap: Int) async throws {
        try await database.write { db in
            guard let newest = try db.queryFirst("SELECT MAX(id) FROM security_events"), let max = try newest.optionalInt(0) else { return }
            try db.execute("DELETE FROM security_events WHERE id <= ?", .int(max - Int64(cap)))
        }
    }

    /// Up to `limit` events, newest first, older than `before` (an id; nil: from the newest),
    /// of `type` if given, and the total count matching `type`.
    public func events(before: Int64?, limit: Int, type: String?) async throws -> (events: [SecurityEventRecord], total: Int64) {
        try await database.read { db in
            var conditions: [String] = []
            var bindings: [SQLValue] = []
            if let type { conditions.append("event_type = ?"); bindings.append(.text(type)) }
            let totalWhere = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            let total = try db.queryFirst("SELECT COUNT(*) FROM security_events" + totalWhere, bindings)?.int(0) ?? 0
            if let before { conditions.append("id < ?"); bindings.append(.int(before)) }
            let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            bindings.append(.int(Int64(limit)))
            let rows = try db.query("""
                SELECT id, event_type, user_id, ip, ts, details FROM security_events\(whereClause) ORDER BY id DESC LIMIT ?
                """, bindings)
            let events = try rows.map {
                SecurityEventRecord(id: try $0.int(0), type: try $0.text(1), userID: try $0.optionalText(2),
                                    ip: try $0.optionalText(3), ts: try $0.int(4), details: try $0.optionalText(5))
            }
            return (events, total)
        }
    }

    // MARK: Rate-limit overrides

    public func rateLimitOverride(_ userID: String) async throws -> (messagesPerSecond: Int64, burstCount: Int64)? {
        try await database.read { db in
            guard let row = try db.queryFirst("SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = ?",
                                              .text(userID)) else { return nil }
            return (try row.int(0), try row.int(1))
        }
    }

    public func allRateLimitOverrides() async throws -> [(userID: String, messagesPerSecond: Int64, burstCount: Int64)] {
        try await database.read { db in
            try db.query("SELECT user_id, messages_per_second, burst_count FROM ratelimit_overrides").map {
                (try $0.text(0), try $0.int(1), try $0.int(2))
            }
        }
    }

    public func setRateLimitOverride(_ userID: String, messagesPerSecond: Int64, burstCount: Int64) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) VALUES (?, ?, ?)
                ON CONFLICT (user_id) DO UPDATE SET messages_per_second = excluded.messages_per_second,
                    burst_count = excluded.burst_count
                """, .text(userID), .int(messagesPerSecond), .int(burstCount))
        }
    }

    public func removeRateLimitOverride(_ userID: String) async throws {
        try await database.write { db in
            try db.execute("DELETE FROM ratelimit_overrides WHERE user_id = ?", .text(userID))
        }
    }

    // MARK: Registration tokens

    private static let tokenColumns = "token, uses_allowed, pending, completed, expiry_time"

    private static func token(_ row: SQLRow) throws -> RegistrationTokenRecord {
        RegistrationTokenRecord(token: try row.text(0), usesAllowed: try row.optionalInt(1), pending: try row.int(2),
                                completed: try row.int(3), expiryTime: try row.optionalInt(4))
    }

    public func registrationTokens() async throws -> [RegistrationTokenRecord] {
        try await database.read { db in
            try db.query("SELECT \(Self.tokenColumns) FROM registration_tokens ORDER BY token").map(Self.token)
        }
    }

    public func registrationToken(_ token: String) async throws -> RegistrationTokenRecord? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.tokenColumns) FROM registration_tokens WHERE token = ?", .text(token)).map(Self.token)
        }
    }

    /// Stores a new token; false if the token exists.
    public func createRegistrationToken(_ record: RegistrationTokenRecord) async throws -> Bool {
        try await database.write { db in
            try db.execute("""
                INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time) VALUES (?, ?, 0, 0, ?)
                ON CONFLICT (token) DO NOTHING
                """, .text(record.token), .int(record.usesAllowed), .int(record.expiryTime)) > 0
        }
    }

    /// Sets the fields given (`.some(nil)` clears one); nil if the token does not exist.
    public func updateRegistrationToken(_ token: String, usesAllowed: Int64??, expiryTime: Int64??) async throws -> RegistrationTokenRecord? {
        try await database.write { db in
            if let usesAllowed {
                try db.execute("UPDATE registration_tokens SET uses_allowed = ? WHERE token = ?", .int(usesAllowed), .text(token))
            }
            if let expiryTime {
                try db.execute("UPDATE registration_tokens SET expiry_time = ? WHERE token = ?", .int(expiryTime), .text(token))
            }
            return try db.queryFirst("SELECT \(Self.tokenColumns) FROM registration_tokens WHERE token = ?", .text(token)).map(Self.token)
        }
    }

    public func deleteRegistrationToken(_ token: String) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM registration_tokens WHERE token = ?", .text(token)) > 0
        }
    }

    /// Counts one registration in progress with `token` if it is valid at `now` (not expired,
    /// a use left); false otherwise. One statement, so concurrent registrations cannot
    /// overdraw a token.
    public func reserveRegistrationToken(_ token: String, now: Int64) async throws -> Bool {
        try await database.write { db in
            try db.execute("""
                UPDATE registration_tokens SET pending = pending + 1
                WHERE token = ? AND (expiry_time IS NULL OR expiry_time > ?)
                    AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
                """, .text(token), .int(now)) > 0
        }
    }

    /// Ends a registration counted by `reserveRegistrationToken`: completed (the account
    /// exists) or abandoned.
    public func finishRegistrationToken(_ token: String, completed: Bool) async throws {
        try await database.write { db in
            try db.execute("""
                UPDATE registration_tokens SET pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END,
                    completed = completed + ? WHERE token = ?
                """, .int(completed ? 1 : 0), .text(token))
        }
    }
}

extension Database {
    /// IP blocks, the security event log, rate-limit overrides, registration tokens.
    public var security: SecurityStore { SecurityStore(database: self) }
}
