import Matrix

extension Schema {
    /// Remote media cache bookkeeping (issue 18, item 5): cached remote files are `media`
    /// rows whose `origin` is another server, evicted least recently used first; this index
    /// lets the eviction sweep read them in `last_access_ts` order without sorting the table.
    static let remoteMediaCache = Migration(
        version: 104, name: "remote_media_cache",
        """
            CREATE INDEX media_by_last_access ON media (last_access_ts);
            """)
}

/// One cached remote file as the eviction sweep sees it.
public struct CachedRemoteMedia: Sendable, Equatable {
    public var origin: String
    public var mediaID: String
    public var size: Int64
    public var lastAccessTs: Int64
}

/// The remote media cache's queries over `media` (rows of other origins with content):
/// its total size and its least recently used entries. Obtained from
/// `Database.remoteMediaCache`; called by the App's `RemoteMediaCache` sweep, which deletes
/// through `MediaStore.delete` (and so removes a file only when no row references it).
public struct RemoteMediaCacheStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Bytes and rows of cached media whose origin is not `localOrigin`.
    public func usage(localOrigin: String) async throws -> (bytes: Int64, count: Int) {
        try await database.read { db in
            let row = try db.queryFirst("""
                SELECT COALESCE(SUM(size), 0), COUNT(*) FROM media WHERE origin <> ? AND sha256 IS NOT NULL
                """, .text(localOrigin))
            return (try row?.int(0) ?? 0, Int(try row?.int(1) ?? 0))
        }
    }

    /// The `limit` least recently accessed cached remote media, oldest first.
    public func leastRecentlyUsed(localOrigin: String, limit: Int) async throws -> [CachedRemoteMedia] {
        let limit = Int64(max(0, min(limit, 10_000)))
        return try await database.read { db in
            try db.query("""
                SELECT origin, media_id, size, last_access_ts FROM media
                WHERE origin <> ? AND sha256 IS NOT NULL
                ORDER BY last_access_ts, origin, media_id LIMIT ?
                """, .text(localOrigin), .int(limit)).map {
                CachedRemoteMedia(origin: try $0.text(0), mediaID: try $0.text(1), size: try $0.int(2), lastAccessTs: try $0.int(3))
            }
        }
    }
}

extension Database {
    /// The remote media cache's view of the `media` table.
    public var remoteMediaCache: RemoteMediaCacheStore { RemoteMediaCacheStore(database: self) }
}
