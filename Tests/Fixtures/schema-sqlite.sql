-- The SQL of every released migration for sqlite, as first released (see SchemaRenderingTests).
-- migration 1 accounts
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
-- migration 50 client_data
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_by_stream ON account_data (user_id, stream_id);
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts INTEGER NOT NULL,
    stream_id INTEGER NOT NULL
);
CREATE INDEX presence_by_stream ON presence (stream_id);
CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    expires_ts INTEGER NOT NULL
);
-- migration 51 profile_fields
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);
-- migration 60 rooms
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE TABLE events (
    stream_ordering INTEGER PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth INTEGER NOT NULL,
    state_group INTEGER NOT NULL,
    json BLOB NOT NULL
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE TABLE room_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE TABLE state_groups (
    id INTEGER PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    prev_group INTEGER,
    delta_depth INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    state_group INTEGER NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);
-- migration 61 rooms_client
ALTER TABLE events ADD COLUMN client_json BLOB;
ALTER TABLE events ADD COLUMN redacted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE room_memberships (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_by_user ON room_memberships (user_id, membership);
CREATE TABLE event_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txns_by_event ON event_txns (event_id);
CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);
CREATE TABLE room_directory (
    room_id TEXT PRIMARY KEY NOT NULL,
    visibility TEXT NOT NULL
);
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_by_stream ON receipts (stream_id);
CREATE TABLE event_reports (
    id INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT,
    target_user_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT,
    score INTEGER,
    received_ts INTEGER NOT NULL
);
-- migration 63 to_device
CREATE TABLE device_inbox (
    stream_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message_json BLOB NOT NULL
);
CREATE INDEX device_inbox_by_device ON device_inbox (user_id, device_id, stream_id);
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
-- migration 64 event_relations
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY NOT NULL,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations (relates_to_id, rel_type, stream_ordering);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);
-- migration 65 event_search
CREATE VIRTUAL TABLE event_search USING fts5(
    body, event_id UNINDEXED, room_id UNINDEXED, stream_ordering UNINDEXED, key UNINDEXED,
    tokenize = 'unicode61'
);
-- migration 66 e2e_keys
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json BLOB NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json BLOB NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json BLOB NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json BLOB NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
CREATE TABLE e2e_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key, signer_user_id, signer_key_id)
);
CREATE TABLE device_lists_stream (
    stream_id INTEGER NOT NULL,
    user_id TEXT NOT NULL
);
CREATE INDEX device_lists_stream_by_position ON device_lists_stream (stream_id);
-- migration 67 scoped_transactions
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
ALTER TABLE to_device_txns ADD COLUMN stream_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE access_tokens ADD COLUMN replaces_token_hash TEXT;
CREATE INDEX access_tokens_by_replaced ON access_tokens (replaces_token_hash);
