import Matrix

/// One side of a friendship: `userID`'s view of `friendID`.
public struct FriendRecord: Sendable, Equatable {
    public var userID: String
    public var friendID: String
    public var sinceTS: Int64
    public var note: String?
    public var status: String
    public var categoryID: String?
    public var roomID: String?
}

/// One friend request and where its state machine stands.
public struct FriendRequestRecord: Sendable, Equatable {
    public var requestID: String
    public var sender: String
    public var target: String
    public var message: String?
    public var state: String
    public var createdTS: Int64
    public var updatedTS: Int64
}

/// A user's block of another user.
public struct FriendBlockRecord: Sendable, Equatable {
    public var userID: String
    public var blockedID: String
    public var reason: String?
    public var createdTS: Int64
}

/// A user's friend category.
public struct FriendCategoryRecord: Sendable, Equatable {
    public var categoryID: String
    public var userID: String
    public var name: String
    public var color: String?
    public var createdTS: Int64

    public init(categoryID: String, userID: String, name: String, color: String?, createdTS: Int64) {
        self.categoryID = categoryID
        self.userID = userID
        self.name = name
        self.color = color
        self.createdTS = createdTS
    }
}

/// Why a friend request cannot be made.
public enum FriendRequestRefusal: Error, Sendable, Equatable {
    /// The target blocks the sender, or the sender blocks the target.
    case blocked
    case alreadyFriends
    /// A pending request from sender to target exists.
    case pendingExists
}

/// The friend system's rows (`Schema.friends`). Obtained from `Database.friends`; called by
/// the friend handlers (`App/Extensions/Friends*`). Every state change of a request happens in
/// one write, so two racing accepts cannot both create the friendship.
public struct FriendStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Request states.
    public static let pending = "pending", accepted = "accepted", rejected = "rejected", cancelled = "cancelled"

    private static let friendColumns = "user_id, friend_id, since_ts, note, status, category_id, room_id"
    private static let requestColumns = "request_id, sender, target, message, state, created_ts, updated_ts"

    // MARK: Requests

    /// Records a pending request from `sender` to `target`, refused when either blocks the
    /// other, when they are friends, or when one is pending already.
    public func request(id: String, from sender: UserID, to target: UserID, message: String?, now: Int64) async throws
        -> Result<FriendRequestRecord, FriendRequestRefusal> {
        let (s, t) = (sender.rawValue, target.rawValue)
        return try await database.write { db in
            if try db.queryFirst("""
                SELECT 1 FROM friend_blocks WHERE (user_id = ? AND blocked_id = ?) OR (user_id = ? AND blocked_id = ?)
                """, .text(t), .text(s), .text(s), .text(t)) != nil {
                return .failure(.blocked)
            }
            if try db.queryFirst("SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?", .text(s), .text(t)) != nil {
                return .failure(.alreadyFriends)
            }
            if try db.queryFirst("SELECT 1 FROM friend_requests WHERE sender = ? AND target = ? AND state = ?",
                                 .text(s), .text(t), .text(Self.pending)) != nil {
                return .failure(.pendingExists)
            }
            let record = FriendRequestRecord(requestID: id, sender: s, target: t, message: message, state: Self.pending,
                                             createdTS: now, updatedTS: now)
            _ = try db.execute("INSERT INTO friend_requests (\(Self.requestColumns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               .text(id), .text(s), .text(t), .text(message), .text(Self.pending), .int(now), .int(now))
            return .success(record)
        }
    }

    /// The pending request from `sender` to `target`, if any.
    public func pendingRequest(from sender: UserID, to target: UserID) async throws -> FriendRequestRecord? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.requestColumns) FROM friend_requests WHERE sender = ? AND target = ? AND state = ?",
                              .text(sender.rawValue), .text(target.rawValue), .text(Self.pending)).map(Self.request)
        }
    }

    /// A request by id.
    public func request(id: String) async throws -> FriendRequestRecord? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.requestColumns) FROM friend_requests WHERE request_id = ?", .text(id)).map(Self.request)
        }
    }

    /// Pending requests to `user` (hiding those from users `user` blocks), newest first.
    public func incoming(to user: UserID, limit: Int) async throws -> [FriendRequestRecord] {
        try await database.read { db in
            try db.query("""
                SELECT \(Self.requestColumns) FROM friend_requests r WHERE target = ? AND state = ?
                AND NOT EXISTS (SELECT 1 FROM friend_blocks b WHERE b.user_id = r.target AND b.blocked_id = r.sender)
                ORDER BY created_ts DESC, request_id LIMIT ?
                """, .text(user.rawValue), .text(Self.pending), .int(Int64(limit))).map(Self.request)
        }
    }

    /// Pending requests from `user`, newest first.
    public func outgoing(from user: UserID, limit: Int) async throws -> [FriendRequestRecord] {
        try await database.read { db in
            try db.query("""
                SELECT \(Self.requestColumns) FROM friend_requests WHERE sender = ? AND state = ?
                ORDER BY created_ts DESC, request_id LIMIT ?
                """, .text(user.rawValue), .text(Self.pending), .int(Int64(limit))).map(Self.request)
        }
    }

    /// Moves the pending request from `sender` to `target` to `state`; with `accepted`, makes
    /// the two friends (both rows) in the same write. Nil when no request was pending.
    public func resolve(from sender: UserID, to target: UserID, as state: String, now: Int64) async throws -> FriendRequestRecord? {
        let (s, t) = (sender.rawValue, target.rawValue)
        return try await database.write { db in
            guard var record = try db.queryFirst("""
                SELECT \(Self.requestColumns) FROM friend_requests WHERE sender = ? AND target = ? AND state = ?
                """, .text(s), .text(t), .text(Self.pending)).map(Self.request) else { return nil }
            _ = try db.execute("UPDATE friend_requests SET state = ?, updated_ts = ? WHERE request_id = ?",
                               .text(state), .int(now), .text(record.requestID))
            record.state = state
            record.updatedTS = now
            if state == Self.accepted {
                // A crossing request the other way is settled by this friendship too.
                _ = try db.execute("UPDATE friend_requests SET state = ?, updated_ts = ? WHERE sender = ? AND target = ? AND state = ?",
                                   .text(Self.accepted), .int(now), .text(t), .text(s), .text(Self.pending))
                for (a, b) in [(s, t), (t, s)] {
                    if try db.queryFirst("SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?", .text(a), .text(b)) == nil {
                        _ = try db.execute("INSERT INTO friendships (\(Self.friendColumns)) VALUES (?, ?, ?, NULL, 'normal', NULL, NULL)",
                                           .text(a), .text(b), .int(now))
                    }
                }
            }
            return record
        }
    }

    // MARK: Friendships

    /// `user`'s friends, oldest friendship first.
    public func friends(of user: UserID, limit: Int) async throws -> [FriendRecord] {
        try await database.read { db in
            try db.query("SELECT \(Self.friendColumns) FROM friendships WHERE user_id = ? ORDER BY since_ts, friend_id LIMIT ?",
                         .text(user.rawValue), .int(Int64(limit))).map(Self.friend)
        }
    }

    /// `user`'s side of the friendship with `friend`, if they are friends.
    public func friendship(of user: UserID, with friend: UserID) async throws -> FriendRecord? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.friendColumns) FROM friendships WHERE user_id = ? AND friend_id = ?",
                              .text(user.rawValue), .text(friend.rawValue)).map(Self.friend)
        }
    }

    /// Ends a friendship (both sides). False when there was none.
    public func remove(_ user: UserID, _ friend: UserID) async throws -> Bool {
        let (a, b) = (user.rawValue, friend.rawValue)
        return try await database.write { db in
            try db.execute("DELETE FROM friendships WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
                           .text(a), .text(b), .text(b), .text(a)) > 0
        }
    }

    /// Records the direct room of the pair on both sides.
    public func setRoom(_ room: RoomID, between a: UserID, and b: UserID) async throws {
        try await database.write { db in
            _ = try db.execute("UPDATE friendships SET room_id = ? WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
                               .text(room.rawValue), .text(a.rawValue), .text(b.rawValue), .text(b.rawValue), .text(a.rawValue))
        }
    }

    /// Sets `user`'s note on `friend`. False when they are not friends.
    public func setNote(_ note: String?, of user: UserID, on friend: UserID) async throws -> Bool {
        try await update("note", .text(note), user, friend)
    }

    /// Sets `user`'s status of `friend`. False when they are not friends.
    public func setStatus(_ status: String, of user: UserID, on friend: UserID) async throws -> Bool {
        try await update("status", .text(status), user, friend)
    }

    /// Files `friend` under one of `user`'s categories (nil: none). False when they are not
    /// friends or the category is not the user's.
    public func setCategory(_ category: String?, of user: UserID, on friend: UserID) async throws -> Bool {
        let (u, f) = (user.rawValue, friend.rawValue)
        return try await database.write { db in
            if let category, try db.queryFirst("SELECT 1 FROM friend_categories WHERE category_id = ? AND user_id = ?",
                                               .text(category), .text(u)) == nil { return false }
            return try db.execute("UPDATE friendships SET category_id = ? WHERE user_id = ? AND friend_id = ?",
                                  .text(category), .text(u), .text(f)) > 0
        }
    }

    private func update(_ column: String, _ value: SQLValue, _ user: UserID, _ friend: UserID) async throws -> Bool {
        let (u, f) = (user.rawValue, friend.rawValue)
        return try await database.write { db in
            try db.execute("UPDATE friendships SET \(column) = ? WHERE user_id = ? AND friend_id = ?", value, .text(u), .text(f)) > 0
        }
    }

    // MARK: Blocks

    /// `user` blocks `other`: their friendship ends, and requests between them stop
    /// (`other`'s to `user` rejected, `user`'s to `other` cancelled). Idempotent.
    public func block(_ other: UserID, by user: UserID, reason: String?, now: Int64) async throws {
        let (u, o) = (user.rawValue, other.rawValue)
        try await database.write { db in
            if try db.queryFirst("SELECT 1 FROM friend_blocks WHERE user_id = ? AND blocked_id = ?", .text(u), .text(o)) == nil {
                _ = try db.execute("INSERT INTO friend_blocks (user_id, blocked_id, reason, created_ts) VALUES (?, ?, ?, ?)",
                                   .text(u), .text(o), .text(reason), .int(now))
            }
            _ = try db.execute("DELETE FROM friendships WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
                               .text(u), .text(o), .text(o), .text(u))
            for (sender, target, state) in [(o, u, Self.rejected), (u, o, Self.cancelled)] {
                _ = try db.execute("UPDATE friend_requests SET state = ?, updated_ts = ? WHERE sender = ? AND target = ? AND state = ?",
                                   .text(state), .int(now), .text(sender), .text(target), .text(Self.pending))
            }
        }
    }

    /// Whether `user` blocks `other`.
    public func blocks(_ user: UserID, _ other: UserID) async throws -> Bool {
        let (u, o) = (user.rawValue, other.rawValue)
        return try await database.read { db in
            try db.queryFirst("SELECT 1 FROM friend_blocks WHERE user_id = ? AND blocked_id = ?", .text(u), .text(o)) != nil
        }
    }

    /// Whether either of the two blocks the other.
    public func eitherBlocks(_ a: UserID, _ b: UserID) async throws -> Bool {
        let (x, y) = (a.rawValue, b.rawValue)
        return try await database.read { db in
            try db.queryFirst("""
                SELECT 1 FROM friend_blocks WHERE (user_id = ? AND blocked_id = ?) OR (user_id = ? AND blocked_id = ?)
                """, .text(x), .text(y), .text(y), .text(x)) != nil
        }
    }

    /// Lifts a block. False when there was none.
    public func unblock(_ other: UserID, by user: UserID) async throws -> Bool {
        try await database.write { db in
            try db.execute("DELETE FROM friend_blocks WHERE user_id = ? AND blocked_id = ?", .text(user.rawValue), .text(other.rawValue)) > 0
        }
    }

    /// The users `user` blocks, newest first.
    public func blocked(by user: UserID, limit: Int) async throws -> [FriendBlockRecord] {
        try await database.read { db in
            try db.query("""
                SELECT user_id, blocked_id, reason, created_ts FROM friend_blocks WHERE user_id = ?
                ORDER BY created_ts DESC, blocked_id LIMIT ?
                """, .text(user.rawValue), .int(Int64(limit))).map {
                FriendBlockRecord(userID: try $0.text(0), blockedID: try $0.text(1), reason: try $0.optionalText(2), createdTS: try $0.int(3))
            }
        }
    }

    // MARK: Categories

    /// Creates a category; nil when the user has one of that name.
    public func createCategory(_ record: FriendCategoryRecord) async throws -> FriendCategoryRecord? {
        try await database.write { db in
            if try db.queryFirst("SELECT 1 FROM friend_categories WHERE user_id = ? AND name = ?",
                                 .text(record.userID), .text(record.name)) != nil { return nil }
            _ = try db.execute("INSERT INTO friend_categories (category_id, user_id, name, color, created_ts) VALUES (?, ?, ?, ?, ?)",
                               .text(record.categoryID), .text(record.userID), .text(record.name), .text(record.color),
                               .int(record.createdTS))
            return record
        }
    }

    /// `user`'s categories with the number of friends in each, oldest first.
    public func categories(of user: UserID, limit: Int) async throws -> [(FriendCategoryRecord, Int64)] {
        try await database.read { db in
            try db.query("""
                SELECT c.category_id, c.user_id, c.name, c.color, c.created_ts,
                       (SELECT COUNT(*) FROM friendships f WHERE f.user_id = c.user_id AND f.category_id = c.category_id)
                FROM friend_categories c WHERE c.user_id = ? ORDER BY c.created_ts, c.category_id LIMIT ?
                """, .text(user.rawValue), .int(Int64(limit))).map { (try Self.category($0), try $0.int(5)) }
        }
    }

    /// Renames or recolours one of `user`'s categories. `.notFound` when it is not theirs,
    /// `.nameTaken` when another of theirs has the name.
    public enum CategoryUpdate: Sendable, Equatable { case updated(FriendCategoryRecord), notFound, nameTaken }

    public func updateCategory(_ id: String, of user: UserID, name: String?, color: String??) async throws -> CategoryUpdate {
        let u = user.rawValue
        return try await database.write { db in
            guard var record = try db.queryFirst("""
                SELECT category_id, user_id, name, color, created_ts FROM friend_categories WHERE category_id = ? AND user_id = ?
                """, .text(id), .text(u)).map(Self.category) else { return .notFound }
            if let name, name != record.name {
                if try db.queryFirst("SELECT 1 FROM friend_categories WHERE user_id = ? AND name = ?", .text(u), .text(name)) != nil {
                    return .nameTaken
                }
                record.name = name
            }
            if let color { record.color = color }
            _ = try db.execute("UPDATE friend_categories SET name = ?, color = ? WHERE category_id = ?",
                               .text(record.name), .text(record.color), .text(id))
            return .updated(record)
        }
    }

    /// Deletes one of `user`'s categories; its friends fall back to no category. False when
    /// it is not theirs.
    public func deleteCategory(_ id: String, of user: UserID) async throws -> Bool {
        let u = user.rawValue
        return try await database.write { db in
            guard try db.execute("DELETE FROM friend_categories WHERE category_id = ? AND user_id = ?", .text(id), .text(u)) > 0 else {
                return false
            }
            _ = try db.execute("UPDATE friendships SET category_id = NULL WHERE user_id = ? AND category_id = ?", .text(u), .text(id))
            return true
        }
    }

    // MARK: Rows

    private static func friend(_ row: SQLRow) throws -> FriendRecord {
        FriendRecord(userID: try row.text(0), friendID: try row.text(1), sinceTS: try row.int(2), note: try row.optionalText(3),
                     status: try row.text(4), categoryID: try row.optionalText(5), roomID: try row.optionalText(6))
    }

    private static func request(_ row: SQLRow) throws -> FriendRequestRecord {
        FriendRequestRecord(requestID: try row.text(0), sender: try row.text(1), target: try row.text(2),
                            message: try row.optionalText(3), state: try row.text(4), createdTS: try row.int(5),
                            updatedTS: try row.int(6))
    }

    private static func category(_ row: SQLRow) throws -> FriendCategoryRecord {
        FriendCategoryRecord(categoryID: try row.text(0), userID: try row.text(1), name: try row.text(2),
                             color: try row.optionalText(3), createdTS: try row.int(4))
    }
}

extension Database {
    /// The friend system (the seed's friends extension).
    public var friends: FriendStore { FriendStore(database: self) }
}
