extension Schema {
    /// Send-to-device messages waiting for their device (deleted once a sync acknowledges
    /// them) and the senders' transaction ids.
    static let toDevice = Migration(
        version: 63, name: "to_device",
        """
            CREATE TABLE device_inbox (
                stream_id \(.bigint) NOT NULL,
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                message_json \(.bytes) NOT NULL
            );
            CREATE INDEX device_inbox_by_device ON device_inbox (user_id, device_id, stream_id);
            CREATE TABLE to_device_txns (
                user_id TEXT NOT NULL,
                device_id TEXT NOT NULL,
                txn_id TEXT NOT NULL,
                PRIMARY KEY (user_id, device_id, txn_id)
            );
            """)
}

/// The SQL of send-to-device messages (schema: `Schema.toDevice`): one row per recipient
/// device, positioned on the to-device stream, delivered by sync until acknowledged.
public enum ToDeviceStore {
    /// The stream's highest position ever handed out: inbox rows are deleted once
    /// acknowledged, each send's transaction row keeps its position.
    public static let maxPositionSQL = """
        SELECT MAX(p) FROM (SELECT MAX(stream_id) AS p FROM device_inbox
                            UNION ALL SELECT MAX(stream_id) AS p FROM to_device_txns) AS positions
        """

    /// Records a sender's transaction at `position`; false if it was seen before (the send
    /// is a retry). `txnID` is scoped by the caller to the event type of the request path.
    public static func claimTxn(_ db: any SQLTransaction, userID: String, deviceID: String, txnID: String,
                                position: Int64) throws -> Bool {
        try db.execute("""
            INSERT INTO to_device_txns (user_id, device_id, txn_id, stream_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING
            """, .text(userID), .text(deviceID), .text(txnID), .int(position)) == 1
    }

    public static func insert(_ db: any SQLTransaction, position: Int64, userID: String, deviceID: String, message: [UInt8]) throws {
        try db.execute("INSERT INTO device_inbox (stream_id, user_id, device_id, message_json) VALUES (?, ?, ?, ?)",
                       .int(position), .text(userID), .text(deviceID), .blob(message))
    }

    /// Messages of one device up to `upTo`, oldest first, at most `limit`: (position, bytes).
    public static func messages(_ db: any SQLConnection, userID: String, deviceID: String, upTo: Int64,
                                limit: Int) throws -> [(Int64, [UInt8])] {
        try db.query("""
            SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?
            ORDER BY stream_id LIMIT ?
            """, .text(userID), .text(deviceID), .int(upTo), .int(Int64(limit))).map { (try $0.int(0), try $0.blob(1)) }
    }

    /// Deletes what the device acknowledged (positions up to `upTo`).
    public static func acknowledge(_ db: any SQLTransaction, userID: String, deviceID: String, upTo: Int64) throws {
        try db.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                       .text(userID), .text(deviceID), .int(upTo))
    }
}
