import Matrix

/// Typed access to `devices`: the logged-in devices of each user, their display names and
/// last-seen values. Obtained from `Database.devices`; called by the device, login and key
/// handlers and by the `LastSeenBatcher` of the session actors. Deleting a device deletes
/// its access tokens in the same transaction (through `TokenStore`'s SQL). A handler with a
/// device id that does not parse has no device to look for (none was ever stored).
public struct DeviceStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Inserts the device, or updates an existing one: a nil display name or last-seen field
    /// keeps the stored value, and `createdTs` of an existing device never changes.
    public func upsertDevice(_ device: DeviceRecord) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip,
                                     last_seen_user_agent, created_ts)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (user_id, device_id) DO UPDATE SET
                    display_name = COALESCE(excluded.display_name, devices.display_name),
                    last_seen_ts = COALESCE(excluded.last_seen_ts, devices.last_seen_ts),
                    last_seen_ip = COALESCE(excluded.last_seen_ip, devices.last_seen_ip),
                    last_seen_user_agent = COALESCE(excluded.last_seen_user_agent, devices.last_seen_user_agent)
                """,
                .text(device.userID), .text(device.deviceID), .text(device.displayName), .int(device.lastSeenTs),
                .text(device.lastSeenIP), .text(device.lastSeenUserAgent), .int(device.createdTs))
        }
    }

    public func device(of user: UserID, id device: DeviceID) async throws -> DeviceRecord? {
        let userID = user.rawValue, deviceID = device.rawValue
        return try await database.read { db in
            try db.queryFirst("""
                SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent, created_ts
                FROM devices WHERE user_id = ? AND device_id = ?
                """, .text(userID), .text(deviceID)).map(Self.device)
        }
    }

    /// The user's devices, ordered by device id.
    public func devices(of user: UserID) async throws -> [DeviceRecord] {
        let userID = user.rawValue
        return try await database.read { db in
            try db.query("""
                SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent, created_ts
                FROM devices WHERE user_id = ? ORDER BY device_id
                """, .text(userID)).map(Self.device)
        }
    }

    /// Deletes the device and, in the same transaction, every access token of it.
    /// Returns false when there was no such device (its tokens are deleted anyway).
    @discardableResult
    public func deleteDevice(of user: UserID, id device: DeviceID) async throws -> Bool {
        let userID = user.rawValue, deviceID = device.rawValue
        return try await database.write { db in
            try TokenStore.deleteTokens(db, userID: userID, deviceID: deviceID)
            return try db.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                                  .text(userID), .text(deviceID)) == 1
        }
    }

    /// Deletes several devices of a user and their tokens in one transaction.
    public func deleteDevices(of user: UserID, ids devices: [DeviceID]) async throws {
        let userID = user.rawValue, deviceIDs = devices.map(\.rawValue)
        try await database.write { db in
            for deviceID in deviceIDs {
                try TokenStore.deleteTokens(db, userID: userID, deviceID: deviceID)
                try db.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?", .text(userID), .text(deviceID))
            }
        }
    }

    /// Deletes every device of the user but `exceptDevice` (all of them when nil), inside a
    /// transaction of `AccountStore` (password change, deactivation).
    static func deleteDevices(_ db: any SQLTransaction, userID: String, exceptDevice: String?) throws {
        if let keep = exceptDevice {
            try db.execute("DELETE FROM devices WHERE user_id = ? AND device_id <> ?", .text(userID), .text(keep))
        } else {
            try db.execute("DELETE FROM devices WHERE user_id = ?", .text(userID))
        }
    }

    /// Writes a batch of last-seen updates (the `LastSeenBatcher` of the session actors
    /// flushes them every few seconds rather than writing per request). Devices deleted
    /// meanwhile are skipped. The ids are the raw strings the batcher keys its hot path by.
    public func recordLastSeen(_ updates: [(userID: String, deviceID: String, ts: Int64, ip: String, userAgent: String?)]) async throws {
        let batch = updates.map { [SQLValue.int($0.ts), .text($0.ip), .text($0.userAgent), .text($0.userID), .text($0.deviceID)] }
        try await database.write { db in
            for values in batch {
                _ = try db.query("""
                    UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?,
                        last_seen_user_agent = COALESCE(?, last_seen_user_agent)
                    WHERE user_id = ? AND device_id = ?
                    """, values)
            }
        }
    }

    private static func device(_ row: SQLRow) throws -> DeviceRecord {
        DeviceRecord(userID: try row.text(0), deviceID: try row.text(1), displayName: try row.optionalText(2),
                     lastSeenTs: try row.optionalInt(3), lastSeenIP: try row.optionalText(4),
                     lastSeenUserAgent: try row.optionalText(5), createdTs: try row.int(6))
    }
}

extension Database {
    /// Users' devices and their last-seen values.
    public var devices: DeviceStore { DeviceStore(database: self) }
}
