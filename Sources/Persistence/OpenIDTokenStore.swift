import Matrix

/// OpenID tokens (spec: "OpenID"; schema: `openid_tokens` in `Schema.clientData`), stored
/// hashed. Obtained from `Database.openIDTokens`; called by the OpenID endpoints.
public struct OpenIDTokenStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    public func addOpenIDToken(hash: String, userID: UserID, expiresTs: Int64) async throws {
        let userID = userID.rawValue
        try await database.write { db in
            try db.execute("DELETE FROM openid_tokens WHERE expires_ts < ?", .int(currentTimeMillis()))
            try db.execute("INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
                           .text(hash), .text(userID), .int(expiresTs))
        }
    }

    /// The user of an unexpired OpenID token (federation `openid/userinfo`).
    public func openIDUser(hash: String, now: Int64) async throws -> String? {
        try await database.read { db in
            try db.queryFirst("SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts >= ?",
                              .text(hash), .int(now))?.text(0)
        }
    }
}

extension Database {
    /// OpenID tokens.
    public var openIDTokens: OpenIDTokenStore { OpenIDTokenStore(database: self) }
}
