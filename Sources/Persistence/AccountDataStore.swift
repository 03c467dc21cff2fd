import Matrix

/// Account data (spec: "Client Config"; schema: `account_data` in `Schema.clientData`):
/// global rows have `room_id` ''; tags live in the room's `m.tag`. Obtained from
/// `Database.accountData`; called by the account-data, tag and read-marker handlers and by
/// sync. Positions of the account-data stream are allocated by the caller (a
/// `StreamTracker`) and passed in, so the caller commits the position after the write.
public struct AccountDataStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The highest stored position of the account-data stream (seed for its tracker).
    public static let maxPositionSQL = "SELECT MAX(stream_id) FROM account_data"

    /// Stores (replaces) one account-data entry; `roomID` nil is global account data.
    public func putAccountData(userID: UserID, roomID: RoomID?, type: String, content: String,
                               position: Int64) async throws {
        let (user, room) = (userID.rawValue, roomID?.rawValue ?? "")
        try await database.write { db in try Self.put(db, user, room, type, content, position) }
    }

    /// One entry's content (JSON text), or nil.
    public func accountData(userID: UserID, roomID: RoomID?, type: String) async throws -> String? {
        let (user, room) = (userID.rawValue, roomID?.rawValue ?? "")
        return try await database.read { db in try Self.content(db, user, room, type) }
    }

    /// Read-modify-write of one entry in a single transaction (tags): `update` gets the
    /// current content (nil if none) and returns the new one.
    public func updateAccountData(userID: UserID, roomID: RoomID?, type: String, position: Int64,
                                  _ update: @escaping @Sendable (String?) throws -> String) async throws {
        let (user, room) = (userID.rawValue, roomID?.rawValue ?? "")
        try await database.write { db in
            try Self.put(db, user, room, type, try update(try Self.content(db, user, room, type)), position)
        }
    }

    /// Entries of the user changed after `since` (for sync), as (room id or nil, type, content).
    public func accountDataChanges(userID: UserID, since: Int64) async throws -> [(roomID: String?, type: String, content: String)] {
        let userID = userID.rawValue
        let rows = try await database.read { db in
            try db.query("""
                SELECT room_id, type, content FROM account_data WHERE user_id = ? AND stream_id > ?
                ORDER BY stream_id
                """, .text(userID), .int(since))
        }
        return try rows.map { row in
            let room = try row.text(0)
            return (room.isEmpty ? nil : room, try row.text(1), try row.text(2))
        }
    }

    private static func put(_ db: any SQLTransaction, _ user: String, _ room: String, _ type: String, _ content: String,
                            _ position: Int64) throws {
        try db.execute("""
            INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content,
                stream_id = excluded.stream_id
            """, .text(user), .text(room), .text(type), .text(content), .int(position))
    }

    private static func content(_ db: any SQLConnection, _ user: String, _ room: String, _ type: String) throws -> String? {
        try db.queryFirst("SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
                          .text(user), .text(room), .text(type))?.text(0)
    }
}

extension Database {
    /// Global and per-room account data.
    public var accountData: AccountDataStore { AccountDataStore(database: self) }
}
