import Matrix

/// The administrators' queries over the `media` table (`Schema.media`, one row per origin and
/// media id; `safe_from_quarantine` is `Schema.mediaProtection`): quarantine, protection,
/// per-user listings and statistics, and the selections that deletion works through. Obtained
/// from `Database.mediaAdmin`; called by `MediaAdmin` (Synapse's `/_synapse/admin/v1/media`
/// paths) and by account erasure. Deleting a row and learning whether its content is still
/// referenced is `deleteMedia(origin:mediaID:)`, one transaction.
public struct MediaAdminStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// One row as the admin API shows it (Synapse's "List media uploaded by a user" fields).
    public struct Row: Sendable, Equatable {
        public var origin: String
        public var mediaID: String
        public var sha256: String?
        public var size: Int64
        public var contentType: String?
        public var uploadName: String?
        public var uploader: String?
        public var createdTS: Int64
        public var lastAccessTS: Int64?
        public var quarantinedBy: String?
        public var safeFromQuarantine: Bool
    }

    /// The orders of Synapse's media listings; the second key is always `media_id` ascending.
    public enum Order: String, Sendable, CaseIterable {
        case mediaID = "media_id"
        case uploadName = "upload_name"
        case createdTS = "created_ts"
        case lastAccessTS = "last_access_ts"
        case mediaLength = "media_length"
        case mediaType = "media_type"
        case quarantinedBy = "quarantined_by"
        case safeFromQuarantine = "safe_from_quarantine"

        /// The column, NULLs first in ascending order on both backends (SQLite's default,
        /// not PostgreSQL's).
        var sortKey: String {
            let column: String
            switch self {
            case .mediaID: return "media_id"
            case .uploadName: column = "upload_name"
            case .createdTS: return "created_ts"
            case .lastAccessTS: column = "last_access_ts"
            case .mediaLength: return "size"
            case .mediaType: column = "content_type"
            case .quarantinedBy: column = "quarantined_by"
            case .safeFromQuarantine: return "safe_from_quarantine"
            }
            return "(CASE WHEN \(column) IS NULL THEN 0 ELSE 1 END), \(column)"
        }
    }

    static let columns = """
        origin, media_id, sha256, size, content_type, upload_name, uploader, created_ts, last_access_ts,
        quarantined_by, safe_from_quarantine
        """

    static func row(_ r: SQLRow) throws -> Row {
        Row(origin: try r.text(0), mediaID: try r.text(1), sha256: try r.optionalText(2), size: try r.optionalInt(3) ?? 0,
            contentType: try r.optionalText(4), uploadName: try r.optionalText(5), uploader: try r.optionalText(6),
            createdTS: try r.int(7), lastAccessTS: try r.optionalInt(8), quarantinedBy: try r.optionalText(9),
            safeFromQuarantine: try r.bool(10))
    }

    /// One row, or nil.
    public func media(origin: String, mediaID: String) async throws -> Row? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.columns) FROM media WHERE origin = ? AND media_id = ?",
                              .text(origin), .text(mediaID)).map(Self.row)
        }
    }

    // MARK: Quarantine and protection

    /// Quarantines one media and every other row with the same content (Synapse tracks hashes
    /// since 1.128 for this), except rows protected from quarantine; the number of rows newly
    /// quarantined.
    @discardableResult
    public func quarantine(origin: String, mediaID: String, by admin: String) async throws -> Int {
        try await database.write { db in
            try db.execute("""
                UPDATE media SET quarantined_by = ?
                WHERE quarantined_by IS NULL AND safe_from_quarantine = ?
                  AND ((origin = ? AND media_id = ?)
                       OR sha256 IN (SELECT sha256 FROM media WHERE origin = ? AND media_id = ? AND sha256 IS NOT NULL))
                """, .text(admin), .bool(false), .text(origin), .text(mediaID), .text(origin), .text(mediaID))
        }
    }

    /// Lifts the quarantine of one media and of the rows sharing its content.
    @discardableResult
    public func unquarantine(origin: String, mediaID: String) async throws -> Int {
        try await database.write { db in
            try db.execute("""
                UPDATE media SET quarantined_by = NULL
                WHERE quarantined_by IS NOT NULL
                  AND ((origin = ? AND media_id = ?)
                       OR sha256 IN (SELECT sha256 FROM media WHERE origin = ? AND media_id = ? AND sha256 IS NOT NULL))
                """, .text(origin), .text(mediaID), .text(origin), .text(mediaID))
        }
    }

    /// Quarantines every unprotected media `uploader` uploaded; how many rows it changed.
    public func quarantine(uploader: UserID, by admin: String) async throws -> Int {
        try await database.write { db in
            try db.execute("""
                UPDATE media SET quarantined_by = ?
                WHERE uploader = ? AND quarantined_by IS NULL AND safe_from_quarantine = ?
                """, .text(admin), .text(uploader.rawValue), .bool(false))
        }
    }

    /// Quarantines the listed media (origin, media id) that are known here and unprotected.
    public func quarantine(_ media: [(origin: String, mediaID: String)], by admin: String) async throws -> Int {
        guard !media.isEmpty else { return 0 }
        return try await database.write { db in
            var changed = 0
            for (origin, mediaID) in media {
                changed += try db.execute("""
                    UPDATE media SET quarantined_by = ?
                    WHERE origin = ? AND media_id = ? AND quarantined_by IS NULL AND safe_from_quarantine = ?
                    """, .text(admin), .text(origin), .text(mediaID), .bool(false))
            }
            return changed
        }
    }

    /// Marks a media protected from (or open to) quarantine; false when there is no such media.
    public func setProtected(origin: String, mediaID: String, _ protected: Bool) async throws -> Bool {
        try await database.write { db in
            try db.execute("UPDATE media SET safe_from_quarantine = ? WHERE origin = ? AND media_id = ?",
                           .bool(protected), .text(origin), .text(mediaID)) > 0
        }
    }

    // MARK: Listings

    /// A page of the media `uploader` uploaded (uploaded or still pending), in `order`
    /// (`forward` false reverses it; `media_id` ascending always breaks ties), and the total.
    public func media(uploadedBy uploader: UserID, order: Order, forward: Bool, from: Int,
                      limit: Int) async throws -> (rows: [Row], total: Int) {
        let direction = forward ? "ASC" : "DESC"
        let keys = order.sortKey.split(separator: ",").map { "\($0) \(direction)" }.joined(separator: ",")
        let orderBy = order == .mediaID ? "media_id \(direction)" : "\(keys), media_id ASC"
        return try await database.read { db in
            let total = try db.queryFirst("SELECT COUNT(*) FROM media WHERE uploader = ?", .text(uploader.rawValue))?.int(0) ?? 0
            let rows = try db.query("""
                SELECT \(Self.columns) FROM media WHERE uploader = ?
                ORDER BY \(orderBy) LIMIT ? OFFSET ?
                """, .text(uploader.rawValue), .int(Int64(limit)), .int(Int64(from))).map(Self.row)
            return (rows, Int(total))
        }
    }

    /// Local media whose last access (its creation when never accessed) is before `beforeTS`
    /// and whose size exceeds `sizeGreaterThan`, uploaded and not protected, at most `limit`
    /// ids. With `keepingProfiles`, media used as a user's avatar or named in a room's
    /// `m.room.avatar` (`avatarURLs`) are kept, as Synapse's `keep_profiles`.
    public func localMediaToDelete(origin: String, beforeTS: Int64, sizeGreaterThan: Int64, keepingProfiles: Bool,
                                   roomAvatars: Set<String>, limit: Int) async throws -> [String] {
        try await database.read { db in
            let profile = keepingProfiles
                ? "AND NOT EXISTS (SELECT 1 FROM users WHERE users.avatar_url = 'mxc://' || media.origin || '/' || media.media_id)"
                : ""
            let rows = try db.query("""
                SELECT media_id FROM media
                WHERE origin = ? AND sha256 IS NOT NULL AND COALESCE(last_access_ts, created_ts) < ? AND size > ?
                  AND safe_from_quarantine = ? \(profile)
                ORDER BY created_ts, media_id
                """, .text(origin), .int(beforeTS), .int(sizeGreaterThan), .bool(false))
            var ids: [String] = []
            for row in rows {
                let id = try row.text(0)
                if keepingProfiles && roomAvatars.contains("mxc://\(origin)/\(id)") { continue }
                ids.append(id)
                if ids.count >= limit { break }
            }
            return ids
        }
    }

    /// Deletes one row; the row and, when no other row references its content any more,
    /// that content's sha256 (the caller removes the file). Nil when there was no such row.
    public func deleteMedia(origin: String, mediaID: String) async throws -> (row: Row, orphanedSHA256: String?)? {
        try await database.write { db in
            guard let row = try db.queryFirst("SELECT \(Self.columns) FROM media WHERE origin = ? AND media_id = ?",
                                              .text(origin), .text(mediaID)).map(Self.row) else { return nil }
            try db.execute("DELETE FROM media WHERE origin = ? AND media_id = ?", .text(origin), .text(mediaID))
            guard let sha = row.sha256 else { return (row, nil) }
            let left = try db.queryFirst("SELECT COUNT(*) FROM media WHERE sha256 = ?", .text(sha))?.int(0) ?? 0
            return (row, left == 0 ? sha : nil)
        }
    }

    // MARK: Statistics

    /// Every media row and their total size (the seed's `media_stats`).
    public func totals() async throws -> (count: Int64, bytes: Int64) {
        try await database.read { db in
            let row = try db.queryFirst("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM media WHERE sha256 IS NOT NULL")
            return (try row?.int(0) ?? 0, try row?.int(1) ?? 0)
        }
    }

    /// One user's local media usage (Synapse's `statistics/users/media`).
    public struct UserUsage: Sendable, Equatable {
        public var userID: String
        public var displayName: String?
        public var mediaCount: Int64
        public var mediaLength: Int64
    }

    public enum UsageOrder: String, Sendable {
        case userID = "user_id"
        case displayName = "displayname"
        case mediaLength = "media_length"
        case mediaCount = "media_count"
    }

    /// A page of users with local media created within [`fromTS`, `untilTS`], whose user id's
    /// localpart or display name contains `search` (nil: all), and the number of such users.
    public func usage(order: UsageOrder, forward: Bool, from: Int, limit: Int, fromTS: Int64?, untilTS: Int64?,
                      search: String?) async throws -> (users: [UserUsage], total: Int) {
        let direction = forward ? "ASC" : "DESC"
        let orderBy: String
        switch order {
        case .userID: orderBy = "m.uploader \(direction)"
        case .displayName: orderBy = "(CASE WHEN u.displayname IS NULL THEN 0 ELSE 1 END) \(direction), u.displayname \(direction), m.uploader ASC"
        case .mediaLength: orderBy = "SUM(m.size) \(direction), m.uploader ASC"
        case .mediaCount: orderBy = "COUNT(*) \(direction), m.uploader ASC"
        }
        let pattern = search.map {
            "%" + $0.lowercased().replacing("\\", with: "\\\\").replacing("%", with: "\\%").replacing("_", with: "\\_") + "%"
        }
        let filter = """
            FROM media m LEFT JOIN users u ON u.user_id = m.uploader
            WHERE m.uploader IS NOT NULL AND m.sha256 IS NOT NULL
              AND m.created_ts >= ? AND m.created_ts <= ?
              AND (? = '' OR LOWER(m.uploader) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(u.displayname, '')) LIKE ? ESCAPE '\\')
            """
        let bindings: [SQLValue] = [.int(fromTS ?? 0), .int(untilTS ?? Int64.max), .text(pattern ?? ""),
                                    .text(pattern ?? ""), .text(pattern ?? "")]
        return try await database.read { db in
            let total = try db.queryFirst("SELECT COUNT(DISTINCT m.uploader) \(filter)", bindings)?.int(0) ?? 0
            let rows = try db.query("""
                SELECT m.uploader, MAX(u.displayname), COUNT(*), COALESCE(SUM(m.size), 0) \(filter)
                GROUP BY m.uploader, u.displayname ORDER BY \(orderBy) LIMIT ? OFFSET ?
                """, bindings + [.int(Int64(limit)), .int(Int64(from))])
            let users = try rows.map {
                UserUsage(userID: try $0.text(0), displayName: try $0.optionalText(1), mediaCount: try $0.int(2),
                          mediaLength: try $0.int(3))
            }
            return (users, Int(total))
        }
    }

    // MARK: Rooms

    /// A page of a room's events as stored JSON, after stream position `after` in order, for
    /// the scan that finds the media a room's events name.
    public func roomEventJSON(_ room: RoomID, after: Int64, limit: Int) async throws -> [(position: Int64, json: [UInt8])] {
        try await database.read { db in
            try db.query("""
                SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering > ?
                ORDER BY stream_ordering LIMIT ?
                """, .text(room.rawValue), .int(after), .int(Int64(limit))).map { (position: try $0.int(0), json: try $0.blob(1)) }
        }
    }

    /// The `url` of every `m.room.avatar` event's JSON stored (any room), for `keep_profiles`.
    public func roomAvatarEventJSON() async throws -> [[UInt8]] {
        try await database.read { db in
            try db.query("SELECT json FROM events WHERE type = ?", .text("m.room.avatar")).map { try $0.blob(0) }
        }
    }
}

extension Database {
    /// The administrators' media queries.
    public var mediaAdmin: MediaAdminStore { MediaAdminStore(database: self) }
}
