/// The URL preview cache (`Schema.urlPreviews`): Open Graph answers per URL and fetch time.
/// Obtained from `Database.urlPreviews`; called by the App's `URLPreviewer` before it
/// fetches a page and after.
public struct URLPreviewStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// One stored preview.
    public struct Entry: Sendable, Equatable {
        public var url: String
        public var fetchedTs: Int64
        public var expiresTs: Int64
        /// The Open Graph object as JSON text.
        public var og: String
        public var mediaID: String?

        public init(url: String, fetchedTs: Int64, expiresTs: Int64, og: String, mediaID: String?) {
            self.url = url
            self.fetchedTs = fetchedTs
            self.expiresTs = expiresTs
            self.og = og
            self.mediaID = mediaID
        }
    }

    /// Records a fetch (a second one in the same millisecond replaces the first).
    public func store(_ entry: Entry) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO url_previews (url, fetched_ts, expires_ts, og, media_id) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (url, fetched_ts) DO UPDATE SET expires_ts = excluded.expires_ts, og = excluded.og,
                    media_id = excluded.media_id
                """, .text(entry.url), .int(entry.fetchedTs), .int(entry.expiresTs), .text(entry.og),
                entry.mediaID.map(SQLValue.text) ?? .null)
        }
    }

    /// The preview of `url` for the time `ts`: the latest fetched at or before it, else the
    /// earliest fetched after it (as Synapse's `get_url_cache`). The caller judges expiry.
    public func preview(url: String, at ts: Int64) async throws -> Entry? {
        try await database.read { db in
            let columns = "fetched_ts, expires_ts, og, media_id"
            let row = try db.queryFirst("""
                SELECT \(columns) FROM url_previews WHERE url = ? AND fetched_ts <= ?
                ORDER BY fetched_ts DESC LIMIT 1
                """, .text(url), .int(ts))
                ?? db.queryFirst("""
                SELECT \(columns) FROM url_previews WHERE url = ? AND fetched_ts > ?
                ORDER BY fetched_ts ASC LIMIT 1
                """, .text(url), .int(ts))
            guard let row else { return nil }
            return Entry(url: url, fetchedTs: try row.int(0), expiresTs: try row.int(1), og: try row.text(2),
                         mediaID: try row.optionalText(3))
        }
    }

    /// Deletes up to `limit` previews that expired before `now`; returns the media ids they
    /// held (their images, for the caller to delete once nothing else refers to them).
    public func deleteExpired(before now: Int64, limit: Int = 500) async throws -> [String] {
        try await database.write { db in
            let rows = try db.query("""
                SELECT url, fetched_ts, media_id FROM url_previews WHERE expires_ts < ?
                ORDER BY expires_ts LIMIT ?
                """, .int(now), .int(Int64(max(1, limit))))
            var media: [String] = []
            for row in rows {
                _ = try db.execute("DELETE FROM url_previews WHERE url = ? AND fetched_ts = ?",
                                   .text(try row.text(0)), .int(try row.int(1)))
                if let id = try row.optionalText(2) { media.append(id) }
            }
            return media
        }
    }

    /// How many previews are stored (tests, metrics).
    public func count() async throws -> Int {
        try await database.read { db in
            Int(try db.queryFirst("SELECT COUNT(*) FROM url_previews")?.int(0) ?? 0)
        }
    }
}

extension Database {
    /// The URL preview cache.
    public var urlPreviews: URLPreviewStore { URLPreviewStore(database: self) }
}
