import Matrix

extension Schema {
    /// Thumbnails (issue 18, item 3): one row per thumbnail file, keyed by the SHA-256 of the
    /// source content (thumbnails are a function of the bytes, so identical uploads share
    /// them) and the requested box, method and animation. `width`/`height` are the request's
    /// box, `thumbnail_width`/`thumbnail_height` what was written; `path` is relative to the
    /// media root.
    static let mediaThumbnails = Migration(
        version: 101, name: "media_thumbnails",
        """
            CREATE TABLE media_thumbnails (
                sha256 TEXT NOT NULL,
                width INTEGER NOT NULL,
                height INTEGER NOT NULL,
                method TEXT NOT NULL,
                animated \(.bool) NOT NULL DEFAULT \(.false),
                thumbnail_width INTEGER NOT NULL,
                thumbnail_height INTEGER NOT NULL,
                content_type TEXT NOT NULL,
                size \(.bigint) NOT NULL,
                path TEXT NOT NULL,
                created_ts \(.bigint) NOT NULL,
                PRIMARY KEY (sha256, width, height, method, animated)
            );
            """)
}

/// A row of `media_thumbnails`.
public struct ThumbnailRecord: Sendable, Equatable {
    public var sha256: String
    public var width: Int
    public var height: Int
    /// `scale` or `crop`.
    public var method: String
    public var animated: Bool
    public var thumbnailWidth: Int
    public var thumbnailHeight: Int
    public var contentType: String
    public var size: Int64
    /// Relative to the media root.
    public var path: String
    public var createdTs: Int64

    public init(sha256: String, width: Int, height: Int, method: String, animated: Bool,
                thumbnailWidth: Int, thumbnailHeight: Int, contentType: String, size: Int64,
                path: String, createdTs: Int64) {
        self.sha256 = sha256
        self.width = width
        self.height = height
        self.method = method
        self.animated = animated
        self.thumbnailWidth = thumbnailWidth
        self.thumbnailHeight = thumbnailHeight
        self.contentType = contentType
        self.size = size
        self.path = path
        self.createdTs = createdTs
    }
}

/// The thumbnails of media content (`media_thumbnails`, `Schema.mediaThumbnails`). Obtained from
/// `Database.mediaThumbnails`; called by `MediaThumbnails` in App, which owns the files.
public struct MediaThumbnailStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    private static let columns = """
        sha256, width, height, method, animated, thumbnail_width, thumbnail_height, content_type, \
        size, path, created_ts
        """

    /// Records a thumbnail (replacing the row of the same key: a regenerated file).
    public func insert(_ record: ThumbnailRecord) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO media_thumbnails (\(Self.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (sha256, width, height, method, animated) DO UPDATE SET
                    thumbnail_width = excluded.thumbnail_width, thumbnail_height = excluded.thumbnail_height,
                    content_type = excluded.content_type, size = excluded.size, path = excluded.path,
                    created_ts = excluded.created_ts
                """,
                .text(record.sha256), .int(Int64(record.width)), .int(Int64(record.height)),
                .text(record.method), .bool(record.animated), .int(Int64(record.thumbnailWidth)),
                .int(Int64(record.thumbnailHeight)), .text(record.contentType), .int(record.size),
                .text(record.path), .int(record.createdTs))
        }
    }

    /// Every thumbnail of the content `sha256`, with or without animation.
    public func thumbnails(sha256: String, animated: Bool) async throws -> [ThumbnailRecord] {
        try await database.read { db in
            try db.query("SELECT \(Self.columns) FROM media_thumbnails WHERE sha256 = ? AND animated = ?",
                         .text(sha256), .bool(animated)).map(Self.record)
        }
    }

    /// Forgets every thumbnail of `sha256` (its content was deleted) and returns their paths,
    /// for the caller to remove the files.
    public func delete(sha256: String) async throws -> [String] {
        try await database.write { db in
            let paths = try db.query("SELECT path FROM media_thumbnails WHERE sha256 = ?", .text(sha256))
                .map { try $0.text(0) }
            _ = try db.execute("DELETE FROM media_thumbnails WHERE sha256 = ?", .text(sha256))
            return paths
        }
    }

    private static func record(_ row: SQLRow) throws -> ThumbnailRecord {
        ThumbnailRecord(sha256: try row.text(0), width: Int(try row.int(1)), height: Int(try row.int(2)),
                        method: try row.text(3), animated: try row.bool(4),
                        thumbnailWidth: Int(try row.int(5)), thumbnailHeight: Int(try row.int(6)),
                        contentType: try row.text(7), size: try row.int(8), path: try row.text(9),
                        createdTs: try row.int(10))
    }
}

extension Database {
    /// Thumbnails of media content.
    public var mediaThumbnails: MediaThumbnailStore { MediaThumbnailStore(database: self) }
}
