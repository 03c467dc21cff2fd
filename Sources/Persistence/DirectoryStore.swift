import Matrix

/// Room aliases and the public room directory (spec: "Room aliases", "Listing rooms";
/// schema: `room_aliases`, `room_directory` in `Schema.roomsClient`). Obtained from
/// `Database.directory`; called by the directory, room creation and room upgrade handlers.
/// Each method is one read or one write transaction.
public struct DirectoryStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    // MARK: aliases

    /// Points `alias` at `room`; false, changing nothing, when the alias exists.
    public func createAlias(_ alias: RoomAlias, room: RoomID, creator: UserID) async throws -> Bool {
        let (alias, room, creator) = (alias.rawValue, room.rawValue, creator.rawValue)
        return try await database.write { db in
            try db.execute("INSERT INTO room_aliases (alias, room_id, creator) VALUES (?, ?, ?) ON CONFLICT (alias) DO NOTHING",
                           .text(alias), .text(room), .text(creator)) == 1
        }
    }

    /// The room an alias points at and the user who created the alias.
    public func alias(_ alias: RoomAlias) async throws -> (roomID: RoomID, creator: UserID)? {
        let alias = alias.rawValue
        let found = try await database.read { db in
            try db.queryFirst("SELECT room_id, creator FROM room_aliases WHERE alias = ?", .text(alias))
                .map { (try $0.text(0), try $0.text(1)) }
        }
        guard let found else { return nil }
        return (try RoomID(parsing: found.0), try UserID(parsing: found.1))
    }

    /// False when there was no such alias.
    @discardableResult
    public func deleteAlias(_ alias: RoomAlias) async throws -> Bool {
        let alias = alias.rawValue
        return try await database.write { db in
            try db.execute("DELETE FROM room_aliases WHERE alias = ?", .text(alias)) == 1
        }
    }

    /// The local aliases of a room, sorted.
    public func aliases(of room: RoomID) async throws -> [String] {
        let room = room.rawValue
        return try await database.read { db in
            try db.query("SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias", .text(room)).map { try $0.text(0) }
        }
    }

    // MARK: directory listing

    /// Lists (`public`) or unlists (`private`) the room.
    public func setVisibility(_ visibility: String, of room: RoomID) async throws {
        let room = room.rawValue
        try await database.write { db in try Self.setVisibility(db, visibility, of: room) }
    }

    /// `public` or `private` (a room never listed).
    public func visibility(of room: RoomID) async throws -> String {
        let room = room.rawValue
        return try await database.read { db in try Self.visibility(db, of: room) }
    }

    /// The rooms listed in the directory, by room id.
    public func publicRooms() async throws -> [RoomID] {
        try await database.read { db in
            try db.query("SELECT room_id FROM room_directory WHERE visibility = 'public' ORDER BY room_id").map { try $0.text(0) }
        }.compactMap { try? RoomID(parsing: $0) }
    }

    // MARK: whole rooms

    /// Takes the room out of the directory and deletes its local aliases, in one transaction
    /// (the room and its history stay).
    public func removeRoom(_ room: RoomID) async throws {
        let room = room.rawValue
        try await database.write { db in
            try Self.setVisibility(db, "private", of: room)
            _ = try db.execute("DELETE FROM room_aliases WHERE room_id = ?", .text(room))
        }
    }

    /// A room upgrade: the old room's local aliases point at the new room, and a listed old
    /// room is unlisted and the new one listed in its place, in one transaction.
    public func moveRoom(from old: RoomID, to new: RoomID) async throws {
        let (old, new) = (old.rawValue, new.rawValue)
        try await database.write { db in
            try db.execute("UPDATE room_aliases SET room_id = ? WHERE room_id = ?", .text(new), .text(old))
            if try Self.visibility(db, of: old) == "public" {
                try Self.setVisibility(db, "private", of: old)
                try Self.setVisibility(db, "public", of: new)
            }
        }
    }

    private static func setVisibility(_ db: any SQLTransaction, _ visibility: String, of room: String) throws {
        try db.execute("""
            INSERT INTO room_directory (room_id, visibility) VALUES (?, ?)
            ON CONFLICT (room_id) DO UPDATE SET visibility = excluded.visibility
            """, .text(room), .text(visibility))
    }

    private static func visibility(_ db: any SQLConnection, of room: String) throws -> String {
        try db.queryFirst("SELECT visibility FROM room_directory WHERE room_id = ?", .text(room))?.text(0) ?? "private"
    }
}

extension Database {
    /// Room aliases and the public room directory.
    public var directory: DirectoryStore { DirectoryStore(database: self) }
}
