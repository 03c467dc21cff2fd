/// The schema of the store: every migration, in order, each written once as `DDL` and
/// rendered for SQLite and for PostgreSQL. `Database.open` applies it. Later issues append
/// versions here; released versions never change (`SchemaRenderingTests` holds them to the
/// text they were released with).
///
/// Conventions: ids are TEXT; `*_ts` columns are milliseconds since the epoch
/// (`\(.bigint)`); flags are `\(.bool)` (both dialects bound as `SQLValue.bool`); bytes are
/// `\(.bytes)`; secrets are stored only as hashes.
public enum Schema {
    public static let migrations: [Migration] = [accounts, clientData, profileFields, rooms, roomsClient, toDevice, relations, search, e2eKeys, scopedTransactions]

    /// Users, their devices and access tokens (the login and registration issue).
    static let accounts = Migration(
        version: 1, name: "accounts",
        """
            CREATE TABLE users (
                user_id TEXT PRIMARY KEY NOT NULL,
                password_hash TEXT,
                created_ts \(.bigint) NOT NULL,
                is_guest \(.bool) NOT NULL DEFAULT \(.false),
                is_admin \(.bool) NOT NULL DEFAULT \(.false),
                deactivated \(.bool) NOT NULL DEFAULT \(.false),
                displayname TEXT,
                avatar_url TEXT
            );
            CREATE TABLE devices (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                display_name TEXT,
                last_seen_ts \(.bigint),
                last_seen_ip TEXT,
                last_seen_user_agent TEXT,
                created_ts \(.bigint) NOT NULL,
                PRIMARY KEY (user_id, device_id)
            );
            CREATE TABLE access_tokens (
                token_hash TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                device_id TEXT,
                created_ts \(.bigint) NOT NULL,
                expires_ts \(.bigint),
                refresh_token_hash TEXT UNIQUE,
                refresh_expires_ts \(.bigint)
            );
            CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);
            """)
}

extension Schema {
    /// Account data (global and per room; tags are the room's `m.tag`), presence, filters
    /// and OpenID tokens. `stream_id` columns are positions of the
    /// account-data and presence streams; OpenID tokens are stored hashed.
    static let clientData = Migration(
        version: 50, name: "client_data",
        """
            CREATE TABLE account_data (
                user_id TEXT NOT NULL,
                room_id TEXT NOT NULL,
                type TEXT NOT NULL,
                content TEXT NOT NULL,
                stream_id \(.bigint) NOT NULL,
                PRIMARY KEY (user_id, room_id, type)
            );
            CREATE INDEX account_data_by_stream ON account_data (user_id, stream_id);
            CREATE TABLE presence (
                user_id TEXT PRIMARY KEY NOT NULL,
                state TEXT NOT NULL,
                status_msg TEXT,
                last_active_ts \(.bigint) NOT NULL,
                stream_id \(.bigint) NOT NULL
            );
            CREATE INDEX presence_by_stream ON presence (stream_id);
            CREATE TABLE user_filters (
                user_id TEXT NOT NULL,
                filter_id \(.bigint) NOT NULL,
                filter_json TEXT NOT NULL,
                PRIMARY KEY (user_id, filter_id)
            );
            CREATE TABLE openid_tokens (
                token_hash TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                expires_ts \(.bigint) NOT NULL
            );
            """)
}

extension Schema {
    /// Custom profile fields (spec v1.16, MSC4133): one row per user and key, the value as
    /// JSON text. `displayname` and `avatar_url` stay in `users`.
    static let profileFields = Migration(
        version: 51, name: "profile_fields",
        """
            CREATE TABLE profile_fields (
                user_id TEXT NOT NULL,
                field TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (user_id, field)
            );
            """)
}

extension Schema {
    /// Transaction ids scoped to their request path (spec: "Transaction identifiers": the
    /// same id on another endpoint or in another room is another transaction), and the
    /// to-device stream's high-water mark kept with each sender's transaction: acknowledged
    /// inbox rows are deleted, so the inbox alone cannot tell the stream's position after a
    /// restart, and a position handed out twice lets an old `since` delete new messages.
    /// Also: tokens issued by `/refresh` name the token they replace until first used.
    static let scopedTransactions = Migration(
        version: 67, name: "scoped_transactions",
        // SQLite cannot change a primary key in place: the table is rebuilt.
        sqlite: """
            CREATE TABLE event_txns_scoped (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                scope TEXT NOT NULL,
                txn_id TEXT NOT NULL,
                room_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                PRIMARY KEY (user_id, device_id, scope, txn_id)
            );
            INSERT INTO event_txns_scoped (user_id, device_id, scope, txn_id, room_id, event_id)
                SELECT user_id, device_id, '', txn_id, room_id, event_id FROM event_txns;
            DROP TABLE event_txns;
            ALTER TABLE event_txns_scoped RENAME TO event_txns;
            CREATE INDEX event_txns_by_event ON event_txns (event_id);

            """ + scopedTransactionsOnBoth,
        postgres: """
            ALTER TABLE event_txns ADD COLUMN scope TEXT NOT NULL DEFAULT '';
            ALTER TABLE event_txns DROP CONSTRAINT event_txns_pkey;
            ALTER TABLE event_txns ADD PRIMARY KEY (user_id, device_id, scope, txn_id);

            """ + scopedTransactionsOnBoth)

    private static let scopedTransactionsOnBoth: DDL = """
        ALTER TABLE to_device_txns ADD COLUMN stream_id \(.bigint) NOT NULL DEFAULT 0;
        ALTER TABLE access_tokens ADD COLUMN replaces_token_hash TEXT;
        CREATE INDEX access_tokens_by_replaced ON access_tokens (replaces_token_hash);
        """
}
