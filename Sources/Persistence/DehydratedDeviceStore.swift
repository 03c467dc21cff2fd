import Matrix

/// Dehydrated devices (MSC3814; schema: `dehydrated_devices` in `Schema.crossSigningAndDehydration`):
/// at most one per user, the id of an ordinary device (with its keys in `KeyStore`) and the
/// client's opaque `device_data` (the pickled, encrypted Olm account). Obtained from
/// `Database.dehydratedDevices`; called by the MSC3814 handlers (`DehydratedDevices`).
public struct DehydratedDeviceStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The user's dehydrated device: (device id, device data JSON), nil when there is none or
    /// its device was deleted since (through `DELETE /devices`, a logout of all devices...).
    public func device(of user: UserID) async throws -> (String, [UInt8])? {
        let userID = user.rawValue
        return try await database.read { db in
            try db.queryFirst("""
                SELECT d.device_id, d.device_data FROM dehydrated_devices d
                JOIN devices v ON v.user_id = d.user_id AND v.device_id = d.device_id WHERE d.user_id = ?
                """, .text(userID)).map { (try $0.text(0), Array(try $0.text(1).utf8)) }
        }
    }

    /// Makes `deviceID` the user's dehydrated device, inside the caller's transaction.
    public static func set(_ db: any SQLTransaction, userID: String, deviceID: String, data: [UInt8]) throws {
        try db.execute("""
            INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES (?, ?, ?)
            ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data
            """, .text(userID), .text(deviceID), .text(String(decoding: data, as: UTF8.self)))
    }

    /// Forgets the user's dehydrated device if it is `deviceID`; true when one was removed.
    public func remove(of user: UserID, deviceID: String) async throws -> Bool {
        let userID = user.rawValue
        return try await database.write { db in
            try db.execute("DELETE FROM dehydrated_devices WHERE user_id = ? AND device_id = ?", .text(userID), .text(deviceID)) > 0
        }
    }
}

extension Database {
    /// Dehydrated devices (MSC3814).
    public var dehydratedDevices: DehydratedDeviceStore { DehydratedDeviceStore(database: self) }
}
