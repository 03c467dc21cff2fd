extension Schema {
    /// URL previews (`preview_url`): one row per fetch of a URL, its Open Graph answer as
    /// JSON text, when it was fetched and until when it serves, and the media id of the image
    /// stored with it (if any). `URLPreviewStore` owns the SQL.
    static let urlPreviews = Migration(
        version: 103, name: "url_previews",
        """
            CREATE TABLE url_previews (
                url TEXT NOT NULL,
                fetched_ts \(.bigint) NOT NULL,
                expires_ts \(.bigint) NOT NULL,
                og TEXT NOT NULL,
                media_id TEXT,
                PRIMARY KEY (url, fetched_ts)
            );
            CREATE INDEX url_previews_by_expiry ON url_previews (expires_ts);
            """)
}
