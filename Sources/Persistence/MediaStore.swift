import Matrix

/// One row of `media` (`Schema.media`): a local upload, an id reserved by `/create` and not
/// yet uploaded (`sha256` nil), or a cached remote file (`uploader` nil).
public struct MediaRecord: Sendable, Equatable {
    /// The server name of the `mxc://` URI.
    public var origin: String
    public var mediaID: String
    /// Lower-case hex SHA-256 of the bytes: the name of the file in the content store. Nil
    /// while a created id awaits its upload.
    public var sha256: String?
    public var size: Int64
    public var contentType: String?
    public var uploadName: String?
    /// The local user who uploaded (or created) it; nil for remote media.
    public var uploader: UserID?
    public var createdTs: Int64
    public var lastAccessTs: Int64
    /// When a pending id made by `/create` stops accepting its upload.
    public var expiresTs: Int64?
    /// The admin who quarantined the media; quarantined media is never served.
    public var quarantinedBy: String?
    /// Stored while authenticated media was enforced: legacy download paths refuse it.
    public var authenticated: Bool

    public init(origin: String, mediaID: String, sha256: String?, size: Int64, contentType: String?,
                uploadName: String?, uploader: UserID?, createdTs: Int64, lastAccessTs: Int64? = nil,
                expiresTs: Int64? = nil, quarantinedBy: String? = nil, authenticated: Bool = false) {
        self.origin = origin
        self.mediaID = mediaID
        self.sha256 = sha256
        self.size = size
        self.contentType = contentType
        self.uploadName = uploadName
        self.uploader = uploader
        self.createdTs = createdTs
        self.lastAccessTs = lastAccessTs ?? createdTs
        self.expiresTs = expiresTs
        self.quarantinedBy = quarantinedBy
        self.authenticated = authenticated
    }

    /// True while a created id awaits its upload.
    public var isPending: Bool { sha256 == nil }

    /// `mxc://origin/mediaID`.
    public var contentURI: String { "mxc://\(origin)/\(mediaID)" }

    static let columns = """
        origin, media_id, sha256, size, content_type, upload_name, uploader, created_ts, last_access_ts,
        expires_ts, quarantined_by, authenticated
        """

    init(row: SQLRow) throws {
        let uploader = try row.optionalText(6)
        self.init(origin: try row.text(0), mediaID: try row.text(1), sha256: try row.optionalText(2),
                  size: try row.int(3), contentType: try row.optionalText(4), uploadName: try row.optionalText(5),
                  uploader: try uploader.map { try UserID(parsing: $0) }, createdTs: try row.int(7),
                  lastAccessTs: try row.int(8), expiresTs: try row.optionalInt(9),
                  quarantinedBy: try row.optionalText(10), authenticated: try row.bool(11))
    }

    var bindings: [SQLValue] {
        [.text(origin), .text(mediaID), .text(sha256), .int(size), .text(contentType), .text(uploadName),
         .text(uploader?.rawValue), .int(createdTs), .int(lastAccessTs), .int(expiresTs), .text(quarantinedBy),
         .bool(authenticated)]
    }
}

/// The media table (`Schema.media`): uploads, pending ids, cached remote media. Obtained
/// from `Database.media`; called by the App's `MediaRepository` and the media admin and
/// voice handlers. The files themselves belong to `MediaFileStore` (Actors).
public struct MediaStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Inserts a row; false (and nothing written) when (origin, media id) exists already.
    @discardableResult
    public func insert(_ record: MediaRecord) async throws -> Bool {
        let bindings = record.bindings
        return try await database.write { db in
            try db.execute("""
                INSERT INTO media (\(MediaRecord.columns))
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, media_id) DO NOTHING
                """, bindings) == 1
        }
    }

    /// The row of `origin`/`mediaID`, pending or not.
    public func record(origin: String, mediaID: String) async throws -> MediaRecord? {
        try await database.read { db in
            try db.queryFirst("SELECT \(MediaRecord.columns) FROM media WHERE origin = ? AND media_id = ?",
                              .text(origin), .text(mediaID)).map(MediaRecord.init(row:))
        }
    }

    /// Reserves a pending id for `uploader` (`POST /create`) unless the user already holds
    /// `maxPending` unexpired pending ids: false then (the caller answers 429). Expired
    /// pending ids of anyone are dropped on the way.
    public func createPending(origin: String, mediaID: String, uploader: UserID, now: Int64, expiresTs: Int64,
                              maxPending: Int) async throws -> Bool {
        let user = uploader.rawValue
        return try await database.write { db in
            try db.execute("DELETE FROM media WHERE sha256 IS NULL AND expires_ts < ?", .int(now))
            let pending = try db.queryFirst("SELECT COUNT(*) FROM media WHERE uploader = ? AND sha256 IS NULL",
                                            .text(user))?.int(0) ?? 0
            guard pending < Int64(maxPending) else { return false }
            try db.execute("""
                INSERT INTO media (origin, media_id, size, uploader, created_ts, last_access_ts, expires_ts)
                VALUES (?, ?, 0, ?, ?, ?, ?)
                """, .text(origin), .text(mediaID), .text(user), .int(now), .int(now), .int(expiresTs))
            return true
        }
    }

    /// Fills a pending id with its upload; false when the id is not pending (any more).
    public func completePending(origin: String, mediaID: String, sha256: String, size: Int64, contentType: String?,
                                uploadName: String?, authenticated: Bool, now: Int64) async throws -> Bool {
        try await database.write { db in
            try db.execute("""
                UPDATE media SET sha256 = ?, size = ?, content_type = ?, upload_name = ?, authenticated = ?,
                    created_ts = ?, last_access_ts = ?, expires_ts = NULL
                WHERE origin = ? AND media_id = ? AND sha256 IS NULL
                """, .text(sha256), .int(size), .text(contentType), .text(uploadName), .bool(authenticated),
                .int(now), .int(now), .text(origin), .text(mediaID)) == 1
        }
    }

    /// Media uploaded by `user`, newest first, `limit` rows from `offset` (admin listings).
    public func media(uploadedBy user: UserID, limit: Int, offset: Int = 0) async throws -> [MediaRecord] {
        let (user, limit, offset) = (user.rawValue, Int64(max(0, limit)), Int64(max(0, offset)))
        return try await database.read { db in
            try db.query("""
                SELECT \(MediaRecord.columns) FROM media WHERE uploader = ? AND sha256 IS NOT NULL
                ORDER BY created_ts DESC, media_id LIMIT ? OFFSET ?
                """, .text(user), .int(limit), .int(offset)).map(MediaRecord.init(row:))
        }
    }

    /// How many uploaded media of `user` exist (the listing's `total`).
    public func count(uploadedBy user: UserID) async throws -> Int {
        let user = user.rawValue
        return try await database.read { db in
            Int(try db.queryFirst("SELECT COUNT(*) FROM media WHERE uploader = ? AND sha256 IS NOT NULL",
                                  .text(user))?.int(0) ?? 0)
        }
    }

    /// How many rows share the content `sha256` (the file is removed at zero).
    public func references(sha256: String) async throws -> Int {
        try await database.read { db in
            Int(try db.queryFirst("SELECT COUNT(*) FROM media WHERE sha256 = ?", .text(sha256))?.int(0) ?? 0)
        }
    }

    /// Deletes the row of `origin`/`mediaID`. Returns its `sha256` when no other row
    /// references that content any more (the caller then removes the file), else nil.
    @discardableResult
    public func delete(origin: String, mediaID: String) async throws -> String? {
        try await database.write { db in
            guard let row = try db.queryFirst("SELECT sha256 FROM media WHERE origin = ? AND media_id = ?",
                                              .text(origin), .text(mediaID)) else { return nil }
            let sha256 = try row.optionalText(0)
            try db.execute("DELETE FROM media WHERE origin = ? AND media_id = ?", .text(origin), .text(mediaID))
            guard let sha256 else { return nil }
            let left = try db.queryFirst("SELECT COUNT(*) FROM media WHERE sha256 = ?", .text(sha256))?.int(0) ?? 0
            return left == 0 ? sha256 : nil
        }
    }

    /// Drops pending ids whose upload window closed before `now`; returns how many.
    @discardableResult
    public func deleteExpiredPending(now: Int64) async throws -> Int {
        try await database.write { db in
            try db.execute("DELETE FROM media WHERE sha256 IS NULL AND expires_ts < ?", .int(now))
        }
    }

    /// Records a download (`last_access_ts`, for cache expiry and admin listings).
    public func touch(origin: String, mediaID: String, now: Int64) async throws {
        try await database.write { db in
            try db.execute("UPDATE media SET last_access_ts = ? WHERE origin = ? AND media_id = ?",
                           .int(now), .text(origin), .text(mediaID))
        }
    }

    /// Quarantines (`by` an admin) or releases (`by` nil) one media; false when it is unknown.
    @discardableResult
    public func setQuarantined(origin: String, mediaID: String, by admin: String?) async throws -> Bool {
        try await database.write { db in
            try db.execute("UPDATE media SET quarantined_by = ? WHERE origin = ? AND media_id = ?",
                           .text(admin), .text(origin), .text(mediaID)) == 1
        }
    }
}

extension Database {
    /// Media rows (uploads, pending ids, cached remote media).
    public var media: MediaStore { MediaStore(database: self) }
}
