import Matrix

/// Pushers (spec: client-server API "Push Notifications"; schema: `pushers` in
/// `Schema.pushers`): each is kept as its client JSON, by user, app id and push key.
/// Obtained from `Database.pushers`; called by the `/pushers` handlers and the password
/// change.
public struct PusherStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Adds or replaces a pusher; unless `append`, the same app id and push key of other users go.
    public func setPusher(user: UserID, appID: String, pushkey: String, device: String?, json: String, append: Bool,
                          now: Int64) async throws {
        let user = user.rawValue
        try await database.write { db in
            if !append {
                _ = try db.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                                   .text(appID), .text(pushkey), .text(user))
            }
            _ = try db.execute("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                               .text(user), .text(appID), .text(pushkey))
            _ = try db.execute("""
                INSERT INTO pushers (user_id, app_id, pushkey, device_id, pusher_json, created_ts) VALUES (?, ?, ?, ?, ?, ?)
                """, .text(user), .text(appID), .text(pushkey), .text(device), .text(json), .int(now))
        }
    }

    public func deletePusher(user: UserID, appID: String, pushkey: String) async throws {
        let user = user.rawValue
        try await database.write { db in
            _ = try db.execute("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                               .text(user), .text(appID), .text(pushkey))
        }
    }

    /// The user's pushers' JSON, oldest first.
    public func pushers(of user: UserID) async throws -> [String] {
        let user = user.rawValue
        return try await database.read { db in
            try db.query("SELECT pusher_json FROM pushers WHERE user_id = ? ORDER BY created_ts, app_id, pushkey", .text(user))
                .map { try $0.text(0) }
        }
    }

    /// Removes the user's pushers set from any device but `device` (all when nil).
    public func deletePushers(of user: UserID, except device: String?) async throws {
        let user = user.rawValue
        try await database.write { db in
            if let device {
                _ = try db.execute("DELETE FROM pushers WHERE user_id = ? AND (device_id IS NULL OR device_id <> ?)",
                                   .text(user), .text(device))
            } else {
                _ = try db.execute("DELETE FROM pushers WHERE user_id = ?", .text(user))
            }
        }
    }
}

extension Database {
    /// Pushers.
    public var pushers: PusherStore { PusherStore(database: self) }
}
