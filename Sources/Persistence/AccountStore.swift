import Matrix

/// Typed access to `users`: local accounts, their passwords, flags and the two profile
/// fields kept there. Obtained from `Database.accounts`; called by the registration, login,
/// profile, account-management and admin handlers. Devices are `DeviceStore`'s, tokens
/// `TokenStore`'s; changing a password or deactivating also removes devices and tokens in
/// the same transaction, through those stores' SQL. Each method is one read or one write
/// transaction.
public struct AccountStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Inserts the user. Returns false, changing nothing, when the id is taken.
    @discardableResult
    public func createUser(_ user: UserRecord) async throws -> Bool {
        try await database.write { db in
            try db.execute("""
                INSERT INTO users (user_id, password_hash, created_ts, is_guest, is_admin, deactivated,
                                   displayname, avatar_url)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (user_id) DO NOTHING
                """,
                .text(user.userID), .text(user.passwordHash), .int(user.createdTs), .bool(user.isGuest),
                .bool(user.isAdmin), .bool(user.deactivated), .text(user.displayname), .text(user.avatarURL)) == 1
        }
    }

    public func user(id userID: UserID) async throws -> UserRecord? {
        try await database.read { db in try Self.user(db, id: userID.rawValue) }
    }

    /// The user row of `userID` inside a transaction (`TokenStore.accessTokenWithUser` reads
    /// it with the token).
    static func user(_ db: any SQLConnection, id userID: String) throws -> UserRecord? {
        try db.queryFirst("""
            SELECT user_id, password_hash, created_ts, is_guest, is_admin, deactivated, displayname, avatar_url,
                   locked, suspended, erased
            FROM users WHERE user_id = ?
            """, .text(userID)).map(Self.user)
    }

    /// Replaces every column of an existing user. Returns false when there is no such user.
    @discardableResult
    public func updateUser(_ user: UserRecord) async throws -> Bool {
        try await database.write { db in
            try db.execute("""
                UPDATE users SET password_hash = ?, is_guest = ?, is_admin = ?, deactivated = ?,
                                 displayname = ?, avatar_url = ?
                WHERE user_id = ?
                """,
                .text(user.passwordHash), .bool(user.isGuest), .bool(user.isAdmin), .bool(user.deactivated),
                .text(user.displayname), .text(user.avatarURL), .text(user.userID)) == 1
        }
    }

    /// A row of the columns `user(_:id:)` selects, in that order.
    static func user(_ row: SQLRow) throws -> UserRecord {
        UserRecord(userID: try row.text(0), passwordHash: try row.optionalText(1), createdTs: try row.int(2),
                   isGuest: try row.bool(3), isAdmin: try row.bool(4), deactivated: try row.bool(5),
                   displayname: try row.optionalText(6), avatarURL: try row.optionalText(7),
                   locked: try row.bool(8), suspended: try row.bool(9), erased: try row.bool(10))
    }

    /// Sets a new password hash; with `keepingDevice` non-nil, every other device of the user
    /// and its tokens are deleted in the same transaction (`logout_devices`; the inner nil
    /// keeps no device, for a token without one).
    public func setPassword(of user: UserID, hash: String, logoutExcept keepingDevice: String??) async throws {
        let userID = user.rawValue
        try await database.write { db in
            try db.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", .text(hash), .text(userID))
            guard let keep = keepingDevice else { return }
            try TokenStore.deleteTokens(db, userID: userID, exceptDevice: keep ?? "")
            try DeviceStore.deleteDevices(db, userID: userID, exceptDevice: keep ?? "")
        }
    }

    /// Deactivates the user: no password, every device and token deleted; with `erase` the
    /// profile is cleared too.
    public func deactivate(_ user: UserID, erase: Bool) async throws {
        let userID = user.rawValue
        try await database.write { db in
            try db.execute("UPDATE users SET deactivated = ?, password_hash = NULL WHERE user_id = ?", .bool(true), .text(userID))
            if erase {
                try db.execute("UPDATE users SET displayname = NULL, avatar_url = NULL, erased = ? WHERE user_id = ?",
                               .bool(true), .text(userID))
                try ProfileFieldStore.deleteFields(db, userID: userID)
            }
            try TokenStore.deleteTokens(db, userID: userID, deviceID: nil)
            try DeviceStore.deleteDevices(db, userID: userID, exceptDevice: nil)
        }
    }

    /// Sets one profile field (`displayname` or `avatar_url`); false when there is no such user.
    @discardableResult
    public func setProfileField(of user: UserID, field: ProfileField, value: String?) async throws -> Bool {
        let userID = user.rawValue
        return try await database.write { db in
            try db.execute("UPDATE users SET \(field.rawValue) = ? WHERE user_id = ?", .text(value), .text(userID)) == 1
        }
    }

    public enum ProfileField: String, Sendable {
        case displayname
        case avatarURL = "avatar_url"
    }

    /// Local, active, non-guest users whose localpart or display name contains `term`
    /// (case-insensitive), at most `limit`, for the user directory. `serverName` is the
    /// local server's (cut off so that it never matches). With `visibleTo`, only users who
    /// share a joined room with that user or are joined to a room published in the directory
    /// (Synapse's default scope of the user directory).
    public func searchUsers(term: String, serverName: String, limit: Int, visibleTo: UserID? = nil) async throws -> [UserRecord] {
        let suffix = Int64(serverName.utf8.count + 2)  // the sigil and the colon
        let pattern = "%" + term.lowercased().replacing("\\", with: "\\\\").replacing("%", with: "\\%")
            .replacing("_", with: "\\_") + "%"
        let scope = visibleTo?.rawValue ?? ""
        return try await database.read { db in
            try db.query("""
                SELECT user_id, password_hash, created_ts, is_guest, is_admin, deactivated, displayname, avatar_url
                FROM users WHERE deactivated = ? AND is_guest = ?
                  AND (LOWER(SUBSTR(user_id, 2, CAST(LENGTH(user_id) - ? AS INTEGER))) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(displayname, '')) LIKE ? ESCAPE '\\')
                  AND (? = '' OR user_id IN (
                        SELECT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                        WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'
                        UNION
                        SELECT m.user_id FROM room_memberships m JOIN room_directory d ON d.room_id = m.room_id
                        WHERE d.visibility = 'public' AND m.membership = 'join'))
                ORDER BY user_id LIMIT ?
                """, .bool(false), .bool(false), .int(suffix), .text(pattern), .text(pattern),
                .text(scope), .text(scope), .int(Int64(limit)))
                .map { row in
                    UserRecord(userID: try row.text(0), passwordHash: nil, createdTs: try row.int(2),
                               isGuest: try row.bool(3), isAdmin: try row.bool(4), deactivated: try row.bool(5),
                               displayname: try row.optionalText(6), avatarURL: try row.optionalText(7))
                }
        }
    }
}

extension Database {
    /// Users (accounts).
    public var accounts: AccountStore { AccountStore(database: self) }
}
