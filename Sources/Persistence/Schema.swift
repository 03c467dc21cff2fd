/// The schema of the store: every migration, in order, with its SQL for SQLite and for
/// PostgreSQL. `Database.open` applies it. Later issues append versions here; released
/// versions never change.
///
/// Conventions: ids are TEXT; `*_ts` columns are milliseconds since the epoch (BIGINT on
/// PostgreSQL, INTEGER on SQLite); flags are BOOLEAN on PostgreSQL and 0/1 INTEGER on SQLite
/// (both bound as `SQLValue.bool`); secrets are stored only as hashes.
public enum Schema {
    public static let migrations: [Migration] = [accounts, rooms]

    /// Users, their devices and access tokens (the login and registration issue).
    static let accounts = Migration(
        version: 1, name: "accounts",
        sqlite: """
            CREATE TABLE users (
                user_id TEXT PRIMARY KEY NOT NULL,
                password_hash TEXT,
                created_ts INTEGER NOT NULL,
                is_guest INTEGER NOT NULL DEFAULT 0,
                is_admin INTEGER NOT NULL DEFAULT 0,
                deactivated INTEGER NOT NULL DEFAULT 0,
                displayname TEXT,
                avatar_url TEXT
            );
            CREATE TABLE devices (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                display_name TEXT,
                last_seen_ts INTEGER,
                last_seen_ip TEXT,
                last_seen_user_agent TEXT,
                created_ts INTEGER NOT NULL,
                PRIMARY KEY (user_id, device_id)
            );
            CREATE TABLE access_tokens (
                token_hash TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                device_id TEXT,
                created_ts INTEGER NOT NULL,
                expires_ts INTEGER,
                refresh_token_hash TEXT UNIQUE,
                refresh_expires_ts INTEGER
            );
            CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);
            """,
        postgres: """
            CREATE TABLE users (
                user_id TEXT PRIMARY KEY NOT NULL,
                password_hash TEXT,
                created_ts BIGINT NOT NULL,
                is_guest BOOLEAN NOT NULL DEFAULT FALSE,
                is_admin BOOLEAN NOT NULL DEFAULT FALSE,
                deactivated BOOLEAN NOT NULL DEFAULT FALSE,
                displayname TEXT,
                avatar_url TEXT
            );
            CREATE TABLE devices (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                display_name TEXT,
                last_seen_ts BIGINT,
                last_seen_ip TEXT,
                last_seen_user_agent TEXT,
                created_ts BIGINT NOT NULL,
                PRIMARY KEY (user_id, device_id)
            );
            CREATE TABLE access_tokens (
                token_hash TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                device_id TEXT,
                created_ts BIGINT NOT NULL,
                expires_ts BIGINT,
                refresh_token_hash TEXT UNIQUE,
                refresh_expires_ts BIGINT
            );
            CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);
            """)
}
