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
