import Matrix

/// Pushers (spec: client-server API "Push Notifications"; schema: `pushers` in
/// `Schema.pushers`): each is kept as its client JSON, by user, app id and push key.
/// Obtained from `Database.pushers`; called by the `/pushers` handlers and the password
/// change.
public struct PusherStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Adds or replaces a pusher; unless `append`, the same app id and push key of other users
    /// go (their ids are returned).
    @discardableResult
    public func setPusher(user: UserID, appID: String, pushkey: String, device: String?, json: String, append: Bool,
                          now: Int64) async throws -> [String] {
        let user = user.rawValue
        return try await database.write { db in
            var others: [String] = []
            if !append {
                others = try db.query("SELECT user_id FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                                      .text(appID), .text(pushkey), .text(user)).map { try $0.text(0) }
                _ = try db.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                                   .text(appID), .text(pushkey), .text(user))
            }
            _ = try db.execute("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                               .text(user), .text(appID), .text(pushkey))
            _ = try db.execute("""
                INSERT INTO pushers (user_id, app_id, pushkey, device_id, pusher_json, created_ts) VALUES (?, ?, ?, ?, ?, ?)
                """, .text(user), .text(appID), .text(pushkey), .text(device), .text(json), .int(now))
            return others
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

    /// A stored pusher with its keys.
    public struct Stored: Sendable, Equatable {
        public var userID: String
        public var appID: String
        public var pushkey: String
        public var deviceID: String?
        public var json: String
        public var createdTS: Int64
    }

    /// Every pusher (the deliveries load them at start), or the user's only.
    public func stored(of user: UserID? = nil) async throws -> [Stored] {
        let user = user?.rawValue
        return try await database.read { db in
            let columns = "SELECT user_id, app_id, pushkey, device_id, pusher_json, created_ts FROM pushers"
            let rows = try user.map { try db.query(columns + " WHERE user_id = ?", .text($0)) } ?? db.query(columns)
            return try rows.map {
                Stored(userID: try $0.text(0), appID: try $0.text(1), pushkey: try $0.text(2), deviceID: try $0.optionalText(3),
                       json: try $0.text(4), createdTS: try $0.int(5))
            }
        }
    }

    /// Removes the pushers the user set from `devices` (logout, device deletion); returns
    /// how many went.
    @discardableResult
    public func deletePushers(of user: UserID, devices: [String]) async throws -> Int {
        guard !devices.isEmpty else { return 0 }
        let user = user.rawValue
        return try await database.write { db in
            var removed = 0
            for device in devices {
                removed += try db.execute("DELETE FROM pushers WHERE user_id = ? AND device_id = ?", .text(user), .text(device))
            }
            return removed
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
