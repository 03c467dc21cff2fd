/// Typed access to per-user client data: `account_data` (global
/// rows have `room_id` ''; tags live in the room's `m.tag`), `presence`, `user_filters` and
/// `openid_tokens`. Obtained from `Database.clientData`; called by the account-data, presence,
/// filter and OpenID handlers and later by sync. Stream positions are allocated by the caller
/// (a `StreamTracker`) and passed in, so the caller commits the position after the write.
public struct ClientDataStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The highest stored position of the account-data stream (seed for its tracker).
    public static let maxAccountDataPositionSQL = "SELECT MAX(stream_id) FROM account_data"
    /// The highest stored position of the presence stream (seed for its tracker).
    public static let maxPresencePositionSQL = "SELECT MAX(stream_id) FROM presence"

    // MARK: account data

    /// Stores (replaces) one account-data entry; `roomID` nil is global account data.
    public func putAccountData(userID: String, roomID: String?, type: String, content: String,
                               position: Int64) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content,
                    stream_id = excluded.stream_id
                """, .text(userID), .text(roomID ?? ""), .text(type), .text(content), .int(position))
        }
    }

    /// One entry's content (JSON text), or nil.
    public func accountData(userID: String, roomID: String?, type: String) async throws -> String? {
        try await database.read { db in
            try db.queryFirst("SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
                              .text(userID), .text(roomID ?? ""), .text(type))?.text(0)
        }
    }

    /// Read-modify-write of one entry in a single transaction (tags): `update` gets the
    /// current content (nil if none) and returns the new one.
    public func updateAccountData(userID: String, roomID: String?, type: String, position: Int64,
                                  _ update: @escaping @Sendable (String?) throws -> String) async throws {
        try await database.write { db in
            let current = try db.queryFirst(
                "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
                .text(userID), .text(roomID ?? ""), .text(type))?.text(0)
            let content = try update(current)
            try db.execute("""
                INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content,
                    stream_id = excluded.stream_id
                """, .text(userID), .text(roomID ?? ""), .text(type), .text(content), .int(position))
        }
    }

    /// Entries of the user changed after `since` (for sync), as (room id or nil, type, content).
    public func accountDataChanges(userID: String, since: Int64) async throws -> [(roomID: String?, type: String, content: String)] {
        let rows = try await database.read { db in
            try db.query("""
                SELECT room_id, type, content FROM account_data WHERE user_id = ? AND stream_id > ?
                ORDER BY stream_id
                """, .text(userID), .int(since))
        }
        return try rows.map { row in
            let room = try row.text(0)
            return (room.isEmpty ? nil : room, try row.text(1), try row.text(2))
        }
    }

    // MARK: presence

    public struct Presence: Sendable, Hashable {
        public var state: String
        public var statusMessage: String?
        public var lastActiveTs: Int64
        public init(state: String, statusMessage: String?, lastActiveTs: Int64) {
            self.state = state
            self.statusMessage = statusMessage
            self.lastActiveTs = lastActiveTs
        }
    }

    public func setPresence(userID: String, _ presence: Presence, position: Int64) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                    last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id
                """, .text(userID), .text(presence.state), .text(presence.statusMessage),
                .int(presence.lastActiveTs), .int(position))
        }
    }

    /// Stores several users' presence at one position, in one transaction.
    public func setPresences(_ entries: [(userID: String, presence: Presence)], position: Int64) async throws {
        try await database.write { db in
            for (userID, presence) in entries {
                try db.execute("""
                    INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                        last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id
                    """, .text(userID), .text(presence.state), .text(presence.statusMessage),
                    .int(presence.lastActiveTs), .int(position))
            }
        }
    }

    /// The stored presence of each of `userIDs` that has one.
    public func presences(userIDs: [String]) async throws -> [String: Presence] {
        try await database.read { db in
            var result: [String: Presence] = [:]
            for start in stride(from: 0, to: userIDs.count, by: 500) {
                let chunk = userIDs[start..<min(start + 500, userIDs.count)]
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
                for row in try db.query("SELECT user_id, state, status_msg, last_active_ts FROM presence WHERE user_id IN (\(marks))",
                                        chunk.map { .text($0) }) {
                    result[try row.text(0)] = Presence(state: try row.text(1), statusMessage: try row.optionalText(2),
                                                       lastActiveTs: try row.int(3))
                }
            }
            return result
        }
    }

    public func presence(userID: String) async throws -> Presence? {
        try await database.read { db in
            try db.queryFirst("SELECT state, status_msg, last_active_ts FROM presence WHERE user_id = ?", .text(userID))
                .map { Presence(state: try $0.text(0), statusMessage: try $0.optionalText(1), lastActiveTs: try $0.int(2)) }
        }
    }

    // MARK: filters

    /// Stores a filter and returns its id (per user: 0, 1, 2... as Synapse numbers them).
    public func addFilter(userID: String, json: String) async throws -> Int64 {
        try await database.write { db in
            let next = try db.queryFirst("SELECT MAX(filter_id) FROM user_filters WHERE user_id = ?", .text(userID))?
                .optionalInt(0).map { $0 + 1 } ?? 0
            try db.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                           .text(userID), .int(next), .text(json))
            return next
        }
    }

    public func filter(userID: String, filterID: Int64) async throws -> String? {
        try await database.read { db in
            try db.queryFirst("SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
                              .text(userID), .int(filterID))?.text(0)
        }
    }

    // MARK: custom profile fields

    /// Every custom field of the user, as (key, JSON text), ordered by key.
    public func profileFields(userID: String) async throws -> [(key: String, value: String)] {
        let rows = try await database.read { db in
            try db.query("SELECT field, value FROM profile_fields WHERE user_id = ? ORDER BY field", .text(userID))
        }
        return try rows.map { (try $0.text(0), try $0.text(1)) }
    }

    /// Sets (or with `value` nil deletes) one field. When setting would make the user's
    /// fields exceed `maxTotalBytes` (keys plus values), nothing changes and false is returned.
    public func setProfileField(userID: String, key: String, value: String?, maxTotalBytes: Int) async throws -> Bool {
        try await database.write { db in
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

    // MARK: OpenID tokens

    public func addOpenIDToken(hash: String, userID: String, expiresTs: Int64) async throws {
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

extension Database {
    /// Account data, presence, filters and OpenID tokens.
    public var clientData: ClientDataStore { ClientDataStore(database: self) }
}
