import Matrix

/// Server-side key backups (spec: client-server API "Server-side key backups"; schema:
/// `e2e_backup_versions`, `e2e_backup_keys` in `Schema.keyBackup`). Obtained from
/// `Database.keyBackups`; called by the `/room_keys` handlers. A version's `etag` moves at
/// every change of its keys.
public struct KeyBackupStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    public struct Version: Sendable, Equatable {
        public var version: Int64
        public var algorithm: String
        public var authData: String
        public var etag: Int64
        public var count: Int64
    }

    /// One backed-up room key: the fields an upload is compared on, and the whole object.
    public struct Key: Sendable, Equatable {
        public var roomID: String
        public var sessionID: String
        public var firstMessageIndex: Int64
        public var forwardedCount: Int64
        public var isVerified: Bool
        public var json: String
        public init(roomID: String, sessionID: String, firstMessageIndex: Int64, forwardedCount: Int64, isVerified: Bool,
                    json: String) {
            self.roomID = roomID; self.sessionID = sessionID; self.firstMessageIndex = firstMessageIndex
            self.forwardedCount = forwardedCount; self.isVerified = isVerified; self.json = json
        }
    }

    /// A new version, numbered after every earlier one (deleted ones included). Two creations
    /// at once (PostgreSQL runs writes concurrently) may pick the same number: the later one
    /// then inserts nothing, reads the maximum again (a new snapshot per statement under READ
    /// COMMITTED) and takes the next.
    public func createVersion(user: UserID, algorithm: String, authData: String) async throws -> Int64 {
        let user = user.rawValue
        return try await database.write { db in
            for _ in 0..<8 {
                let last = try db.queryFirst("SELECT MAX(version) FROM e2e_backup_versions WHERE user_id = ?", .text(user))
                let next = (try last?.optionalInt(0) ?? 0) + 1
                let inserted = try db.execute("""
                    INSERT INTO e2e_backup_versions (user_id, version, algorithm, auth_data_json, etag, deleted)
                    VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (user_id, version) DO NOTHING
                    """, .text(user), .int(next), .text(algorithm), .text(authData), .bool(false))
                if inserted == 1 { return next }
            }
            throw DatabaseError(.uniqueViolation, "could not allocate a key backup version")
        }
    }

    /// A live version, or the latest live one when `version` is nil.
    public func version(user: UserID, _ version: Int64?) async throws -> Version? {
        let user = user.rawValue
        return try await database.read { db in try Self.version(db, user, version) }
    }

    static func version(_ db: any SQLConnection, _ user: String, _ version: Int64?) throws -> Version? {
        let row = try version.map {
            try db.queryFirst("""
                SELECT version, algorithm, auth_data_json, etag FROM e2e_backup_versions
                WHERE user_id = ? AND version = ? AND deleted = ?
                """, .text(user), .int($0), .bool(false))
        } ?? db.queryFirst("""
                SELECT version, algorithm, auth_data_json, etag FROM e2e_backup_versions
                WHERE user_id = ? AND deleted = ? ORDER BY version DESC LIMIT 1
                """, .text(user), .bool(false))
        guard let row else { return nil }
        let number = try row.int(0)
        let count = try db.queryFirst("SELECT COUNT(*) FROM e2e_backup_keys WHERE user_id = ? AND version = ?",
                                      .text(user), .int(number))?.int(0) ?? 0
        return Version(version: number, algorithm: try row.text(1), authData: try row.text(2), etag: try row.int(3), count: count)
    }

    /// Replaces a live version's `auth_data`; false when there is no such version.
    public func updateVersion(user: UserID, _ version: Int64, authData: String) async throws -> Bool {
        let user = user.rawValue
        return try await database.write { db in
            try db.execute("UPDATE e2e_backup_versions SET auth_data_json = ? WHERE user_id = ? AND version = ? AND deleted = ?",
                           .text(authData), .text(user), .int(version), .bool(false)) == 1
        }
    }

    /// Deletes a version and its keys. True when the version exists or existed (deleting a
    /// deleted version again succeeds, as the specification asks); false when it never did.
    public func deleteVersion(user: UserID, _ version: Int64) async throws -> Bool {
        let user = user.rawValue
        return try await database.write { db in
            _ = try db.execute("DELETE FROM e2e_backup_keys WHERE user_id = ? AND version = ?", .text(user), .int(version))
            return try db.execute("UPDATE e2e_backup_versions SET deleted = ? WHERE user_id = ? AND version = ?",
                                  .bool(true), .text(user), .int(version)) == 1
        }
    }

    /// The user's live versions, newest first, at most `limit`.
    public func versions(user: UserID, limit: Int = 100) async throws -> [Version] {
        let user = user.rawValue
        return try await database.read { db in
            let rows = try db.query("""
                SELECT version FROM e2e_backup_versions WHERE user_id = ? AND deleted = ? ORDER BY version DESC LIMIT ?
                """, [.text(user), .bool(false), .int(Int64(limit))])
            return try rows.compactMap { try Self.version(db, user, try $0.int(0)) }
        }
    }

    /// What an upload did: stored (the version's etag and count after it), or nothing because
    /// the version is not the current one (`current`: the latest live version) or is unknown.
    public enum PutResult: Sendable, Equatable {
        case stored(etag: Int64, count: Int64)
        case notCurrent(current: Int64)
        case unknownVersion
    }

    /// Stores each key unless the stored one is better, in `version` only if it is the
    /// user's current (latest live) version, checked in the same transaction as the writes
    /// (not before it, in the handler).
    public func putKeys(user: UserID, _ version: Int64, _ keys: [Key]) async throws -> PutResult {
        let user = user.rawValue
        return try await database.write { db in
            guard let current = try db.queryFirst("""
                SELECT MAX(version) FROM e2e_backup_versions WHERE user_id = ? AND deleted = ?
                """, .text(user), .bool(false))?.optionalInt(0) else { return .unknownVersion }
            if current != version {
                let exists = try db.queryFirst("SELECT 1 FROM e2e_backup_versions WHERE user_id = ? AND version = ? AND deleted = ?",
                                               .text(user), .int(version), .bool(false)) != nil
                return exists ? .notCurrent(current: current) : .unknownVersion
            }
            // One statement per key: insert, or replace the stored key only when the new one
            // is better (the specification's order: verified beats unverified, then the lower
            // first message index, then the lower forwarded count). In SQL rather than read,
            // compare and write, so that two concurrent uploads of the same session (two
            // devices of the user) cannot both insert on PostgreSQL.
            var changed = false
            for key in keys {
                let written = try db.execute("""
                    INSERT INTO e2e_backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count,
                                                 is_verified, key_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                        first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
                        is_verified = excluded.is_verified, key_json = excluded.key_json
                    WHERE (excluded.is_verified AND NOT e2e_backup_keys.is_verified)
                       OR (excluded.is_verified = e2e_backup_keys.is_verified
                           AND (excluded.first_message_index < e2e_backup_keys.first_message_index
                                OR (excluded.first_message_index = e2e_backup_keys.first_message_index
                                    AND excluded.forwarded_count < e2e_backup_keys.forwarded_count)))
                    """, .text(user), .int(version), .text(key.roomID), .text(key.sessionID), .int(key.firstMessageIndex),
                    .int(key.forwardedCount), .bool(key.isVerified), .text(key.json))
                if written > 0 { changed = true }
            }
            let (etag, count) = try Self.bump(db, user, version, changed)
            return .stored(etag: etag, count: count)
        }
    }

    /// The keys of a version, of one room, or one session.
    public func keys(user: UserID, _ version: Int64, room: String?, session: String?) async throws -> [Key] {
        let user = user.rawValue
        return try await database.read { db in
            let (condition, bindings) = Self.scope(user, version, room, session)
            let rows = try db.query("""
                SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, key_json FROM e2e_backup_keys
                WHERE \(condition) ORDER BY room_id, session_id
                """, bindings)
            return try rows.map {
                Key(roomID: try $0.text(0), sessionID: try $0.text(1), firstMessageIndex: try $0.int(2),
                    forwardedCount: try $0.int(3), isVerified: try $0.bool(4), json: try $0.text(5))
            }
        }
    }

    /// Deletes the keys of a version, of one room, or one session; returns etag and count.
    public func deleteKeys(user: UserID, _ version: Int64, room: String?, session: String?) async throws -> (etag: Int64, count: Int64) {
        let user = user.rawValue
        return try await database.write { db in
            let (condition, bindings) = Self.scope(user, version, room, session)
            let deleted = try db.execute("DELETE FROM e2e_backup_keys WHERE \(condition)", bindings)
            return try Self.bump(db, user, version, deleted > 0)
        }
    }

    /// The WHERE clause of a version, a room in it, or a session of the room (fixed texts).
    private static func scope(_ user: String, _ version: Int64, _ room: String?, _ session: String?) -> (String, [SQLValue]) {
        var condition = "user_id = ? AND version = ?"
        var bindings: [SQLValue] = [.text(user), .int(version)]
        if let room { condition += " AND room_id = ?"; bindings.append(.text(room)) }
        if let session { condition += " AND session_id = ?"; bindings.append(.text(session)) }
        return (condition, bindings)
    }

    private static func bump(_ db: any SQLConnection, _ user: String, _ version: Int64, _ changed: Bool) throws -> (etag: Int64, count: Int64) {
        if changed {
            _ = try db.execute("UPDATE e2e_backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
                               .text(user), .int(version))
        }
        let etag = try db.queryFirst("SELECT etag FROM e2e_backup_versions WHERE user_id = ? AND version = ?",
                                     .text(user), .int(version))?.int(0) ?? 0
        let count = try db.queryFirst("SELECT COUNT(*) FROM e2e_backup_keys WHERE user_id = ? AND version = ?",
                                      .text(user), .int(version))?.int(0) ?? 0
        return (etag, count)
    }
}

extension Database {
    /// Server-side key backups.
    public var keyBackups: KeyBackupStore { KeyBackupStore(database: self) }
}
