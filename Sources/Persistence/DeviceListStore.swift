/// The device-list stream (schema: `device_lists_stream` in `Schema.e2eKeys`): a row per
/// change of a user's devices or keys, which tells the user's room peers to query their keys
/// again (spec: "Tracking the device list for a user"). Written with the change; read by sync.
public enum DeviceListStore {
    /// The highest position of the device-list stream (`StreamTracker.load`).
    public static let maxPositionSQL = "SELECT MAX(stream_id) FROM device_lists_stream"

    /// `signingKeysOnly`: only the user's cross-signing keys changed (not in the `prev_id`
    /// chain of `m.device_list_update`, see `lastChange`).
    /// `ownOnly`: only the user's own user-signing key changed, which no one else sees (stored
    /// as `signing_keys_only = 2`; Synapse tells the user alone).
    /// `observer`: `userID`'s master key gained a signature by `observer`'s user-signing key,
    /// which only `observer` sees: the change is theirs alone to see (not `userID`'s, not
    /// their peers'; stored with `signing_keys_only = 2`, so never in a `prev_id` chain).
    public static func noteDeviceListChange(_ db: any SQLTransaction, position: Int64, userID: String,
                                            signingKeysOnly: Bool = false, ownOnly: Bool = false,
                                            observer: String? = nil) throws {
        if let observer {
            try db.execute("INSERT INTO device_lists_stream (stream_id, user_id, signing_keys_only, observer) VALUES (?, ?, 2, ?)",
                           .int(position), .text(userID), .text(observer))
            return
        }
        try db.execute("INSERT INTO device_lists_stream (stream_id, user_id, signing_keys_only) VALUES (?, ?, ?)",
                       .int(position), .text(userID), .int(ownOnly ? 2 : signingKeysOnly ? 1 : 0))
    }

    /// Users whose devices or keys changed in `(after, upTo]` and who are `userID` or share a
    /// joined room with them, and users whose master key `userID` signed (`observer`).
    public static func deviceListChanges(_ db: any SQLConnection, userID: String, after: Int64, upTo: Int64) throws -> [String] {
        try db.query("""
            SELECT DISTINCT d.user_id FROM device_lists_stream d
            WHERE d.stream_id > ? AND d.stream_id <= ? AND (d.observer = ? OR d.observer IS NULL AND (
                d.user_id = ? OR d.signing_keys_only != 2 AND d.user_id IN (
                SELECT m2.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join')))
            """, .int(after), .int(upTo), .text(userID), .text(userID), .text(userID)).map { try $0.text(0) }
    }
}

extension DeviceListStore {
    /// The latest position of `userID`'s device changes at or below `before` (nil: none): the
    /// `stream_id` served by `GET /user/devices` and the `prev_id` of the next
    /// `m.device_list_update` (server-server API "Device Management"). Changes of the
    /// cross-signing keys alone are not counted: no device update carries their position.
    public static func lastChange(_ db: any SQLConnection, userID: String, atOrBelow before: Int64) throws -> Int64? {
        try db.queryFirst("""
            SELECT MAX(stream_id) FROM device_lists_stream WHERE user_id = ? AND stream_id <= ? AND signing_keys_only = 0
            """, .text(userID), .int(before))?.optionalInt(0)
    }
}
