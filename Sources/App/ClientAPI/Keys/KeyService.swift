import Actors
import Matrix
import Persistence
import Synchronization

/// The state behind the key-management API and sync's key fields: the device-list stream
/// (a position each time a user's devices or keys change, waking the user and every user
/// sharing a room with them) and a cache of each device's one-time-key counts and unused
/// fallback key types, which every sync response carries (so a caught-up long-poll reads no
/// table for them).
final class KeyService: Sendable {
    let database: Database
    let fanout: NotifierFanout
    let deviceListStream: StreamTracker
    /// Where a local user's device-list changes go to the servers sharing a room with them
    /// (`m.device_list_update`); nil in set-ups without federation.
    let federation: FederationDestinations?
    let localServer: String

    /// What sync reports about a device's own keys.
    struct DeviceKeyCounts: Sendable, Equatable {
        var oneTimeKeys: [String: Int]
        var unusedFallbackTypes: [String]
    }

    private struct CountCache {
        var entries: [String: DeviceKeyCounts] = [:]
        /// Bumped by every invalidation: a load that began before one does not store its
        /// (possibly stale) result.
        var generation: UInt64 = 0
    }
    private let counts = Mutex(CountCache())

    init(database: Database, fanout: NotifierFanout, federation: FederationDestinations? = nil,
         localServer: String = "") async throws {
        self.database = database
        self.fanout = fanout
        self.federation = federation
        self.localServer = localServer
        deviceListStream = try await StreamTracker.load(name: "device_lists", from: database,
                                                        maxPositionSQL: DeviceListStore.maxPositionSQL)
    }

    // MARK: Device-list changes

    /// Runs `body` in a write transaction together with a device-list position for `user`
    /// when the body reports a change, then wakes the user and their room peers.
    func changingKeys<T: Sendable>(of user: UserID,
                                   _ body: @escaping @Sendable (any SQLTransaction) throws -> (T, changed: Bool)) async throws -> T {
        let userID = user.rawValue
        let (result, position) = try await deviceListStream.withNextPosition { position -> (T, Int64?) in
            try await database.write { db -> (T, Int64?) in
                let (value, changed) = try body(db)
                guard changed else { return (value, nil) }
                try DeviceListStore.noteDeviceListChange(db, position: position, userID: userID)
                return (value, position)
            }
        }
        if let position { await notifyPeers(of: user, position) }
        return result
    }

    /// `m.device_list_update` (server-server API "Device Management") for each of `user`'s
    /// devices to the remote servers of their room peers. `prev_id` is empty: the remote
    /// cannot chain it and re-reads the whole list from `GET /user/devices` (what Synapse
    /// does on a gap), which also drops removed devices.
    private func sendDeviceListUpdates(of user: UserID, peers: [UserID], position: Int64) async {
        guard let federation, federation.isConnected, user.serverName.rawValue == localServer else { return }
        let servers = Set(peers.map(\.serverName).filter { $0.rawValue != localServer })
        guard !servers.isEmpty else { return }
        let devices = (try? await database.devices.devices(of: user)) ?? []
        for device in devices.prefix(100) {
            let content: JSON = ["user_id": .string(user.rawValue), "device_id": .string(device.deviceID),
                                 "stream_id": .int(position), "prev_id": []]
            await federation.enqueue(["edu_type": "m.device_list_update", "content": content], key: nil, to: servers)
        }
    }

    /// Records that `user`'s device list changed (a device added, renamed or removed).
    func deviceListChanged(_ user: UserID, removedDevices: [String] = []) async throws {
        let userID = user.rawValue
        try await changingKeys(of: user) { db in
            for device in removedDevices { try KeyStore.deleteDevice(db, userID: userID, deviceID: device) }
            return ((), true)
        }
        for device in removedDevices { invalidateCounts(user, device) }
    }

    private func notifyPeers(of user: UserID, _ position: Int64) async {
        let peers = (try? await database.memberships.peers(of: user)) ?? []
        await sendDeviceListUpdates(of: user, peers: peers, position: position)
        var users = Set(peers)
        users.insert(user)
        fanout.notify(users, of: StreamChange(.deviceLists, position))
    }

    // MARK: One-time-key counts

    static func cacheKey(_ user: UserID, _ device: String) -> String { user.rawValue + "|" + device }

    func invalidateCounts(_ user: UserID, _ device: String) {
        let key = Self.cacheKey(user, device)
        counts.withLock {
            $0.generation &+= 1
            $0.entries.removeValue(forKey: key)
        }
    }

    /// The device's unclaimed one-time keys per algorithm (`signed_curve25519` always
    /// present, as Synapse reports it) and its unused fallback key types.
    func counts(of user: UserID, device: String) async throws -> DeviceKeyCounts {
        let key = Self.cacheKey(user, device)
        let (cached, generation) = counts.withLock { ($0.entries[key], $0.generation) }
        if let cached { return cached }
        let stored = try await database.keys.counts(of: user, device: device)
        var otks = stored.oneTimeKeys
        if otks["signed_curve25519"] == nil { otks["signed_curve25519"] = 0 }
        let loaded = DeviceKeyCounts(oneTimeKeys: otks, unusedFallbackTypes: stored.unusedFallbackTypes)
        counts.withLock { cache in
            guard cache.generation == generation else { return }
            if cache.entries.count >= 100_000 { cache.entries.removeAll(keepingCapacity: true) }
            cache.entries[key] = loaded
        }
        return loaded
    }

    // MARK: Device-list changes for sync and /keys/changes

    /// Users whose device lists `user` should re-fetch (`changed`) or stop tracking (`left`)
    /// between two tokens: key changes of the user and their room peers, peers who joined a
    /// shared room or whose room the user joined, and users who no longer share any room.
    func changes(for user: UserID, since: StreamToken, upTo: StreamToken,
                 membershipsMoved: Bool) async throws -> (changed: [String], left: [String]) {
        let userID = user.rawValue
        let keyAfter = since[.deviceLists], keyUpTo = upTo[.deviceLists]
        let eventsAfter = since[.roomEvents], eventsUpTo = upTo[.roomEvents]
        let keysMoved = keyUpTo > keyAfter
        guard keysMoved || membershipsMoved else { return ([], []) }
        return try await database.read { db in
            var changed = Set<String>()
            if keysMoved {
                changed.formUnion(try DeviceListStore.deviceListChanges(db, userID: userID, after: keyAfter, upTo: keyUpTo))
            }
            var left = Set<String>()
            if membershipsMoved && eventsUpTo > eventsAfter {
                let moves = try MembershipStore.membershipChanges(db, userID: userID, after: eventsAfter, upTo: eventsUpTo)
                var joinedRooms: [String] = []
                var leftRooms: [String] = []
                var candidates = Set<String>()
                for (room, member, membership) in moves {
                    if member == userID {
                        if membership == MembershipState.join { joinedRooms.append(room) } else if membership == MembershipState.leave || membership == MembershipState.ban {
                            leftRooms.append(room)
                        }
                    } else if membership == MembershipState.join {
                        changed.insert(member)
                    } else if membership == MembershipState.leave || membership == MembershipState.ban {
                        candidates.insert(member)
                    }
                }
                if !joinedRooms.isEmpty { changed.formUnion(try MembershipStore.joinedMembers(db, rooms: joinedRooms)) }
                if !leftRooms.isEmpty { candidates.formUnion(try MembershipStore.joinedMembers(db, rooms: leftRooms)) }
                candidates.remove(userID)
                candidates.subtract(changed)
                if !candidates.isEmpty {
                    let list = Array(candidates)
                    let sharing = try MembershipStore.sharingARoom(db, with: userID, among: list)
                    left = candidates.subtracting(sharing)
                }
            }
            changed.subtract(left)
            return (changed.sorted(), left.sorted())
        }
    }
}
