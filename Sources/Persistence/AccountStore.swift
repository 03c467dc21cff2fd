/// Typed access to `users`, `devices` and `access_tokens`. Obtained from
/// `Database.accounts`; called by the registration, login, device and admin handlers and by
/// token authentication. Each method is one read or one write transaction.
public struct AccountStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    // MARK: users

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

    public func user(id userID: String) async throws -> UserRecord? {
        try await database.read { db in try db.queryFirst(Self.userSQL, .text(userID)).map(Self.user) }
    }

    private static let userSQL = """
        SELECT user_id, password_hash, created_ts, is_guest, is_admin, deactivated, displayname, avatar_url
        FROM users WHERE user_id = ?
        """

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

    private static func user(_ row: SQLRow) throws -> UserRecord {
        UserRecord(userID: try row.text(0), passwordHash: try row.optionalText(1), createdTs: try row.int(2),
                   isGuest: try row.bool(3), isAdmin: try row.bool(4), deactivated: try row.bool(5),
                   displayname: try row.optionalText(6), avatarURL: try row.optionalText(7))
    }

    // MARK: devices

    /// Inserts the device, or updates an existing one: a nil display name or last-seen field
    /// keeps the stored value, and `createdTs` of an existing device never changes.
    public func upsertDevice(_ device: DeviceRecord) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip,
                                     last_seen_user_agent, created_ts)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (user_id, device_id) DO UPDATE SET
                    display_name = COALESCE(excluded.display_name, devices.display_name),
                    last_seen_ts = COALESCE(excluded.last_seen_ts, devices.last_seen_ts),
                    last_seen_ip = COALESCE(excluded.last_seen_ip, devices.last_seen_ip),
                    last_seen_user_agent = COALESCE(excluded.last_seen_user_agent, devices.last_seen_user_agent)
                """,
                .text(device.userID), .text(device.deviceID), .text(device.displayName), .int(device.lastSeenTs),
                .text(device.lastSeenIP), .text(device.lastSeenUserAgent), .int(device.createdTs))
        }
    }

    public func device(userID: String, deviceID: String) async throws -> DeviceRecord? {
        try await database.read { db in
            try db.queryFirst("""
                SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent, created_ts
                FROM devices WHERE user_id = ? AND device_id = ?
                """, .text(userID), .text(deviceID)).map(Self.device)
        }
    }

    /// The user's devices, ordered by device id.
    public func devices(of userID: String) async throws -> [DeviceRecord] {
        try await database.read { db in
            try db.query("""
                SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent, created_ts
                FROM devices WHERE user_id = ? ORDER BY device_id
                """, .text(userID)).map(Self.device)
        }
    }

    /// Deletes the device and, in the same transaction, every access token of it.
    /// Returns false when there was no such device (its tokens are deleted anyway).
    @discardableResult
    public func deleteDevice(userID: String, deviceID: String) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                           .text(userID), .text(deviceID))
            return try db.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                                  .text(userID), .text(deviceID)) == 1
        }
    }

    private static func device(_ row: SQLRow) throws -> DeviceRecord {
        DeviceRecord(userID: try row.text(0), deviceID: try row.text(1), displayName: try row.optionalText(2),
                     lastSeenTs: try row.optionalInt(3), lastSeenIP: try row.optionalText(4),
                     lastSeenUserAgent: try row.optionalText(5), createdTs: try row.int(6))
    }

    // MARK: access tokens

    /// Inserts the token. Throws `DatabaseError.Kind.uniqueViolation` if its hash (or its
    /// refresh token's hash) is already stored.
    public func insertAccessToken(_ token: AccessTokenRecord) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts,
                                           refresh_token_hash, refresh_expires_ts)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                .text(token.tokenHash), .text(token.userID), .text(token.deviceID), .int(token.createdTs),
                .int(token.expiresTs), .text(token.refreshTokenHash), .int(token.refreshExpiresTs))
        }
    }

    public func accessToken(hash: String) async throws -> AccessTokenRecord? {
        try await database.read { db in try db.queryFirst(Self.accessTokenSQL, .text(hash)).map(Self.accessToken) }
    }

    /// The token of `hash` and its user, in one read: what a session that is not resident
    /// needs to authenticate (`Sessions`). Nil when either is unknown.
    public func accessTokenWithUser(hash: String) async throws -> (token: AccessTokenRecord, user: UserRecord)? {
        try await database.read { db in
            guard let token = try db.queryFirst(Self.accessTokenSQL, .text(hash)).map(Self.accessToken),
                  let user = try db.queryFirst(Self.userSQL, .text(token.userID)).map(Self.user) else { return nil }
            return (token, user)
        }
    }

    private static let accessTokenSQL = """
        SELECT token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_hash, refresh_expires_ts,
               replaces_token_hash
        FROM access_tokens WHERE token_hash = ?
        """

    public func accessToken(refreshHash: String) async throws -> AccessTokenRecord? {
        try await database.read { db in
            try db.queryFirst("""
                SELECT token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_hash, refresh_expires_ts,
                       replaces_token_hash
                FROM access_tokens WHERE refresh_token_hash = ?
                """, .text(refreshHash)).map(Self.accessToken)
        }
    }

    /// The first use of a token issued by `/refresh`: the token it replaced is revoked.
    public func completeRotation(tokenHash: String, replaced: String) async throws {
        try await database.write { db in
            try db.execute("DELETE FROM access_tokens WHERE token_hash = ?", .text(replaced))
            try db.execute("UPDATE access_tokens SET replaces_token_hash = NULL WHERE token_hash = ?", .text(tokenHash))
        }
    }

    /// Deletes one token (logout). Returns false when it was not stored.
    @discardableResult
    public func deleteAccessToken(hash: String) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM access_tokens WHERE token_hash = ?", .text(hash)) == 1
        }
    }

    /// Deletes the tokens of one device, or with `deviceID` nil every token of the user
    /// (logout/all, deactivation). Returns how many were deleted.
    @discardableResult
    public func deleteAccessTokens(userID: String, deviceID: String?) async throws -> Int {
        try await database.write { db in
            if let deviceID {
                return try db.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                                      .text(userID), .text(deviceID))
            }
            return try db.execute("DELETE FROM access_tokens WHERE user_id = ?", .text(userID))
        }
    }

    private static func accessToken(_ row: SQLRow) throws -> AccessTokenRecord {
        AccessTokenRecord(tokenHash: try row.text(0), userID: try row.text(1), deviceID: try row.optionalText(2),
                          createdTs: try row.int(3), expiresTs: try row.optionalInt(4),
                          refreshTokenHash: try row.optionalText(5), refreshExpiresTs: try row.optionalInt(6),
                          replacesTokenHash: try row.optionalText(7))
    }
}

extension AccountStore {
    /// Deletes several devices of a user and their tokens in one transaction.
    public func deleteDevices(userID: String, deviceIDs: [String]) async throws {
        try await database.write { db in
            for deviceID in deviceIDs {
                try db.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", .text(userID), .text(deviceID))
                try db.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?", .text(userID), .text(deviceID))
            }
        }
    }

    /// Sets a new password hash; with `keepingDevice` non-nil, every other device of the user
    /// and its tokens are deleted in the same transaction (`logout_devices`).
    public func setPassword(userID: String, hash: String, logoutExcept keepingDevice: String??) async throws {
        try await database.write { db in
            try db.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", .text(hash), .text(userID))
            guard let keep = keepingDevice else { return }
            try db.execute("DELETE FROM access_tokens WHERE user_id = ? AND (device_id IS NULL OR device_id <> ?)",
                           .text(userID), .text(keep ?? ""))
            try db.execute("DELETE FROM devices WHERE user_id = ? AND device_id <> ?", .text(userID), .text(keep ?? ""))
        }
    }

    /// Deactivates the user: no password, every device and token deleted; with `erase` the
    /// profile is cleared too.
    public func deactivate(userID: String, erase: Bool) async throws {
        try await database.write { db in
            try db.execute("UPDATE users SET deactivated = ?, password_hash = NULL WHERE user_id = ?", .bool(true), .text(userID))
            if erase {
                try db.execute("UPDATE users SET displayname = NULL, avatar_url = NULL WHERE user_id = ?", .text(userID))
                try db.execute("DELETE FROM profile_fields WHERE user_id = ?", .text(userID))
            }
            try db.execute("DELETE FROM access_tokens WHERE user_id = ?", .text(userID))
            try db.execute("DELETE FROM devices WHERE user_id = ?", .text(userID))
        }
    }

    /// Sets one profile field (`displayname` or `avatar_url`); false when there is no such user.
    @discardableResult
    public func setProfileField(userID: String, field: ProfileField, value: String?) async throws -> Bool {
        try await database.write { db in
            try db.execute("UPDATE users SET \(field.rawValue) = ? WHERE user_id = ?", .text(value), .text(userID)) == 1
        }
    }

    public enum ProfileField: String, Sendable {
        case displayname
        case avatarURL = "avatar_url"
    }

    /// Issues the tokens of a refresh of `old` (found by its refresh hash): the new row
    /// names `old` as the token it replaces, and `old` stays valid until the new tokens are
    /// first used (`AccountStore.completeRotation`), so a client that lost the response can
    /// refresh again. A refresh that repeats replaces the unused tokens of the earlier one;
    /// refreshing with the new refresh token revokes `old` at once. Returns false, changing
    /// nothing, when `old` is gone (revoked, or replaced by tokens already used).
    public func rotateRefreshToken(old: AccessTokenRecord, new: AccessTokenRecord) async throws -> Bool {
        try await database.write { db in
            guard try db.queryFirst("SELECT 1 FROM access_tokens WHERE token_hash = ?", .text(old.tokenHash)) != nil else {
                return false
            }
            // An unused successor of an earlier refresh of the same token.
            try db.execute("DELETE FROM access_tokens WHERE replaces_token_hash = ?", .text(old.tokenHash))
            // Using a successor's refresh token is its first use: its predecessor goes.
            if let predecessor = old.replacesTokenHash {
                try db.execute("DELETE FROM access_tokens WHERE token_hash = ?", .text(predecessor))
                try db.execute("UPDATE access_tokens SET replaces_token_hash = NULL WHERE token_hash = ?", .text(old.tokenHash))
            }
            try db.execute("""
                INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts,
                                           refresh_token_hash, refresh_expires_ts, replaces_token_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                .text(new.tokenHash), .text(new.userID), .text(new.deviceID), .int(new.createdTs),
                .int(new.expiresTs), .text(new.refreshTokenHash), .int(new.refreshExpiresTs), .text(old.tokenHash))
            return true
        }
    }

    /// Writes a batch of last-seen updates (the `LastSeenBatcher` of the session actors flushes them every
    /// few seconds rather than writing per request). Devices deleted meanwhile are skipped.
    public func recordLastSeen(_ updates: [(userID: String, deviceID: String, ts: Int64, ip: String, userAgent: String?)]) async throws {
        let batch = updates.map { [SQLValue.int($0.ts), .text($0.ip), .text($0.userAgent), .text($0.userID), .text($0.deviceID)] }
        try await database.write { db in
            for values in batch {
                _ = try db.query("""
                    UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?,
                        last_seen_user_agent = COALESCE(?, last_seen_user_agent)
                    WHERE user_id = ? AND device_id = ?
                    """, values)
            }
        }
    }

    /// Local, active, non-guest users whose localpart or display name contains `term`
    /// (case-insensitive), at most `limit`, for the user directory. `serverName` is the
    /// local server's (cut off so that it never matches).
    /// Local active users whose localpart or display name contains `term`. With `visibleTo`,
    /// only users who share a joined room with that user or are joined to a room published
    /// in the directory (Synapse's default scope of the user directory).
    public func searchUsers(term: String, serverName: String, limit: Int, visibleTo: String? = nil) async throws -> [UserRecord] {
        let suffix = Int64(serverName.utf8.count + 2)  // the sigil and the colon
        let pattern = "%" + term.lowercased().replacing("\\", with: "\\\\").replacing("%", with: "\\%")
            .replacing("_", with: "\\_") + "%"
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
                .text(visibleTo ?? ""), .text(visibleTo ?? ""), .int(Int64(limit)))
                .map { row in
                    UserRecord(userID: try row.text(0), passwordHash: nil, createdTs: try row.int(2),
                               isGuest: try row.bool(3), isAdmin: try row.bool(4), deactivated: try row.bool(5),
                               displayname: try row.optionalText(6), avatarURL: try row.optionalText(7))
                }
        }
    }
}
