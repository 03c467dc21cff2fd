import Matrix

/// The administrators' queries and writes over `users` (`Schema.accounts`, with the flags of
/// `Schema.adminUserFlags`): the paged, filtered listing of Synapse's `GET
/// /_synapse/admin/v2/users`, and the admin, lock and suspension flags. Obtained from
/// `Database.adminUsers`; called by the App's admin handlers (`Admin/AdminUsers*.swift`).
/// Passwords and deactivation stay `AccountStore`'s.
public struct AdminUserStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// A user as the admin listing shows it: the row and the newest sighting of its devices.
    public struct Row: Sendable, Equatable {
        public var user: UserRecord
        public var lastSeenTs: Int64?
    }

    /// The orders of Synapse's user listing; the second key is always the user id ascending.
    /// Orders on what Myelin does not have (`user_type`, `shadow_banned`) fall back to the id.
    public enum Order: String, Sendable, CaseIterable {
        case name, displayname, avatarURL = "avatar_url", isGuest = "is_guest", admin, deactivated
        case userType = "user_type", shadowBanned = "shadow_banned"
        case creationTs = "creation_ts", lastSeenTs = "last_seen_ts", locked

        /// The sort key, NULLs first in ascending order on both backends.
        var sortKey: String {
            let column: String
            switch self {
            case .name, .userType, .shadowBanned: return "u.user_id"
            case .isGuest: return "u.is_guest"
            case .admin: return "u.is_admin"
            case .deactivated: return "u.deactivated"
            case .locked: return "u.locked"
            case .creationTs: return "u.created_ts"
            case .displayname: column = "u.displayname"
            case .avatarURL: column = "u.avatar_url"
            case .lastSeenTs: column = "last_seen"
            }
            return "(CASE WHEN \(column) IS NULL THEN 0 ELSE 1 END), \(column)"
        }
    }

    /// What a listing selects (Synapse's query parameters).
    public struct Query: Sendable {
        public var offset: Int64 = 0
        public var limit: Int64 = 100
        /// Users whose full id contains this (ignored when `name` is set).
        public var userID: String?
        /// Users whose localpart or display name contains this, case-insensitively.
        public var name: String?
        public var guests = true
        /// nil: both; false: deactivated users excluded; true: only them.
        public var deactivated: Bool? = false
        /// nil: both; true: only admins; false: admins excluded.
        public var admins: Bool?
        /// false: locked users excluded.
        public var includeLocked = false
        public var order: Order = .name
        public var backwards = false
        public init() {}
    }

    static let columns = """
        u.user_id, u.password_hash, u.created_ts, u.is_guest, u.is_admin, u.deactivated, u.displayname, u.avatar_url,
        u.locked, u.suspended, u.erased
        """

    /// One page of local users and the number of users the filters select. `serverName` is
    /// the local server's (its length cuts the localpart out of the id).
    public func list(_ query: Query, serverName: String) async throws -> (rows: [Row], total: Int64) {
        var filters: [String] = []
        var bindings: [SQLValue] = []
        if let name = query.name, !name.isEmpty {
            let pattern = Self.containsPattern(name)
            filters.append("""
                (LOWER(SUBSTR(u.user_id, 2, CAST(LENGTH(u.user_id) - ? AS INTEGER))) LIKE ? ESCAPE '\\' \
                OR LOWER(COALESCE(u.displayname, '')) LIKE ? ESCAPE '\\')
                """)
            bindings += [.int(Int64(serverName.utf8.count + 2)), .text(pattern), .text(pattern)]
        } else if let userID = query.userID, !userID.isEmpty {
            filters.append("LOWER(u.user_id) LIKE ? ESCAPE '\\'")
            bindings.append(.text(Self.containsPattern(userID)))
        }
        if !query.guests {
            filters.append("u.is_guest = ?")
            bindings.append(.bool(false))
        }
        if let deactivated = query.deactivated {
            filters.append("u.deactivated = ?")
            bindings.append(.bool(deactivated))
        }
        if let admins = query.admins {
            filters.append("u.is_admin = ?")
            bindings.append(.bool(admins))
        }
        if !query.includeLocked {
            filters.append("u.locked = ?")
            bindings.append(.bool(false))
        }
        let whereClause = filters.isEmpty ? "" : "WHERE " + filters.joined(separator: " AND ")
        let direction = query.backwards ? "DESC" : "ASC"
        let orderClause = query.order.sortKey.split(separator: ", ").map { "\($0) \(direction)" }.joined(separator: ", ")
        let pageSQL = """
            SELECT \(Self.columns), last_seen FROM (
                SELECT \(Self.columns),
                       (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen
                FROM users u \(whereClause)
            ) u
            ORDER BY \(orderClause), u.user_id ASC
            LIMIT ? OFFSET ?
            """
        let countSQL = "SELECT COUNT(*) FROM users u \(whereClause)"
        let limit = query.limit, offset = query.offset, values = bindings
        return try await database.read { db in
            let total = try db.queryFirst(countSQL, values)?.int(0) ?? 0
            let rows = try db.query(pageSQL, values + [.int(limit), .int(offset)]).map { row in
                Row(user: try AccountStore.user(row), lastSeenTs: try row.optionalInt(11))
            }
            return (rows, total)
        }
    }

    /// `%text%` for `LIKE ... ESCAPE '\'`, lower-cased, its wildcards escaped.
    static func containsPattern(_ text: String) -> String {
        "%" + text.lowercased().replacing("\\", with: "\\\\").replacing("%", with: "\\%").replacing("_", with: "\\_") + "%"
    }

    /// The newest sighting of the user's devices, if any.
    public func lastSeen(of user: UserID) async throws -> Int64? {
        try await database.read { db in
            try db.queryFirst("SELECT MAX(last_seen_ts) FROM devices WHERE user_id = ?", .text(user.rawValue))?.optionalInt(0)
        }
    }

    /// Sets one admin-controlled flag; false when there is no such user.
    @discardableResult
    public func setFlag(_ flag: Flag, of user: UserID, to value: Bool) async throws -> Bool {
        let userID = user.rawValue
        return try await database.write { db in
            try db.execute("UPDATE users SET \(flag.rawValue) = ? WHERE user_id = ?", .bool(value), .text(userID)) == 1
        }
    }

    public enum Flag: String, Sendable {
        case admin = "is_admin"
        case locked
        case suspended
    }

    /// Reactivates a deactivated user with a new password (Synapse: `deactivated: false`
    /// through `PUT /_synapse/admin/v2/users/{userId}`).
    public func reactivate(_ user: UserID, passwordHash: String) async throws {
        let userID = user.rawValue
        try await database.write { db in
            try db.execute("UPDATE users SET deactivated = ?, erased = ?, password_hash = ? WHERE user_id = ?",
                           .bool(false), .bool(false), .text(passwordHash), .text(userID))
        }
    }
}

extension Database {
    /// The administrators' view of users.
    public var adminUsers: AdminUserStore { AdminUserStore(database: self) }
}
