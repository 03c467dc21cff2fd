/// Other servers' signing keys (schema: `Schema.serverKeys`): each verified key with the time
/// up to which it may be used, and each server's latest signed key response as received.
/// The key ring (Actors) reads it when a key is not in memory and writes what it fetched;
/// the notary endpoints serve the stored responses. No rules here: the ring decides what is
/// valid and verified.
public struct ServerKeyStore: Sendable {
    /// One stored key.
    public struct Key: Sendable, Equatable {
        public var serverName: String
        /// `ed25519:<version>`.
        public var keyID: String
        /// The public key, unpadded base64 as published.
        public var verifyKey: String
        /// The key may verify what was signed up to this time (ms): `valid_until_ts` as the
        /// ring capped it, or an old key's `expired_ts`.
        public var validUntilTS: Int64
        /// Set for a key listed under `old_verify_keys`.
        public var expiredTS: Int64?
        public var fetchedTS: Int64

        public init(serverName: String, keyID: String, verifyKey: String, validUntilTS: Int64, expiredTS: Int64?, fetchedTS: Int64) {
            self.serverName = serverName
            self.keyID = keyID
            self.verifyKey = verifyKey
            self.validUntilTS = validUntilTS
            self.expiredTS = expiredTS
            self.fetchedTS = fetchedTS
        }
    }

    /// A server's key response as it was received (its own signatures and any notary's).
    public struct Response: Sendable, Equatable {
        public var serverName: String
        /// The response's own `valid_until_ts`, uncapped.
        public var validUntilTS: Int64
        public var fetchedTS: Int64
        public var json: [UInt8]

        public init(serverName: String, validUntilTS: Int64, fetchedTS: Int64, json: [UInt8]) {
            self.serverName = serverName
            self.validUntilTS = validUntilTS
            self.fetchedTS = fetchedTS
            self.json = json
        }
    }

    public let database: Database

    public init(database: Database) { self.database = database }

    /// The stored keys of `server`, by key ID.
    public func keys(of server: String) async throws -> [Key] {
        try await database.read { db in
            try db.query("""
                SELECT key_id, verify_key, valid_until_ts, expired_ts, fetched_ts FROM server_signing_keys
                WHERE server_name = ? ORDER BY key_id
                """, .text(server)).map { row in
                Key(serverName: server, keyID: try row.text(0), verifyKey: try row.text(1), validUntilTS: try row.int(2),
                    expiredTS: try row.optionalInt(3), fetchedTS: try row.int(4))
            }
        }
    }

    /// Records a fetched response and the keys taken from it, in one transaction. A key
    /// already stored takes the new values (the latest response is the truth about it); keys
    /// the response no longer lists stay, as old keys a server forgot may still verify old
    /// events.
    public func save(_ response: Response, keys: [Key]) async throws {
        try await database.write { db in
            for key in keys {
                try db.execute("""
                    INSERT INTO server_signing_keys (server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,
                        valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts
                    """, .text(key.serverName), .text(key.keyID), .text(key.verifyKey), .int(key.validUntilTS),
                    key.expiredTS.map(SQLValue.int) ?? .null, .int(key.fetchedTS))
            }
            try db.execute("""
                INSERT INTO server_key_responses (server_name, valid_until_ts, fetched_ts, response_json) VALUES (?, ?, ?, ?)
                ON CONFLICT (server_name) DO UPDATE SET valid_until_ts = excluded.valid_until_ts,
                    fetched_ts = excluded.fetched_ts, response_json = excluded.response_json
                """, .text(response.serverName), .int(response.validUntilTS), .int(response.fetchedTS), .blob(response.json))
        }
    }

    /// The latest stored response of `server`, if any.
    public func response(of server: String) async throws -> Response? {
        try await database.read { db in
            try db.queryFirst("""
                SELECT valid_until_ts, fetched_ts, response_json FROM server_key_responses WHERE server_name = ?
                """, .text(server)).map { row in
                Response(serverName: server, validUntilTS: try row.int(0), fetchedTS: try row.int(1), json: try row.blob(2))
            }
        }
    }
}
