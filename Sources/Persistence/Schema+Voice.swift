extension Schema {
    /// Voice messages (the seed's voice extension): one row per message, its audio a row of
    /// `media` (`media_id`, local origin). `waveform` is a JSON array of 0...1024 amplitudes
    /// (MSC3246); `source_message_id` names the message a `convert`/`optimize` was made from;
    /// `event_id` the `m.room.message` sent for it, if any.
    static let voiceMessages = Migration(
        version: 102, name: "voice_messages",
        """
            CREATE TABLE voice_messages (
                message_id TEXT PRIMARY KEY NOT NULL,
                media_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                room_id TEXT,
                event_id TEXT,
                source_message_id TEXT,
                duration_ms \(.bigint) NOT NULL,
                content_type TEXT NOT NULL,
                format TEXT NOT NULL,
                codec TEXT NOT NULL,
                sample_rate \(.bigint) NOT NULL,
                channels \(.bigint) NOT NULL,
                waveform TEXT NOT NULL,
                size \(.bigint) NOT NULL,
                created_ts \(.bigint) NOT NULL
            );
            CREATE INDEX voice_messages_by_user ON voice_messages (user_id, created_ts);
            CREATE INDEX voice_messages_by_room ON voice_messages (room_id, created_ts);
            """)
}
