import Matrix

/// Transaction ids of sent events (schema: `event_txns` in `Schema.roomsClient` and
/// `Schema.scopedTransactions`), so that a retried send returns the first event. Written by
/// the room actor inside the event's transaction; read by the send handlers and by sync
/// (`unsigned.transaction_id`).
public struct EventTxnStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The event a transaction id already produced in `scope`, if any.
    public func event(ofTransaction txnID: String, by user: UserID, device: String,
                      scope: String) async throws -> (roomID: String, eventID: String)? {
        let user = user.rawValue
        return try await database.read { db in try Self.txnEvent(db, userID: user, deviceID: device, scope: scope, txnID: txnID) }
    }


    /// Records the event a transaction produced; `scope` is the request path without the
    /// transaction id (spec: transaction ids are scoped to the endpoint and the device).
    public static func insertTxn(_ db: any SQLTransaction, userID: String, deviceID: String, scope: String, txnID: String,
                                 roomID: String, eventID: String) throws {
        try db.execute("""
            INSERT INTO event_txns (user_id, device_id, scope, txn_id, room_id, event_id) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (user_id, device_id, scope, txn_id) DO NOTHING
            """, .text(userID), .text(deviceID), .text(scope), .text(txnID), .text(roomID), .text(eventID))
    }

    /// The event a transaction id already produced in `scope`, if any.
    public static func txnEvent(_ db: any SQLConnection, userID: String, deviceID: String, scope: String,
                                txnID: String) throws -> (roomID: String, eventID: String)? {
        try db.queryFirst("""
            SELECT room_id, event_id FROM event_txns WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?
            """, .text(userID), .text(deviceID), .text(scope), .text(txnID)).map { (try $0.text(0), try $0.text(1)) }
    }

    /// The (device, scope, transaction id) of events, for `unsigned.transaction_id`.
    public static func txns(_ db: any SQLConnection, eventIDs: [String]) throws -> [String: (deviceID: String, scope: String, txnID: String)] {
        guard !eventIDs.isEmpty else { return [:] }
        var result: [String: (String, String, String)] = [:]
        for start in stride(from: 0, to: eventIDs.count, by: 500) {
            let chunk = eventIDs[start..<min(start + 500, eventIDs.count)]
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            for row in try db.query("SELECT event_id, device_id, scope, txn_id FROM event_txns WHERE event_id IN (\(placeholders))",
                                    chunk.map { SQLValue.text($0) }) {
                result[try row.text(0)] = (try row.text(1), try row.text(2), try row.text(3))
            }
        }
        return result
    }
}

extension Database {
    /// Transaction ids of sent events.
    public var eventTxns: EventTxnStore { EventTxnStore(database: self) }
}
