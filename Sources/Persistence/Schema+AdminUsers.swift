extension Schema {
    /// Flags an administrator sets on an account (issue 20): `locked` (spec: "Account
    /// locking", the user's requests answer 401 `M_USER_LOCKED`), `suspended` (spec: "Account
    /// suspension", the user may read but not act) and `erased` (Synapse's GDPR erasure, set by
    /// a deactivation with `erase`). Read with the rest of the user row (`AccountStore`).
    static let adminUserFlags = Migration(
        version: 115, name: "admin_user_flags",
        """
            ALTER TABLE users ADD COLUMN locked \(.bool) NOT NULL DEFAULT \(.false);
            ALTER TABLE users ADD COLUMN suspended \(.bool) NOT NULL DEFAULT \(.false);
            ALTER TABLE users ADD COLUMN erased \(.bool) NOT NULL DEFAULT \(.false);
            """)
}
