extension Schema {
    /// The seed's friend system (docs/extensions.md, "Friends"). A friendship is mutual and
    /// stored as two rows of `friendships`, one per side, each with that side's note, status
    /// (`normal`, `favorite`, `blocked`, `hidden`) and category; `room_id` is the pair's direct
    /// room. `friend_requests` keeps every request with its state (`pending`, `accepted`,
    /// `rejected`, `cancelled`); at most one pending request per ordered pair (enforced by the
    /// store inside its write). `friend_blocks` are one-way; `friend_categories` belong to a user.
    static let friends = Migration(
        version: 120, name: "friends",
        """
            CREATE TABLE friend_requests (
                request_id TEXT PRIMARY KEY NOT NULL,
                sender TEXT NOT NULL,
                target TEXT NOT NULL,
                message TEXT,
                state TEXT NOT NULL,
                created_ts \(.bigint) NOT NULL,
                updated_ts \(.bigint) NOT NULL
            );
            CREATE INDEX friend_requests_by_target ON friend_requests (target, state, created_ts);
            CREATE INDEX friend_requests_by_sender ON friend_requests (sender, state, created_ts);
            CREATE TABLE friendships (
                user_id TEXT NOT NULL,
                friend_id TEXT NOT NULL,
                since_ts \(.bigint) NOT NULL,
                note TEXT,
                status TEXT NOT NULL,
                category_id TEXT,
                room_id TEXT,
                PRIMARY KEY (user_id, friend_id)
            );
            CREATE TABLE friend_blocks (
                user_id TEXT NOT NULL,
                blocked_id TEXT NOT NULL,
                reason TEXT,
                created_ts \(.bigint) NOT NULL,
                PRIMARY KEY (user_id, blocked_id)
            );
            CREATE TABLE friend_categories (
                category_id TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                name TEXT NOT NULL,
                color TEXT,
                created_ts \(.bigint) NOT NULL
            );
            CREATE UNIQUE INDEX friend_categories_by_user ON friend_categories (user_id, name);
            """)
}
