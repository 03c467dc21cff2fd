extension Schema {
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
}
