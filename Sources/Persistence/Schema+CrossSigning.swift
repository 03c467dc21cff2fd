extension Schema {
    /// Verified cross-signing and dehydrated devices (issue 19).
    /// - A device-list change seen by one user only: when a user signs another user's master
    ///   key with their user-signing key, the signer alone (the `observer`) is told that
    ///   user's keys changed (Synapse's signature stream).
    /// - Dehydrated devices (MSC3814): one per user, an ordinary device plus the client's
    ///   opaque device data.
    static let crossSigningAndDehydration = Migration(
        version: 114, name: "cross_signing_and_dehydrated_devices",
        """
            ALTER TABLE device_lists_stream ADD COLUMN observer TEXT;
            CREATE TABLE dehydrated_devices (
                user_id TEXT PRIMARY KEY NOT NULL,
                device_id TEXT NOT NULL,
                device_data TEXT NOT NULL
            );
            """)
}
