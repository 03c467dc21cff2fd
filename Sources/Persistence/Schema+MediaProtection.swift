extension Schema {
    /// Media protected from quarantine by an administrator (Synapse's `safe_from_quarantine`,
    /// `POST /_synapse/admin/v1/media/protect/{mediaId}`): a flag on `media` (`Schema.media`,
    /// migration 100), read by `MediaAdminStore`.
    static let mediaProtection = Migration(
        version: 105, name: "media_protection",
        """
            ALTER TABLE media ADD COLUMN safe_from_quarantine \(.bool) NOT NULL DEFAULT \(.false);
            """)
}
