/// The device-list stream (schema: `device_lists_stream` in `Schema.e2eKeys`): a row per
/// change of a user's devices or keys, which tells the user's room peers to query their keys
/// again (spec: "Tracking the device list for a user"). Written with the change; read by sync.
public enum DeviceListStore {
    /// The highest position of the device-list stream (`StreamTracker.load`).
    public static let maxPositionSQL = "SELECT MAX(stream_id) FROM device_lists_stream"

    public static func noteDeviceListChange(_ db: any SQLTransaction, position: Int64, userID: String) throws {
        try db.execute("INSERT INTO device_lists_stream (stream_id, user_id) VALUES (?, ?)", .int(position), .text(userID))
    }

    /// Users whose devices or keys changed in `(after, upTo]` and who are `userID` or share a
    /// joined room with them.
    public static func deviceListChanges(_ db: any SQLConnection, userID: String, after: Int64, upTo: Int64) throws -> [String] {
        try db.query("""
            SELECT DISTINCT d.user_id FROM device_lists_stream d
            WHERE d.stream_id > ? AND d.stream_id <= ? AND (d.user_id = ? OR d.user_id IN (
                SELECT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'))
            """, .int(after), .int(upTo), .text(userID), .text(userID)).map { try $0.text(0) }
    }
}

extension DeviceListStore {
    /// The latest position of `userID`'s own changes at or below `before` (nil: none): the
    /// `stream_id` served by `GET /user/devices` and the `prev_id` of the next
    /// `m.device_list_update` (server-server API "Device Management").
    public static func lastChange(_ db: any SQLConnection, userID: String, atOrBelow before: Int64) throws -> Int64? {
        try db.queryFirst("SELECT MAX(stream_id) FROM device_lists_stream WHERE user_id = ? AND stream_id <= ?",
                          .text(userID), .int(before))?.optionalInt(0)
    }
}
