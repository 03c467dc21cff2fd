extension Schema {
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
}
