import Matrix

/// What federation destinations must still be sent, derived from the store (schema:
/// `Schema.federationOutbox`): each destination's persisted position in the room-events
/// stream (every local event of its rooms at or below it was delivered), the rooms it has
/// joined members in, the local events after its position, and the to-device EDUs queued
/// for it (persisted with the client's send, deleted after a 200). PDUs are never copied
/// into a queue: the events table is the outbox (Synapse's federation catch-up keeps the
/// same shape). Obtained from `Database.federationOutbox`; called by
/// `FederationDestinationActor` and the send-to-device handler.
public struct FederationOutboxStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The persisted position of `destination` (nil: never sent to).
    public func position(of destination: ServerName) async throws -> Int64? {
        let key = destination.rawValue
        return try await database.read { db in
            try db.queryFirst("SELECT last_position FROM federation_destinations WHERE destination = ?", .text(key))?.int(0)
        }
    }

    /// Persists `position` for `destination` (never moves it back).
    public func setPosition(_ position: Int64, of destination: ServerName) async throws {
        let key = destination.rawValue
        try await database.write { db in
            try db.execute("""
                INSERT INTO federation_destinations (destination, last_position) VALUES (?, ?)
                ON CONFLICT (destination) DO UPDATE SET last_position = excluded.last_position
                WHERE federation_destinations.last_position < excluded.last_position
                """, .text(key), .int(position))
        }
    }

    /// Rooms in which a user of `server` is joined now.
    public func rooms(joinedBy server: ServerName) async throws -> [RoomID] {
        let suffix = ":" + server.rawValue
        return try await database.read { db in
            try Self.rooms(db, userSuffix: suffix).compactMap { try? RoomID(parsing: $0) }
        }
    }

    /// The local events (sender on `localServer`) of `rooms` in `(after, upTo]`: in each room
    /// at most the newest `perRoom` (catch-up: the remote fetches older ones with
    /// `get_missing_events`), merged oldest first, at most `limit`.
    public func pendingEvents(in rooms: [RoomID], after: Int64, upTo: Int64, localServer: ServerName,
                              perRoom: Int, limit: Int) async throws -> [(position: Int64, bytes: [UInt8])] {
        let ids = rooms.map(\.rawValue)
        let suffix = ":" + localServer.rawValue
        guard after < upTo, !ids.isEmpty else { return [] }
        return try await database.read { db in
            var picked: [(position: Int64, bytes: [UInt8])] = []
            for room in try Self.roomsWithLocalEvents(db, ids, after: after, upTo: upTo, suffix: suffix) {
                let rows = try db.query("""
                    SELECT stream_ordering, json FROM events
                    WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ?
                      AND substr(sender, length(sender) - ? + 1) = ?
                    ORDER BY stream_ordering DESC LIMIT ?
                    """, .text(room), .int(after), .int(upTo), .int(Int64(suffix.unicodeScalars.count)), .text(suffix),
                    .int(Int64(max(perRoom, 1))))
                for row in rows { picked.append((try row.int(0), try row.blob(1))) }
            }
            picked.sort { $0.position < $1.position }
            return Array(picked.prefix(max(limit, 0)))
        }
    }

    /// Queues to-device EDUs (`m.direct_to_device`) for remote servers, once per sender's
    /// transaction (`txnID`, scoped by the caller; a retry stores nothing). False when the
    /// transaction was seen before.
    public func queueToDevice(from sender: UserID, device: String, txnID: String,
                              edus: [(destination: ServerName, edu: JSON)]) async throws -> Bool {
        let rows = edus.map { ($0.destination.rawValue, $0.edu.encoded()) }
        let user = sender.rawValue
        return try await database.write { db in
            // The client's transaction id, in its own scope (the local part of the same send
            // claims the unprefixed one).
            guard try ToDeviceStore.claimTxn(db, userID: user, deviceID: device, txnID: "federation/" + txnID,
                                             position: 0) else { return false }
            for (destination, bytes) in rows {
                try db.execute("INSERT INTO federation_device_outbox (destination, edu_json) VALUES (?, ?)",
                               .text(destination), .blob(bytes))
            }
            return true
        }
    }

    /// The queued to-device EDUs of `destination`, oldest first, at most `limit`: (id, EDU).
    public func toDevice(for destination: ServerName, limit: Int) async throws -> [(id: Int64, edu: JSON)] {
        let key = destination.rawValue
        return try await database.read { db in
            try db.query("SELECT id, edu_json FROM federation_device_outbox WHERE destination = ? ORDER BY id LIMIT ?",
                         .text(key), .int(Int64(max(limit, 0)))).compactMap { row in
                guard let edu = try? JSON.parse(try row.blob(1)) else { return nil }
                return (try row.int(0), edu)
            }
        }
    }

    /// Deletes delivered to-device EDUs.
    public func deleteToDevice(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await database.write { db in
            for chunk in sqlChunks(ids) {
                try db.execute("DELETE FROM federation_device_outbox WHERE id IN (\(sqlPlaceholders(chunk.count)))",
                               chunk.map { SQLValue.int($0) })
            }
        }
    }

    /// Destinations with to-device EDUs waiting (woken at start-up).
    public func destinationsWithToDevice() async throws -> [ServerName] {
        try await database.read { db in
            try db.query("SELECT DISTINCT destination FROM federation_device_outbox").compactMap {
                try? ServerName(parsing: try $0.text(0))
            }
        }
    }

    /// Destinations whose position is below `position` (start-up: they may have events left).
    public func destinationsWithPosition(below position: Int64) async throws -> [ServerName] {
        try await database.read { db in
            try db.query("SELECT destination FROM federation_destinations WHERE last_position < ?", .int(position))
                .compactMap { try? ServerName(parsing: try $0.text(0)) }
        }
    }

    static func rooms(_ db: any SQLConnection, userSuffix suffix: String) throws -> [String] {
        // The suffix is compared exactly (LIKE is case-insensitive on SQLite).
        try db.query("""
            SELECT DISTINCT room_id FROM room_memberships
            WHERE membership = 'join' AND substr(user_id, length(user_id) - ? + 1) = ?
            """, .int(Int64(suffix.unicodeScalars.count)), .text(suffix)).map { try $0.text(0) }
    }

    static func roomsWithLocalEvents(_ db: any SQLConnection, _ rooms: [String], after: Int64, upTo: Int64,
                                     suffix: String) throws -> [String] {
        var found: [String] = []
        for chunk in sqlChunks(rooms) {
            let bindings: [SQLValue] = [.int(after), .int(upTo), .int(Int64(suffix.unicodeScalars.count)), .text(suffix)]
                + chunk.map { SQLValue.text($0) }
            found += try db.query("""
                SELECT DISTINCT room_id FROM events
                WHERE stream_ordering > ? AND stream_ordering <= ? AND substr(sender, length(sender) - ? + 1) = ?
                  AND room_id IN (\(sqlPlaceholders(chunk.count)))
                """, bindings).map { try $0.text(0) }
        }
        return found
    }
}

extension Database {
    /// Federation destinations' positions and to-device outbox.
    public var federationOutbox: FederationOutboxStore { FederationOutboxStore(database: self) }
}
