/// The schema of the store: every migration, in order, each written once as `DDL` and
/// rendered for SQLite and for PostgreSQL. `Database.open` applies it. Later issues append
/// versions here; released versions never change (`SchemaRenderingTests` holds them to the
/// text they were released with).
///
/// Conventions: ids are TEXT; `*_ts` columns are milliseconds since the epoch
/// (`\(.bigint)`); flags are `\(.bool)` (both dialects bound as `SQLValue.bool`); bytes are
/// `\(.bytes)`; secrets are stored only as hashes.
public enum Schema {
    public static let migrations: [Migration] = [accounts, clientData, profileFields, rooms, roomsClient, toDevice, relations, search, e2eKeys, scopedTransactions, federationOutbox, serverKeys, federationRooms, keyBackup, pushers, eventStates, remoteDeviceLists, media, mediaThumbnails, voiceMessages, urlPreviews, remoteMediaCache, mediaProtection, pushActions, crossSigningAndDehydration, adminUserFlags, adminRooms, adminSecurity, friends, privateChatSessions, pushActionsByPosition]

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

    /// Rooms, their events (each event's JSON stored once, as bytes), forward extremities and
    /// historical state as state groups with deltas (the room actor issue).
    ///
    /// State: every state event starts a new state group whose id is that event's
    /// `stream_ordering`; a group stores either the full state (`prev_group` NULL) or only
    /// the entries that differ from `prev_group`. `delta_depth` counts the deltas above the
    /// last full snapshot and is capped by the writer, which bounds reading any state to one
    /// snapshot plus that many deltas (one recursive query). Every event records the group of
    /// the state after it.
    static let rooms = Migration(
        version: 60, name: "rooms",
        """
            CREATE TABLE rooms (
                room_id TEXT PRIMARY KEY NOT NULL,
                room_version TEXT NOT NULL,
                created_ts \(.bigint) NOT NULL
            );
            CREATE TABLE events (
                stream_ordering \(.bigint) PRIMARY KEY NOT NULL,
                event_id TEXT NOT NULL UNIQUE,
                room_id TEXT NOT NULL,
                type TEXT NOT NULL,
                state_key TEXT,
                sender TEXT NOT NULL,
                depth \(.bigint) NOT NULL,
                state_group \(.bigint) NOT NULL,
                json \(.bytes) NOT NULL
            );
            CREATE INDEX events_by_room ON events (room_id, stream_ordering);
            CREATE TABLE room_forward_extremities (
                room_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                PRIMARY KEY (room_id, event_id)
            );
            CREATE TABLE state_groups (
                id \(.bigint) PRIMARY KEY NOT NULL,
                room_id TEXT NOT NULL,
                prev_group \(.bigint),
                delta_depth INTEGER NOT NULL
            );
            CREATE TABLE state_group_entries (
                state_group \(.bigint) NOT NULL,
                type TEXT NOT NULL,
                state_key TEXT NOT NULL,
                event_id TEXT NOT NULL,
                PRIMARY KEY (state_group, type, state_key)
            );
            """)

    /// What the client-server API needs beside the events themselves: each event's client
    /// form (bytes served as is by sync and `/messages`, rewritten once when the event is
    /// redacted), the current membership of every user in every room (written by the room
    /// actor in the event's transaction), transaction ids for idempotent sends, aliases,
    /// directory visibility, receipts and reports.
    static let roomsClient = Migration(
        version: 61, name: "rooms_client",
        """
            ALTER TABLE events ADD COLUMN client_json \(.bytes);
            ALTER TABLE events ADD COLUMN redacted INTEGER NOT NULL DEFAULT 0;
            CREATE TABLE room_memberships (
                room_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                membership TEXT NOT NULL,
                event_id TEXT NOT NULL,
                stream_ordering \(.bigint) NOT NULL,
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
                ts \(.bigint) NOT NULL,
                stream_id \(.bigint) NOT NULL,
                PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
            );
            CREATE INDEX receipts_by_stream ON receipts (stream_id);
            CREATE TABLE event_reports (
                id \(.serial) PRIMARY KEY,
                room_id TEXT NOT NULL,
                event_id TEXT,
                target_user_id TEXT,
                user_id TEXT NOT NULL,
                reason TEXT,
                score \(.bigint),
                received_ts \(.bigint) NOT NULL
            );
            """)

    /// Send-to-device messages waiting for their device (deleted once a sync acknowledges
    /// them) and the senders' transaction ids.
    static let toDevice = Migration(
        version: 63, name: "to_device",
        """
            CREATE TABLE device_inbox (
                stream_id \(.bigint) NOT NULL,
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                message_json \(.bytes) NOT NULL
            );
            CREATE INDEX device_inbox_by_device ON device_inbox (user_id, device_id, stream_id);
            CREATE TABLE to_device_txns (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                txn_id TEXT NOT NULL,
                PRIMARY KEY (user_id, device_id, txn_id)
            );
            """)

    /// `m.relates_to` of every event that has one (replies in threads, edits, reactions,
    /// references), written with the event; the relations and threads APIs read it.
    static let relations = Migration(
        version: 64, name: "event_relations",
        """
            CREATE TABLE event_relations (
                event_id TEXT PRIMARY KEY NOT NULL,
                relates_to_id TEXT NOT NULL,
                rel_type TEXT NOT NULL,
                room_id TEXT NOT NULL,
                type TEXT NOT NULL,
                sender TEXT NOT NULL,
                stream_ordering \(.bigint) NOT NULL
            );
            CREATE INDEX event_relations_by_parent ON event_relations (relates_to_id, rel_type, stream_ordering);
            CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);
            """)

    /// Full-text search over message bodies, room names and topics: SQLite FTS5, PostgreSQL
    /// `tsvector` with a GIN index. Rows are written with their events and removed when the
    /// event is redacted.
    static let search = Migration(
        version: 65, name: "event_search",
        sqlite: """
            CREATE VIRTUAL TABLE event_search USING fts5(
                body, event_id UNINDEXED, room_id UNINDEXED, stream_ordering UNINDEXED, key UNINDEXED,
                tokenize = 'unicode61'
            );
            """,
        postgres: """
            CREATE TABLE event_search (
                event_id TEXT PRIMARY KEY NOT NULL,
                room_id TEXT NOT NULL,
                stream_ordering BIGINT NOT NULL,
                key TEXT NOT NULL,
                vector TSVECTOR NOT NULL
            );
            CREATE INDEX event_search_vector ON event_search USING GIN (vector);
            CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
            """)

    /// End-to-end encryption keys (spec: "End-to-End Encryption", key management API):
    /// device identity keys, one-time and fallback keys, cross-signing keys and the
    /// signatures made with them, and the device-list stream that tells a user's room peers
    /// to re-query their keys.
    static let e2eKeys = Migration(
        version: 66, name: "e2e_keys",
        """
            CREATE TABLE e2e_device_keys (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                key_json \(.bytes) NOT NULL,
                PRIMARY KEY (user_id, device_id)
            );
            CREATE TABLE e2e_one_time_keys (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                algorithm TEXT NOT NULL,
                key_id TEXT NOT NULL,
                key_json \(.bytes) NOT NULL,
                PRIMARY KEY (user_id, device_id, algorithm, key_id)
            );
            CREATE TABLE e2e_fallback_keys (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                algorithm TEXT NOT NULL,
                key_id TEXT NOT NULL,
                key_json \(.bytes) NOT NULL,
                used INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (user_id, device_id, algorithm)
            );
            CREATE TABLE e2e_cross_signing_keys (
                user_id TEXT NOT NULL,
                key_type TEXT NOT NULL,
                key_json \(.bytes) NOT NULL,
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
                stream_id \(.bigint) NOT NULL,
                user_id TEXT NOT NULL
            );
            CREATE INDEX device_lists_stream_by_position ON device_lists_stream (stream_id);
            """)

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

    /// Federation destinations (issue 16): each destination's position in the room-events
    /// stream (the events table is the PDU outbox; everything of its rooms after the position
    /// is still to send) and the to-device EDUs queued for remote devices.
    static let federationOutbox = Migration(
        version: 70, name: "federation_outbox",
        """
            CREATE TABLE federation_destinations (
                destination TEXT PRIMARY KEY NOT NULL,
                last_position \(.bigint) NOT NULL
            );
            CREATE TABLE federation_device_outbox (
                id \(.serial) PRIMARY KEY,
                destination TEXT NOT NULL,
                edu_json \(.bytes) NOT NULL
            );
            CREATE INDEX federation_device_outbox_by_destination ON federation_device_outbox (destination, id);
            """)

    /// Other servers' signing keys (server-server API "Retrieving server keys"), as the key
    /// ring fetched and verified them: each key with the time up to which it may be used
    /// (`valid_until_ts`, capped; an old key's `expired_ts`), and the latest signed key
    /// response of each server as it was received, which the notary serves again.
    static let serverKeys = Migration(
        version: 71, name: "server_keys",
        """
            CREATE TABLE server_signing_keys (
                server_name TEXT NOT NULL,
                key_id TEXT NOT NULL,
                verify_key TEXT NOT NULL,
                valid_until_ts \(.bigint) NOT NULL,
                expired_ts \(.bigint),
                fetched_ts \(.bigint) NOT NULL,
                PRIMARY KEY (server_name, key_id)
            );
            CREATE TABLE server_key_responses (
                server_name TEXT PRIMARY KEY NOT NULL,
                valid_until_ts \(.bigint) NOT NULL,
                fetched_ts \(.bigint) NOT NULL,
                response_json \(.bytes) NOT NULL
            );
            """)

    /// Rooms over federation (issue 16): the answer to each inbound `/send` transaction, by
    /// origin and transaction id (a replay gets it again and applies nothing), and invites
    /// received for local users to rooms this server is not in (with the stripped state the
    /// inviting server sent, for `/sync`'s `rooms.invite`).
    static let federationRooms = Migration(
        version: 75, name: "federation_rooms",
        """
            CREATE TABLE federation_inbound_txns (
                origin TEXT NOT NULL,
                txn_id TEXT NOT NULL,
                response_json \(.bytes) NOT NULL,
                received_ts \(.bigint) NOT NULL,
                PRIMARY KEY (origin, txn_id)
            );
            CREATE TABLE federation_invites (
                room_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                room_version TEXT NOT NULL,
                event_json \(.bytes) NOT NULL,
                stripped_state_json \(.bytes) NOT NULL,
                PRIMARY KEY (room_id, user_id)
            );
            """)

    /// Remote users' device lists (issue 17): per user the `stream_id` of the last
    /// `m.device_list_update` applied and the cross-signing keys, and their devices with the
    /// signed device keys (`RemoteDeviceStore`). A device-list stream row says whether only
    /// cross-signing keys changed (those travel as `m.signing_key_update` and are left out of
    /// the `prev_id` chain of `m.device_list_update`), and is found by user.
    static let remoteDeviceLists = Migration(
        version: 95, name: "remote_device_lists",
        """
            CREATE TABLE remote_device_lists (
                user_id TEXT PRIMARY KEY NOT NULL,
                stream_id \(.bigint) NOT NULL,
                master_key \(.bytes),
                self_signing_key \(.bytes)
            );
            CREATE TABLE remote_devices (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                display_name TEXT,
                keys_json \(.bytes),
                PRIMARY KEY (user_id, device_id)
            );
            ALTER TABLE device_lists_stream ADD COLUMN signing_keys_only \(.bigint) NOT NULL DEFAULT 0;
            CREATE INDEX device_lists_stream_by_user ON device_lists_stream (user_id, stream_id);
            """)

    /// Server-side key backups (client-server API "Server-side key backups"): each user's
    /// backup versions (a deleted one keeps its number, never reused) and the backed-up room
    /// keys of each version, with the fields that decide whether an upload replaces a key.
    static let keyBackup = Migration(
        version: 80, name: "key_backup",
        """
            CREATE TABLE e2e_backup_versions (
                user_id TEXT NOT NULL,
                version \(.bigint) NOT NULL,
                algorithm TEXT NOT NULL,
                auth_data_json TEXT NOT NULL,
                etag \(.bigint) NOT NULL,
                deleted \(.bool) NOT NULL DEFAULT \(.false),
                PRIMARY KEY (user_id, version)
            );
            CREATE TABLE e2e_backup_keys (
                user_id TEXT NOT NULL,
                version \(.bigint) NOT NULL,
                room_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                first_message_index \(.bigint) NOT NULL,
                forwarded_count \(.bigint) NOT NULL,
                is_verified \(.bool) NOT NULL,
                key_json TEXT NOT NULL,
                PRIMARY KEY (user_id, version, room_id, session_id)
            );
            """)

    /// Pushers (client-server API "Push Notifications"): where a user's notifications go, by
    /// app and push key, with the device that set them (a password change removes the
    /// pushers of the other devices, as Synapse does).
    static let pushers = Migration(
        version: 81, name: "pushers",
        """
            CREATE TABLE pushers (
                user_id TEXT NOT NULL,
                app_id TEXT NOT NULL,
                pushkey TEXT NOT NULL,
                device_id TEXT,
                pusher_json TEXT NOT NULL,
                created_ts \(.bigint) NOT NULL,
                PRIMARY KEY (user_id, app_id, pushkey)
            );
            """)
}
