extension Schema {
    /// The seed's private chat sessions (issue 21, docs/extensions.md "Private chat"): each a
    /// view over one ordinary invite-only direct room (`room_id`) between `creator` and
    /// `peer`; the messages, read state and membership live in the room. `closed_ts` set:
    /// closed (`DELETE /sessions/{id}`), no longer listed.
    static let privateChatSessions = Migration(
        version: 121, name: "private_chat_sessions",
        """
            CREATE TABLE private_chat_sessions (
                session_id TEXT PRIMARY KEY NOT NULL,
                room_id TEXT NOT NULL UNIQUE,
                creator TEXT NOT NULL,
                peer TEXT NOT NULL,
                name TEXT,
                created_ts \(.bigint) NOT NULL,
                closed_ts \(.bigint)
            );
            CREATE INDEX private_chat_sessions_by_creator ON private_chat_sessions (creator, created_ts);
            CREATE INDEX private_chat_sessions_by_peer ON private_chat_sessions (peer, created_ts);
            """)
}
