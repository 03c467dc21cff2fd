import Matrix

/// Custom profile fields (spec v1.16, MSC4133; schema: `Schema.profileFields`): one row per
/// user and key, the value as JSON text (`displayname` and `avatar_url` stay in `users`,
/// `AccountStore`). Obtained from `Database.profileFields`; called by the profile handlers.
public struct ProfileFieldStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Every custom field of the user, as (key, JSON text), ordered by key.
    public func profileFields(of user: UserID) async throws -> [(key: String, value: String)] {
        let userID = user.rawValue
        let rows = try await database.read { db in
            try db.query("SELECT field, value FROM profile_fields WHERE user_id = ? ORDER BY field", .text(userID))
        }
        return try rows.map { (try $0.text(0), try $0.text(1)) }
    }

    /// Sets (or with `value` nil deletes) one field. When setting would make the user's
    /// fields exceed `maxTotalBytes` (keys plus values), nothing changes and false is returned.
    public func setProfileField(of user: UserID, key: String, value: String?, maxTotalBytes: Int) async throws -> Bool {
        let userID = user.rawValue
        return try await database.write { db in
            guard let value else {
                try db.execute("DELETE FROM profile_fields WHERE user_id = ? AND field = ?", .text(userID), .text(key))
                return true
            }
            let others = try db.query("SELECT field, value FROM profile_fields WHERE user_id = ? AND field <> ?",
                                      .text(userID), .text(key))
            let total = try others.reduce(key.utf8.count + value.utf8.count) {
                $0 + (try $1.text(0)).utf8.count + (try $1.text(1)).utf8.count
            }
            guard total <= maxTotalBytes else { return false }
            try db.execute("""
                INSERT INTO profile_fields (user_id, field, value) VALUES (?, ?, ?)
                ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value
                """, .text(userID), .text(key), .text(value))
            return true
        }
    }

    /// Deletes every custom field of the user, inside the caller's transaction (erasure at
    /// deactivation, `AccountStore.deactivate`).
    static func deleteFields(_ db: any SQLTransaction, userID: String) throws {
        try db.execute("DELETE FROM profile_fields WHERE user_id = ?", .text(userID))
    }
}

extension Database {
    /// Custom profile fields.
    public var profileFields: ProfileFieldStore { ProfileFieldStore(database: self) }
}
