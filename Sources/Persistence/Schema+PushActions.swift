extension Schema {
    /// What push rules decided for each recipient of each notifying event (Synapse's
    /// `event_push_actions`): written in batches by the App's push pipeline, read by
    /// `GET /notifications` and the push gateway's badge count (`PushActionStore`). Rows older
    /// than the retention period (30 days by default) are removed by the pipeline.
    static let pushActions = Migration(
        version: 111, name: "event_push_actions",
        """
            CREATE TABLE event_push_actions (
                user_id TEXT NOT NULL,
                room_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                stream_ordering \(.bigint) NOT NULL,
                actions TEXT NOT NULL,
                highlight \(.bool) NOT NULL,
                thread_id TEXT,
                ts \(.bigint) NOT NULL,
                PRIMARY KEY (user_id, event_id)
            );
            CREATE INDEX event_push_actions_user_order ON event_push_actions (user_id, stream_ordering);
            CREATE INDEX event_push_actions_ts ON event_push_actions (ts);
            """)
}

extension Schema {
    /// `event_push_actions` keyed by `(user_id, stream_ordering)` (an event's position is as
    /// unique as its id): one index per recipient instead of two. Each recorded outcome goes
    /// into the page of its recipient's part of every per-user index, so a message to a room
    /// of N members wrote about 2N index pages; now about N (measured in bench/README.md,
    /// "Push actions: pages written per message").
    static let pushActionsByPosition = Migration(
        version: 122, name: "event_push_actions_by_position",
        """
            CREATE TABLE event_push_actions_by_position (
                user_id TEXT NOT NULL,
                room_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                stream_ordering \(.bigint) NOT NULL,
                actions TEXT NOT NULL,
                highlight \(.bool) NOT NULL,
                thread_id TEXT,
                ts \(.bigint) NOT NULL,
                PRIMARY KEY (user_id, stream_ordering)
            );
            INSERT INTO event_push_actions_by_position
                (user_id, room_id, event_id, stream_ordering, actions, highlight, thread_id, ts)
                SELECT user_id, room_id, event_id, stream_ordering, actions, highlight, thread_id, ts
                FROM event_push_actions WHERE TRUE
                ON CONFLICT (user_id, stream_ordering) DO NOTHING;
            DROP TABLE event_push_actions;
            ALTER TABLE event_push_actions_by_position RENAME TO event_push_actions;
            CREATE INDEX event_push_actions_by_ts ON event_push_actions (ts);
            """)
}
