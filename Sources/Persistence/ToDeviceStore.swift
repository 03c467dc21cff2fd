import Matrix

/// Send-to-device messages (spec: "Send-to-Device messaging"; schema: `Schema.toDevice`):
/// one row per recipient device, positioned on the to-device stream, delivered by sync until
/// acknowledged. Obtained from `Database.toDevice`; called by the send handler and sync. Each
/// method is one transaction.
public struct ToDeviceStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Stores one send of `sender`'s device at `position`: its transaction id and a row per
    /// recipient device. False, storing nothing, when the transaction was seen before (the
    /// send is a retry). `txnID` is scoped by the caller to the event type of the request path.
    public func send(from sender: UserID, device senderDevice: String, txnID: String, position: Int64,
                     messages: [(user: UserID, device: String, message: [UInt8])]) async throws -> Bool {
        let sender = sender.rawValue
        let rows = messages.map { (user: $0.user.rawValue, device: $0.device, message: $0.message) }
        return try await database.write { db in
            guard try Self.claimTxn(db, userID: sender, deviceID: senderDevice, txnID: txnID, position: position) else {
                return false
            }
            for row in rows {
                try Self.insert(db, position: position, userID: row.user, deviceID: row.device, message: row.message)
            }
            return true
        }
    }

    /// A sync of one device: deletes the messages up to `acknowledged` (none when 0), then
    /// returns the next ones up to `upTo`, oldest first, at most `limit`: (position, bytes).
    public func deliver(to user: UserID, device: String, acknowledged: Int64, upTo: Int64,
                        limit: Int) async throws -> [(Int64, [UInt8])] {
        let user = user.rawValue
        return try await database.write { db in
            if acknowledged > 0 { try Self.acknowledge(db, userID: user, deviceID: device, upTo: acknowledged) }
            return try Self.messages(db, userID: user, deviceID: device, upTo: upTo, limit: limit)
        }
    }

    /// The stream's highest position ever handed out: inbox rows are deleted once
    /// acknowledged, each send's transaction row keeps its position.
    public static let maxPositionSQL = """
        SELECT MAX(p) FROM (SELECT MAX(stream_id) AS p FROM device_inbox
                            UNION ALL SELECT MAX(stream_id) AS p FROM to_device_txns) AS positions
        """

    /// Records a sender's transaction at `position`; false if it was seen before (the send
    /// is a retry). `txnID` is scoped by the caller to the event type of the request path.
    static func claimTxn(_ db: any SQLTransaction, userID: String, deviceID: String, txnID: String,
                                position: Int64) throws -> Bool {
        try db.execute("""
            INSERT INTO to_device_txns (user_id, device_id, txn_id, stream_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING
            """, .text(userID), .text(deviceID), .text(txnID), .int(position)) == 1
    }

    static func insert(_ db: any SQLTransaction, position: Int64, userID: String, deviceID: String, message: [UInt8]) throws {
        try db.execute("INSERT INTO device_inbox (stream_id, user_id, device_id, message_json) VALUES (?, ?, ?, ?)",
                       .int(position), .text(userID), .text(deviceID), .blob(message))
    }

    /// Messages of one device up to `upTo`, oldest first, at most `limit`: (position, bytes).
    static func messages(_ db: any SQLConnection, userID: String, deviceID: String, upTo: Int64,
                                limit: Int) throws -> [(Int64, [UInt8])] {
        try db.query("""
            SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?
            ORDER BY stream_id LIMIT ?
            """, .text(userID), .text(deviceID), .int(upTo), .int(Int64(limit))).map { (try $0.int(0), try $0.blob(1)) }
    }

    /// Deletes what the device acknowledged (positions up to `upTo`).
    static func acknowledge(_ db: any SQLTransaction, userID: String, deviceID: String, upTo: Int64) throws {
        try db.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                       .text(userID), .text(deviceID), .int(upTo))
    }
}

extension Database {
    /// Send-to-device inboxes.
    public var toDevice: ToDeviceStore { ToDeviceStore(database: self) }
}
