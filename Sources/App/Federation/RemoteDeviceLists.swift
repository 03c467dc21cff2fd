import Actors
import Logging
import Matrix
import Persistence

/// Remote users' device lists (server-server API "Device Management" and "End-to-End
/// Encryption"): the cache in `RemoteDeviceStore` is filled by a resync through
/// `GET /user/devices/{userId}` and kept current by `m.device_list_update` and
/// `m.signing_key_update` EDUs; an update whose `prev_id` the cache does not know triggers a
/// resync (coalesced per user, at most `maxResyncsInFlight` at once). Only users some local user
/// shares a room with are cached (the remote server sends updates only then). Each change is
/// a row of the device-list stream for the remote user, so local users sharing a room with
/// them see it in `/sync` `device_lists.changed`. Called by `InboundEDUs` and `/keys/query`.
extension MyelinApp {
    /// Resyncs running at once, at most; past it the user's cache is dropped (the next
    /// `/keys/query` asks the remote server directly).
    static let maxResyncsInFlight = 32
    /// Devices taken from one remote user's list, at most.
    static let maxRemoteDevices = 1_000
    /// `prev_id` entries read from one update, at most.
    static let maxPrevIDs = 100

    /// True when some local user shares a joined room with `user`.
    func sharesARoom(with user: UserID) async throws -> Bool {
        !(try await database.remoteDevices.sharingARoom([user.rawValue], withUsersOf: configuration.serverName)).isEmpty
    }

    /// Every 15 s (from the first resync on), drops the cached lists of users no local user
    /// shares a room with any more: their server stops sending updates, so the list would go
    /// stale (Synapse marks such lists unsubscribed). Reads also check sharing first.
    func startDeviceListSweep() {
        let first = keys.sweepStarted.withLock { started in
            defer { started = true }
            return !started
        }
        guard first else { return }
        Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(15))
                guard let self else { return }
                await self.sweepDeviceLists()
            }
        }
    }

    func sweepDeviceLists() async {
        let store = database.remoteDevices
        guard let users = try? await store.cachedUsers(limit: 1_000),
              let sharing = try? await store.sharingARoom(users, withUsersOf: configuration.serverName) else { return }
        for user in users where !sharing.contains(user) { try? await store.forget(user) }
    }

    /// Re-reads `user`'s whole device list from their server and replaces the cache. A call
    /// while one runs waits for it instead of asking again, and makes it ask once more when
    /// done (its answer may predate the change that prompted the call).
    func resyncDeviceList(_ user: UserID) async {
        let key = user.rawValue
        let task: Task<Void, Never>? = keys.resyncs.withLock { running in
            if let resync = running[key] {
                running[key]?.again = true
                return resync.task
            }
            guard running.count < Self.maxResyncsInFlight else { return nil }
            let task = Task {
                for round in 1...3 {
                    do {
                        try await self.runResync(user)
                    } catch {
                        self.logger.info("device list resync of \(user) failed: \(error)")
                        await self.dropDeviceList(user)
                    }
                    // Checked and cleared together with the removal: a caller that finds this
                    // task either made it go again or starts its own.
                    let again = self.keys.resyncs.withLock { running -> Bool in
                        if round < 3, running[key]?.again == true {
                            running[key]?.again = false
                            return true
                        }
                        running.removeValue(forKey: key)
                        return false
                    }
                    if !again { break }
                }
            }
            running[key] = KeyService.Resync(task: task)
            return task
        }
        guard let task else {
            await dropDeviceList(user)
            return
        }
        await task.value
    }

    /// Forgets `user`'s list when it could not be re-read, and still tells the local users
    /// sharing a room with them that it changed (their clients re-query; the query goes to the
    /// remote server directly).
    private func dropDeviceList(_ user: UserID) async {
        let key = user.rawValue
        _ = try? await keys.changingKeys(of: user) { db in
            try RemoteDeviceStore.forget(db, user: key)
            return ((), true)
        }
    }

    private func runResync(_ user: UserID) async throws {
        startDeviceListSweep()
        let path = "/_matrix/federation/v1/user/devices/" + FederationQueries.percentEncoded(user.rawValue)
        let json = try await FederationQueries.remote(self, user.serverName, method: "GET", path: path)
        guard json["user_id"]?.stringValue == user.rawValue, let streamID = json["stream_id"]?.intValue else {
            throw MatrixError(.unknown, "user/devices answer for \(user) without its user_id and stream_id", status: 502)
        }
        var devices: [RemoteDeviceStore.Device] = []
        var seen = Set<String>()
        for entry in (json["devices"]?.arrayValue ?? []).prefix(Self.maxRemoteDevices) {
            guard let device = Self.remoteDevice(entry, user: user, keysField: "keys", nameField: "device_display_name"),
                  seen.insert(device.deviceID).inserted else { continue }
            devices.append(device)
        }
        let list = RemoteDeviceStore.DeviceList(streamID: streamID, devices: devices,
                                                masterKey: Self.crossSigningKey(json["master_key"], user: user, usage: "master"),
                                                selfSigningKey: Self.crossSigningKey(json["self_signing_key"], user: user,
                                                                                     usage: "self_signing"))
        // Someone may have left the last shared room while we asked.
        guard try await sharesARoom(with: user) else { return }
        try await keys.changingKeys(of: user) { db in
            try RemoteDeviceStore.replace(db, user: user.rawValue, list: list)
            return ((), true)
        }
    }

    /// A device of `user` from a `user/devices` entry or an `m.device_list_update` (nil when
    /// its id is missing or its keys name another user or device). Keys that name no user or
    /// device are kept as sent (Synapse stores and serves them as they are; clients check the
    /// signatures): the device is still listed.
    static func remoteDevice(_ entry: JSON, user: UserID, keysField: String, nameField: String) -> RemoteDeviceStore.Device? {
        guard let deviceID = entry["device_id"]?.stringValue, !deviceID.isEmpty, deviceID.utf8.count <= 255 else { return nil }
        var keys: [UInt8]?
        if let value = entry[keysField], value.objectValue != nil {
            let namedUser = value["user_id"], namedDevice = value["device_id"]
            guard namedUser == nil || namedUser?.stringValue == user.rawValue,
                  namedDevice == nil || namedDevice?.stringValue == deviceID else { return nil }
            keys = value.encoded()
        }
        let name = entry[nameField]?.stringValue.map { String($0.prefix(256)) }
        return RemoteDeviceStore.Device(deviceID: deviceID, displayName: name, keys: keys)
    }

    /// A cross-signing key of `user` with `usage`, as stored bytes (nil when absent or not theirs).
    static func crossSigningKey(_ value: JSON?, user: UserID, usage: String) -> [UInt8]? {
        guard let value, value.objectValue != nil, value["user_id"]?.stringValue == user.rawValue,
              value["usage"]?.arrayValue?.contains(.string(usage)) == true else { return nil }
        return value.encoded()
    }

    // MARK: EDUs

    /// A resync started from an EDU: the transaction is answered without waiting for it (a
    /// slow user/devices must not hold the sender's queue).
    func resyncInBackground(_ user: UserID) {
        Task { await self.resyncDeviceList(user) }
    }

    /// `m.device_list_update` of `user` (already checked to belong to the origin).
    func applyDeviceListUpdate(_ content: [String: JSON], user: UserID) async throws {
        guard try await sharesARoom(with: user) else {
            try await database.remoteDevices.forget(user.rawValue)
            return
        }
        // Not cached: the whole list is read whatever the update holds (Synapse resyncs on
        // any update for a user it has no list of).
        guard let cached = try await database.remoteDevices.streamID(of: user.rawValue) else {
            resyncInBackground(user)
            return
        }
        guard let streamID = content["stream_id"]?.intValue,
              let device = Self.remoteDevice(.object(content), user: user, keysField: "keys", nameField: "device_display_name") else {
            return
        }
        let prevIDs = (content["prev_id"]?.arrayValue ?? []).prefix(Self.maxPrevIDs).compactMap(\.intValue)
        if streamID <= cached { return }  // seen already (a replayed or reordered EDU)
        // The update extends what we hold only when it names our last id as its predecessor
        // and nothing newer we have not seen (spec: "prev_id ... a gap means resync").
        guard prevIDs.contains(cached), prevIDs.allSatisfy({ $0 <= cached }) else {
            resyncInBackground(user)
            return
        }
        let deleted = content["deleted"]?.boolValue ?? false
        let applied = try await keys.changingKeys(of: user) { db in
            let applied = try RemoteDeviceStore.apply(db, user: user.rawValue, device: device, deleted: deleted, streamID: streamID)
            return (applied, applied)
        }
        if !applied { resyncInBackground(user) }
    }

    /// `m.signing_key_update` of `user`: new master and/or self-signing keys.
    func applySigningKeyUpdate(_ content: [String: JSON], user: UserID) async throws {
        guard try await sharesARoom(with: user) else { return }
        let master = Self.crossSigningKey(content["master_key"], user: user, usage: "master")
        let selfSigning = Self.crossSigningKey(content["self_signing_key"], user: user, usage: "self_signing")
        guard master != nil || selfSigning != nil else { return }
        let cached = try await keys.changingKeys(of: user) { db in
            let cached = try RemoteDeviceStore.setCrossSigning(db, user: user.rawValue, master: master, selfSigning: selfSigning)
            return (cached, cached)
        }
        if !cached { resyncInBackground(user) }
    }

    // MARK: /keys/query

    /// The keys of remote users for `/keys/query`: users sharing a room with a local user are
    /// answered from the cache (resynced first when not cached); the others are asked of their
    /// servers directly. Merges into `response`, returns `failures`.
    func queryRemoteKeys(_ byServer: [ServerName: [String: JSON]], timeout: Int64?,
                         into response: inout [String: JSON], failures: [String: JSON]) async throws -> [String: JSON] {
        var direct: [ServerName: [String: JSON]] = [:]
        var cachedUsers: [(UserID, [String])] = []
        let sharing = try await database.remoteDevices.sharingARoom(byServer.values.flatMap(\.keys),
                                                                    withUsersOf: configuration.serverName)
        var unshared: [String] = []
        for (server, users) in byServer {
            for (user, devices) in users {
                guard sharing.contains(user), let id = try? UserID(parsing: user) else {
                    direct[server, default: [:]][user] = devices
                    unshared.append(user)
                    continue
                }
                cachedUsers.append((id, (devices.arrayValue ?? []).compactMap(\.stringValue)))
            }
        }
        // Lists of users no longer sharing a room are stale (no updates come for them).
        if !unshared.isEmpty {
            let cached = try await database.remoteDevices.lists(of: unshared)
            for user in cached.keys { try await database.remoteDevices.forget(user) }
        }
        let missing = try await missingFromCache(cachedUsers.map(\.0))
        await resync(missing, timeout: timeout)
        let lists = try await database.remoteDevices.lists(of: cachedUsers.map(\.0.rawValue))
        for (user, devices) in cachedUsers {
            guard let list = lists[user.rawValue] else {
                direct[user.serverName, default: [:]][user.rawValue] = .array(devices.map { .string($0) })
                continue
            }
            Self.merge(list, of: user.rawValue, devices: Set(devices), into: &response)
        }
        return try await FederationQueries.queryRemoteKeys(self, direct, timeout: timeout, into: &response, failures: failures)
    }

    private func missingFromCache(_ users: [UserID]) async throws -> [UserID] {
        let lists = try await database.remoteDevices.lists(of: users.map(\.rawValue))
        return users.filter { lists[$0.rawValue] == nil }
    }

    /// Resyncs `users` concurrently, waiting at most `timeout` ms (those not done by then are
    /// asked directly by the caller, and their resync completes in the background).
    private func resync(_ users: [UserID], timeout: Int64?) async {
        guard !users.isEmpty else { return }
        let limit = min(max(timeout ?? FederationQueries.defaultTimeoutMs, 1), 60_000)
        let work = Task {
            await withTaskGroup(of: Void.self) { group in
                for user in users.prefix(Self.maxResyncsInFlight) { group.addTask { await self.resyncDeviceList(user) } }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await work.value }
            group.addTask { try? await Task.sleep(for: .milliseconds(limit)) }
            await group.next()
            group.cancelAll()
        }
    }

    /// A cached list as `/keys/query` answers it (`devices` empty: all of them).
    static func merge(_ list: RemoteDeviceStore.DeviceList, of user: String, devices: Set<String>, into response: inout [String: JSON]) {
        var byDevice: [String: JSON] = [:]
        for device in list.devices where devices.isEmpty || devices.contains(device.deviceID) {
            guard let bytes = device.keys, var key = try? JSON.parse(bytes), let object = key.objectValue else { continue }
            var unsigned = object["unsigned"]?.objectValue ?? [:]
            if let name = device.displayName { unsigned["device_display_name"] = .string(name) }
            var updated = object
            updated["unsigned"] = .object(unsigned)
            key = .object(updated)
            byDevice[device.deviceID] = key
        }
        func put(_ field: String, _ value: JSON) {
            var merged = response[field]?.objectValue ?? [:]
            merged[user] = value
            response[field] = .object(merged)
        }
        put("device_keys", .object(byDevice))
        if let bytes = list.masterKey, let key = try? JSON.parse(bytes) { put("master_keys", key) }
        if let bytes = list.selfSigningKey, let key = try? JSON.parse(bytes) { put("self_signing_keys", key) }
    }
}
