extension Schema {
    /// Media (issue 18): one row per (origin, media id), local uploads and cached remote
    /// media alike. The bytes live in the media root's content-addressed store
    /// (`content/<2 hex>/<2 hex>/<sha256>`), so rows with the same `sha256` share one file;
    /// `sha256` is NULL while an id made by `/create` awaits its upload (until `expires_ts`).
    /// `uploader` is NULL for remote media. `authenticated` marks media stored while
    /// `media.enable_authenticated_media` was on: the legacy unauthenticated download paths
    /// refuse it (Synapse's freeze). `quarantined_by` names the admin who quarantined it.
    static let media = Migration(
        version: 100, name: "media",
        """
            CREATE TABLE media (
                origin TEXT NOT NULL,
                media_id TEXT NOT NULL,
                sha256 TEXT,
                size \(.bigint) NOT NULL DEFAULT 0,
                content_type TEXT,
                upload_name TEXT,
                uploader TEXT,
                created_ts \(.bigint) NOT NULL,
                last_access_ts \(.bigint) NOT NULL,
                expires_ts \(.bigint),
                quarantined_by TEXT,
                authenticated \(.bool) NOT NULL DEFAULT \(.false),
                PRIMARY KEY (origin, media_id)
            );
            CREATE INDEX media_by_uploader ON media (uploader, created_ts);
            CREATE INDEX media_by_sha256 ON media (sha256);
            """)
}
