import Matrix

/// The cache of remote users' device lists (schema: `Schema.remoteDeviceLists`): for each
/// remote user some local user shares a room with, their devices with the signed device keys,
/// their master and self-signing keys, and the `stream_id` of the last update applied (server-
/// server API "Device Management": an `m.device_list_update` whose `prev_id` names this id
/// extends the list, any other means a resync through `GET /user/devices/{userId}`). Filled by
/// the resync and the EDUs (`RemoteDeviceLists` in App), read by `/keys/query`, dropped when no
/// local user shares a room with the user any more. The writers are static functions over a
/// transaction so that a change lands with its device-list stream row in one commit.
public struct RemoteDeviceStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// One device of a cached list.
    public struct Device: Sendable, Equatable {
        public var deviceID: String
        public var displayName: String?
        /// The signed device keys as the user's server sent them (nil: the device has none).
        public var keys: [UInt8]?

        public init(deviceID: String, displayName: String?, keys: [UInt8]?) {
            self.deviceID = deviceID
            self.displayName = displayName
            self.keys = keys
        }
    }

    /// A remote user's cached device list.
    public struct DeviceList: Sendable, Equatable {
        public var streamID: Int64
        public var devices: [Device]
        public var masterKey: [UInt8]?
        public var selfSigningKey: [UInt8]?

        public init(streamID: Int64, devices: [Device], masterKey: [UInt8]?, selfSigningKey: [UInt8]?) {
            self.streamID = streamID
            self.devices = devices
            self.masterKey = masterKey
            self.selfSigningKey = selfSigningKey
        }
    }

    /// The last applied `stream_id` of `user`'s cached list (nil: not cached).
    public func streamID(of user: String) async throws -> Int64? {
        try await database.read { db in try Self.streamID(db, user: user) }
    }

    public static func streamID(_ db: any SQLConnection, user: String) throws -> Int64? {
        try db.queryFirst("SELECT stream_id FROM remote_device_lists WHERE user_id = ?", .text(user))?.int(0)
    }

    /// The cached lists of those of `users` that are cached.
    public func lists(of users: [String]) async throws -> [String: DeviceList] {
        guard !users.isEmpty else { return [:] }
        return try await database.read { db in
            var lists: [String: DeviceList] = [:]
            for chunk in sqlChunks(users) {
                let bindings = chunk.map { SQLValue.text($0) }
                for row in try db.query("""
                    SELECT user_id, stream_id, master_key, self_signing_key FROM remote_device_lists
                    WHERE user_id IN (\(sqlPlaceholders(chunk.count)))
                    """, bindings) {
                    lists[try row.text(0)] = DeviceList(streamID: try row.int(1), devices: [],
                                                        masterKey: try row.optionalBlob(2), selfSigningKey: try row.optionalBlob(3))
                }
                for row in try db.query("""
                    SELECT user_id, device_id, display_name, keys_json FROM remote_devices
                    WHERE user_id IN (\(sqlPlaceholders(chunk.count))) ORDER BY user_id, device_id
                    """, bindings) {
                    let user = try row.text(0)
                    lists[user]?.devices.append(Device(deviceID: try row.text(1), displayName: try row.optionalText(2),
                                                       keys: try row.optionalBlob(3)))
                }
            }
            return lists
        }
    }

    /// Those of `users` who share a joined room with a user of `localServer` (the users whose
    /// lists are cached and answered from the cache).
    public func sharingARoom(_ users: [String], withUsersOf localServer: String) async throws -> Set<String> {
        guard !users.isEmpty else { return [] }
        let suffix = ":" + localServer
        return try await database.read { db in
            var found = Set<String>()
            for chunk in sqlChunks(users) {
                for row in try db.query("""
                    SELECT DISTINCT m1.user_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id
                    WHERE m1.user_id IN (\(sqlPlaceholders(chunk.count))) AND m1.membership = 'join' AND m2.membership = 'join'
                      AND substr(m2.user_id, length(m2.user_id) - ? + 1) = ?
                    """, chunk.map { .text($0) } + [.int(Int64(suffix.unicodeScalars.count)), .text(suffix)]) {
                    found.insert(try row.text(0))
                }
            }
            return found
        }
    }

    /// Replaces `user`'s whole cached list (after a resync).
    public static func replace(_ db: any SQLTransaction, user: String, list: DeviceList) throws {
        try forget(db, user: user)
        try db.execute("""
            INSERT INTO remote_device_lists (user_id, stream_id, master_key, self_signing_key) VALUES (?, ?, ?, ?)
            """, .text(user), .int(list.streamID), list.masterKey.map { .blob($0) } ?? .null,
            list.selfSigningKey.map { .blob($0) } ?? .null)
        for device in list.devices { try putDevice(db, user: user, device) }
    }

    /// Applies one `m.device_list_update` to a cached list: the device replaced or deleted,
    /// the list's `stream_id` moved to `streamID`. False when `user` is not cached.
    public static func apply(_ db: any SQLTransaction, user: String, device: Device, deleted: Bool, streamID: Int64) throws -> Bool {
        guard try db.execute("UPDATE remote_device_lists SET stream_id = ? WHERE user_id = ?", .int(streamID), .text(user)) > 0 else {
            return false
        }
        try db.execute("DELETE FROM remote_devices WHERE user_id = ? AND device_id = ?", .text(user), .text(device.deviceID))
        if !deleted { try putDevice(db, user: user, device) }
        return true
    }

    /// Sets a cached user's cross-signing keys (`m.signing_key_update`); a nil key is kept.
    /// False when `user` is not cached.
    public static func setCrossSigning(_ db: any SQLTransaction, user: String, master: [UInt8]?, selfSigning: [UInt8]?) throws -> Bool {
        guard try streamID(db, user: user) != nil else { return false }
        if let master {
            try db.execute("UPDATE remote_device_lists SET master_key = ? WHERE user_id = ?", .blob(master), .text(user))
        }
        if let selfSigning {
            try db.execute("UPDATE remote_device_lists SET self_signing_key = ? WHERE user_id = ?", .blob(selfSigning), .text(user))
        }
        return true
    }

    /// Drops `user`'s cached list (no local user shares a room with them any more).
    public static func forget(_ db: any SQLTransaction, user: String) throws {
        try db.execute("DELETE FROM remote_devices WHERE user_id = ?", .text(user))
        try db.execute("DELETE FROM remote_device_lists WHERE user_id = ?", .text(user))
    }

    public func forget(_ user: String) async throws {
        try await database.write { db in try Self.forget(db, user: user) }
    }

    /// The cached users, at most `limit` (for invalidation after membership changes).
    public func cachedUsers(limit: Int = 10_000) async throws -> [String] {
        try await database.read { db in
            try db.query("SELECT user_id FROM remote_device_lists ORDER BY user_id LIMIT ?", .int(Int64(limit))).map { try $0.text(0) }
        }
    }

    private static func putDevice(_ db: any SQLTransaction, user: String, _ device: Device) throws {
        try db.execute("""
            INSERT INTO remote_devices (user_id, device_id, display_name, keys_json) VALUES (?, ?, ?, ?)
            """, .text(user), .text(device.deviceID), device.displayName.map { .text($0) } ?? .null,
            device.keys.map { .blob($0) } ?? .null)
    }
}

extension Database {
    /// Remote users' cached device lists.
    public var remoteDevices: RemoteDeviceStore { RemoteDeviceStore(database: self) }
}
