extension Schema {
    /// The admin API's security extension and what Synapse's admin tools manage beyond the
    /// seed (issue 20): IP blocks (`ip_range` in CIDR text, normalised; `expires_ts` nil:
    /// forever), the bounded security event log (`id` orders it; trimmed to a cap by
    /// `SecurityStore.trimEvents`), per-user rate-limit overrides (Synapse's
    /// `ratelimit_override`: 0/0 means no limit) and registration tokens (Synapse's
    /// `registration_tokens`: `uses_allowed` nil means unlimited, `expiry_time` nil never).
    static let adminSecurity = Migration(
        version: 117, name: "admin_security",
        """
            CREATE TABLE ip_blocks (
                ip_range TEXT PRIMARY KEY NOT NULL,
                reason TEXT,
                blocked_by TEXT,
                blocked_ts \(.bigint) NOT NULL,
                expires_ts \(.bigint)
            );
            CREATE TABLE security_events (
                id \(.serial) PRIMARY KEY,
                event_type TEXT NOT NULL,
                user_id TEXT,
                ip TEXT,
                ts \(.bigint) NOT NULL,
                details TEXT
            );
            CREATE INDEX security_events_by_type ON security_events (event_type, id);
            CREATE TABLE ratelimit_overrides (
                user_id TEXT PRIMARY KEY NOT NULL,
                messages_per_second \(.bigint) NOT NULL,
                burst_count \(.bigint) NOT NULL
            );
            CREATE TABLE registration_tokens (
                token TEXT PRIMARY KEY NOT NULL,
                uses_allowed \(.bigint),
                pending \(.bigint) NOT NULL DEFAULT 0,
                completed \(.bigint) NOT NULL DEFAULT 0,
                expiry_time \(.bigint)
            );
            """)
}
