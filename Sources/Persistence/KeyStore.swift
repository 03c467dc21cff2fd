import Matrix

/// End-to-end encryption keys (spec: "End-to-End Encryption", key management API; schema:
/// `Schema.e2eKeys`): device identity keys, one-time and fallback keys, cross-signing keys
/// and signatures. Keys are stored as the client uploaded them (canonical JSON bytes); the
/// App adds signatures and unsigned fields when it serves them. Reads and claims go through
/// `Database.keys` (one transaction each); uploads are static functions run inside the key
/// service's transaction, which records the device-list change with them.
public struct KeyStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The stored keys of `users` from one snapshot: device keys (user, device, JSON),
    /// cross-signing keys (user, key type, JSON) and the signatures of either.
    public func keys(of users: [String]) async throws
        -> (devices: [(String, String, [UInt8])], crossSigning: [(String, String, [UInt8])], signatures: [Signature]) {
        try await database.read { db in
            (try Self.deviceKeys(db, users: users), try Self.crossSigningKeys(db, users: users),
             try Self.signatures(db, targets: users))
        }
    }

    /// The user's cross-signing keys: (user, key type, JSON).
    public func crossSigningKeys(of user: UserID) async throws -> [(String, String, [UInt8])] {
        let user = user.rawValue
        return try await database.read { db in try Self.crossSigningKeys(db, users: [user]) }
    }

    /// Claims one key per (user, device, algorithm) in one transaction: a one-time key, or
    /// the fallback key when none is left; nil where the device has neither.
    public func claim(_ wanted: [(user: UserID, device: String, algorithm: String)]) async throws -> [(String, [UInt8])?] {
        let wanted = wanted.map { ($0.user.rawValue, $0.device, $0.algorithm) }
        return try await database.write { db in
            try wanted.map { try Self.claim(db, userID: $0.0, deviceID: $0.1, algorithm: $0.2) }
        }
    }

    /// The device's unclaimed one-time keys per algorithm and its unused fallback key types,
    /// from one snapshot.
    public func counts(of user: UserID, device: String) async throws -> (oneTimeKeys: [String: Int], unusedFallbackTypes: [String]) {
        let user = user.rawValue
        return try await database.read { db in
            (try Self.oneTimeKeyCounts(db, userID: user, deviceID: device),
             try Self.unusedFallbackKeyTypes(db, userID: user, deviceID: device))
        }
    }

    // MARK: Device keys

    /// Stores a device's identity keys; true when they differ from what was stored.
    public static func setDeviceKeys(_ db: any SQLTransaction, userID: String, deviceID: String, json: [UInt8]) throws -> Bool {
        try replaceIfChanged(db, table: "e2e_device_keys", keyColumn: "device_id", userID: userID, key: deviceID, json: json)
    }

    /// The device keys of `users`: (user, device, json).
    public static func deviceKeys(_ db: any SQLConnection, users: [String]) throws -> [(String, String, [UInt8])] {
        try keyRows(db, table: "e2e_device_keys", keyColumn: "device_id", users: users)
    }

    /// Removes every key of a deleted device.
    public static func deleteDevice(_ db: any SQLTransaction, userID: String, deviceID: String) throws {
        for table in ["e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"] {
            try db.execute("DELETE FROM \(table) WHERE user_id = ? AND device_id = ?", .text(userID), .text(deviceID))
        }
        try db.execute("DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key = ?", .text(userID), .text(deviceID))
    }

    // MARK: One-time and fallback keys

    public struct UploadedKey: Sendable {
        public var algorithm: String
        public var keyID: String
        public var json: [UInt8]
        public init(algorithm: String, keyID: String, json: [UInt8]) {
            self.algorithm = algorithm
            self.keyID = keyID
            self.json = json
        }
    }

    /// Adds one-time keys. A key id already present with the same bytes is accepted (a
    /// retried upload); with other bytes it is a conflict, returned without storing anything.
    public static func addOneTimeKeys(_ db: any SQLTransaction, userID: String, deviceID: String,
                                      keys: [UploadedKey]) throws -> UploadedKey? {
        for key in keys {
            if let existing = try db.queryFirst("""
                SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?
                """, .text(userID), .text(deviceID), .text(key.algorithm), .text(key.keyID)) {
                if try existing.blob(0) != key.json { return key }
                continue
            }
            try db.execute("""
                INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES (?, ?, ?, ?, ?)
                """, .text(userID), .text(deviceID), .text(key.algorithm), .text(key.keyID), .blob(key.json))
        }
        return nil
    }

    /// Unclaimed one-time keys per algorithm.
    public static func oneTimeKeyCounts(_ db: any SQLConnection, userID: String, deviceID: String) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try db.query("""
            SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm
            """, .text(userID), .text(deviceID)) {
            counts[try row.text(0)] = Int(try row.int(1))
        }
        return counts
    }

    /// Takes one one-time key of `algorithm` (deleted as it is handed out), or the device's
    /// fallback key for it (marked used, kept) when none is left: (key id, json).
    public static func claim(_ db: any SQLTransaction, userID: String, deviceID: String,
                             algorithm: String) throws -> (String, [UInt8])? {
        while let row = try db.queryFirst("""
            SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?
            ORDER BY key_id LIMIT 1
            """, .text(userID), .text(deviceID), .text(algorithm)) {
            let keyID = try row.text(0)
            // Another transaction may have taken it first (PostgreSQL): take the next one.
            if try db.execute("""
                DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?
                """, .text(userID), .text(deviceID), .text(algorithm), .text(keyID)) == 1 {
                return (keyID, try row.blob(1))
            }
        }
        guard let fallback = try db.queryFirst("""
            SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?
            """, .text(userID), .text(deviceID), .text(algorithm)) else { return nil }
        try db.execute("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                       .text(userID), .text(deviceID), .text(algorithm))
        return (try fallback.text(0), try fallback.blob(1))
    }

    /// Sets the fallback key of an algorithm. Re-uploading the stored key keeps its used
    /// flag; a new key starts unused.
    public static func setFallbackKey(_ db: any SQLTransaction, userID: String, deviceID: String, key: UploadedKey) throws {
        if let existing = try db.queryFirst("""
            SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?
            """, .text(userID), .text(deviceID), .text(key.algorithm)),
           try existing.text(0) == key.keyID, try existing.blob(1) == key.json {
            return
        }
        try db.execute("""
            INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES (?, ?, ?, ?, ?, 0)
            ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id,
                key_json = excluded.key_json, used = 0
            """, .text(userID), .text(deviceID), .text(key.algorithm), .text(key.keyID), .blob(key.json))
    }

    /// The algorithms whose fallback key has not been handed out.
    public static func unusedFallbackKeyTypes(_ db: any SQLConnection, userID: String, deviceID: String) throws -> [String] {
        try db.query("""
            SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0 ORDER BY algorithm
            """, .text(userID), .text(deviceID)).map { try $0.text(0) }
    }

    // MARK: Cross-signing keys and signatures

    /// Stores a cross-signing key (`master`, `self_signing`, `user_signing`); true if it changed.
    public static func setCrossSigningKey(_ db: any SQLTransaction, userID: String, type: String, json: [UInt8]) throws -> Bool {
        try replaceIfChanged(db, table: "e2e_cross_signing_keys", keyColumn: "key_type", userID: userID, key: type, json: json)
    }

    /// The cross-signing keys of `users`: (user, type, json).
    public static func crossSigningKeys(_ db: any SQLConnection, users: [String]) throws -> [(String, String, [UInt8])] {
        try keyRows(db, table: "e2e_cross_signing_keys", keyColumn: "key_type", users: users)
    }

    /// Upserts one key of a table keyed by (user_id, `keyColumn`); false when the stored bytes
    /// are the same (nothing written).
    private static func replaceIfChanged(_ db: any SQLTransaction, table: String, keyColumn: String, userID: String,
                                         key: String, json: [UInt8]) throws -> Bool {
        if let existing = try db.queryFirst("SELECT key_json FROM \(table) WHERE user_id = ? AND \(keyColumn) = ?",
                                            .text(userID), .text(key)),
           try existing.blob(0) == json {
            return false
        }
        try db.execute("""
            INSERT INTO \(table) (user_id, \(keyColumn), key_json) VALUES (?, ?, ?)
            ON CONFLICT (user_id, \(keyColumn)) DO UPDATE SET key_json = excluded.key_json
            """, .text(userID), .text(key), .blob(json))
        return true
    }

    /// (user, `keyColumn`, json) of every row of `users` in a key table.
    private static func keyRows(_ db: any SQLConnection, table: String, keyColumn: String,
                                users: [String]) throws -> [(String, String, [UInt8])] {
        var result: [(String, String, [UInt8])] = []
        for chunk in sqlChunks(users) {
            result += try db.query("SELECT user_id, \(keyColumn), key_json FROM \(table) WHERE user_id IN (\(sqlPlaceholders(chunk.count)))",
                                   chunk.map { .text($0) }).map { (try $0.text(0), try $0.text(1), try $0.blob(2)) }
        }
        return result
    }

    public struct Signature: Sendable {
        public var signerUserID: String
        public var signerKeyID: String
        public var targetUserID: String
        /// A device id, or the public key of a cross-signing key.
        public var targetKey: String
        public var signature: String
        public init(signerUserID: String, signerKeyID: String, targetUserID: String, targetKey: String, signature: String) {
            self.signerUserID = signerUserID
            self.signerKeyID = signerKeyID
            self.targetUserID = targetUserID
            self.targetKey = targetKey
            self.signature = signature
        }
    }

    public static func addSignature(_ db: any SQLTransaction, _ s: Signature) throws {
        try db.execute("""
            INSERT INTO e2e_signatures (signer_user_id, signer_key_id, target_user_id, target_key, signature)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (target_user_id, target_key, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature
            """, .text(s.signerUserID), .text(s.signerKeyID), .text(s.targetUserID), .text(s.targetKey), .text(s.signature))
    }

    /// Signatures on the keys of `users`.
    public static func signatures(_ db: any SQLConnection, targets users: [String]) throws -> [Signature] {
        var result: [Signature] = []
        for chunk in sqlChunks(users) {
            result += try db.query("""
                SELECT signer_user_id, signer_key_id, target_user_id, target_key, signature FROM e2e_signatures
                WHERE target_user_id IN (\(sqlPlaceholders(chunk.count)))
                """, chunk.map { .text($0) }).map {
                Signature(signerUserID: try $0.text(0), signerKeyID: try $0.text(1), targetUserID: try $0.text(2),
                          targetKey: try $0.text(3), signature: try $0.text(4))
            }
        }
        return result
    }
}

extension Database {
    /// End-to-end encryption keys.
    public var keys: KeyStore { KeyStore(database: self) }
}
