extension Schema {
    /// Verified cross-signing (issue 19): a device-list change seen by one user only. When a
    /// user signs another user's master key with their user-signing key, the signer alone
    /// (the `observer`) is told that user's keys changed; Synapse's signature stream.
    static let crossSigningObservers = Migration(
        version: 114, name: "cross_signing_observers",
        """
            ALTER TABLE device_lists_stream ADD COLUMN observer TEXT;
            """)
}
