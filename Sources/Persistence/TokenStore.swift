import Matrix

/// Typed access to `access_tokens`: the hashes of access and refresh tokens (never the
/// tokens), the device each authenticates, their expiry and refresh rotation. Obtained from
/// `Database.tokens`; called by login, logout and `/refresh`, and by `Sessions` when a token
/// is not resident. `DeviceStore` and `AccountStore` delete tokens inside their own
/// transactions through the statements below.
public struct TokenStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

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
                  let user = try AccountStore.user(db, id: token.userID) else { return nil }
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

    /// Issues the tokens of a refresh of `old` (found by its refresh hash): the new row
    /// names `old` as the token it replaces, and `old` stays valid until the new tokens are
    /// first used (`completeRotation`), so a client that lost the response can
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

    /// Deletes one token (logout). Returns false when it was not stored.
    @discardableResult
    public func deleteAccessToken(hash: String) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM access_tokens WHERE token_hash = ?", .text(hash)) == 1
        }
    }

    /// Deletes the tokens of one device, or with `device` nil every token of the user
    /// (logout/all). Returns how many were deleted.
    @discardableResult
    public func deleteAccessTokens(of user: UserID, device: DeviceID?) async throws -> Int {
        let userID = user.rawValue, deviceID = device?.rawValue
        return try await database.write { db in try Self.deleteTokens(db, userID: userID, deviceID: deviceID) }
    }

    /// Deletes the tokens of one device, or with `deviceID` nil every token of the user,
    /// inside the caller's transaction.
    @discardableResult
    static func deleteTokens(_ db: any SQLTransaction, userID: String, deviceID: String?) throws -> Int {
        if let deviceID {
            return try db.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                                  .text(userID), .text(deviceID))
        }
        return try db.execute("DELETE FROM access_tokens WHERE user_id = ?", .text(userID))
    }

    /// Deletes every token of the user but those of `exceptDevice` (tokens without a device
    /// go too), inside the caller's transaction (`logout_devices` of a password change).
    static func deleteTokens(_ db: any SQLTransaction, userID: String, exceptDevice: String) throws {
        try db.execute("DELETE FROM access_tokens WHERE user_id = ? AND (device_id IS NULL OR device_id <> ?)",
                       .text(userID), .text(exceptDevice))
    }

    private static func accessToken(_ row: SQLRow) throws -> AccessTokenRecord {
        AccessTokenRecord(tokenHash: try row.text(0), userID: try row.text(1), deviceID: try row.optionalText(2),
                          createdTs: try row.int(3), expiresTs: try row.optionalInt(4),
                          refreshTokenHash: try row.optionalText(5), refreshExpiresTs: try row.optionalInt(6),
                          replacesTokenHash: try row.optionalText(7))
    }
}

extension Database {
    /// Access and refresh tokens.
    public var tokens: TokenStore { TokenStore(database: self) }
}
