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
    /// Resyncs of remote users' device lists in flight, by user (`MyelinApp.resyncDeviceList`).
    let resyncs = Mutex<[String: Resync]>([:])

    /// A resync in flight, and whether it was asked for again meanwhile.
    struct Resync: Sendable {
        var task: Task<Void, Never>
        var again = false
    }
    /// Whether the sweep of unshared remote device lists runs (`MyelinApp.startDeviceListSweep`).
    let sweepStarted = Mutex(false)

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

    /// What changed in a local user's keys, for the `m.device_list_update` and
    /// `m.signing_key_update` EDUs sent to the servers of their room peers.
    struct KeyChange: Sendable {
        /// The devices added, changed or removed; empty when not known.
        var devices: [String] = []
        var deleted = false
        /// The master or self-signing key changed.
        var crossSigning = false
        /// Only the user-signing key changed: the user alone is told (not their peers, not
        /// other servers).
        var ownOnly = false
    }

    /// Runs `body` in a write transaction together with a device-list position for `user`
    /// when the body reports a change, then wakes the user and their room peers (and tells
    /// the remote servers among them what changed, `change`).
    func changingKeys<T: Sendable>(of user: UserID, change: KeyChange = KeyChange(),
                                   _ body: @escaping @Sendable (any SQLTransaction) throws -> (T, changed: Bool)) async throws -> T {
        let userID = user.rawValue
        let (result, position) = try await deviceListStream.withNextPosition { position -> (T, Int64?) in
            try await database.write { db -> (T, Int64?) in
                let (value, changed) = try body(db)
                guard changed else { return (value, nil) }
                try DeviceListStore.noteDeviceListChange(db, position: position, userID: userID,
                                                         signingKeysOnly: change.crossSigning && change.devices.isEmpty,
                                                         ownOnly: change.ownOnly)
                return (value, position)
            }
        }
        if let position { await notifyPeers(of: user, position, change) }
        return result
    }

    /// `m.device_list_update` (server-server API "Device Management") to the remote servers of
    /// `user`'s room peers: one update for the one device that changed, with the `stream_id`
    /// of the change and as `prev_id` the user's previous change (what `GET /user/devices`
    /// answered or the previous update carried), so the remote applies it without asking;
    /// when the devices are not known, one update with an empty `prev_id`, which makes the
    /// remote re-read the whole list (as Synapse does). Synapse drops a second update with the
    /// same `stream_id`, so a change never sends more than one. `m.signing_key_update` when
    /// the cross-signing keys changed.
    private func sendKeyUpdates(of user: UserID, peers: [UserID], position: Int64, _ change: KeyChange) async {
        guard let federation, federation.isConnected, user.serverName.rawValue == localServer else { return }
        let servers = Set(peers.map(\.serverName).filter { $0.rawValue != localServer })
        guard !servers.isEmpty else { return }
        let userID = user.rawValue
        if change.crossSigning {
            await sendSigningKeyUpdate(of: user, to: servers)
            if change.devices.isEmpty { return }
        }
        let previous = try? await database.read { db in
            try DeviceListStore.lastChange(db, userID: userID, atOrBelow: position - 1)
        }
        var content: [String: JSON] = ["user_id": .string(userID), "stream_id": .int(position), "prev_id": []]
        let devices = (try? await database.devices.devices(of: user)) ?? []
        if change.devices.count == 1, let device = change.devices.first {
            content["device_id"] = .string(device)
            if let previous { content["prev_id"] = [.int(previous)] }
            if change.deleted {
                content["deleted"] = true
            } else {
                var wanted: [String: Set<String>?] = [:]
                wanted[userID] = .some([device])
                if let record = devices.first(where: { $0.deviceID == device }), let name = record.displayName {
                    content["device_display_name"] = .string(name)
                }
                if let keys = try? await Keys.localKeys(database, wanted: wanted, me: nil), let key = keys["device_keys"]?[userID]?[device] {
                    content["keys"] = key
                }
            }
        } else {
            content["device_id"] = .string(change.devices.first ?? devices.first?.deviceID ?? "")
        }
        await federation.enqueue(["edu_type": "m.device_list_update", "content": .object(content)], key: nil, to: servers)
    }

    /// The master and self-signing keys as a remote server's `/keys/query` would see them:
    /// with the signatures the user made of their own keys (their devices' signatures of the
    /// master key among them), none of other users.
    private func sendSigningKeyUpdate(of user: UserID, to servers: Set<ServerName>) async {
        let userID = user.rawValue
        var wanted: [String: Set<String>?] = [:]
        wanted[userID] = .some(nil)
        guard let federation, let keys = try? await Keys.localKeys(database, wanted: wanted, me: nil) else { return }
        var content: [String: JSON] = ["user_id": .string(userID)]
        if let master = keys["master_keys"]?[userID] { content["master_key"] = master }
        if let selfSigning = keys["self_signing_keys"]?[userID] { content["self_signing_key"] = selfSigning }
        guard content.count > 1 else { return }
        await federation.enqueue(["edu_type": "m.signing_key_update", "content": .object(content)], key: nil, to: servers)
    }

    /// Stores signatures of `/keys/signatures/upload` by `signer`. Signatures of the signer's
    /// own keys (`own`: devices signed by their self-signing key, their master key signed by
    /// their devices) are a change of their keys for everyone sharing a room with them
    /// (`change`). Signatures of others' master keys by the signer's user-signing key
    /// (`others`) are seen by the signer alone, so only the signer is told those users
    /// changed (as Synapse's signature stream).
    func recordSignatures(by signer: UserID, own: [KeyStore.Signature], others: [KeyStore.Signature],
                          change: KeyChange) async throws {
        if !own.isEmpty {
            try await changingKeys(of: signer, change: change) { db in
                for signature in own { try KeyStore.addSignature(db, signature) }
                return ((), true)
            }
        }
        guard !others.isEmpty else { return }
        let observer = signer.rawValue
        let targets = Set(others.map(\.targetUserID)).sorted()
        let position = try await deviceListStream.withNextPosition { position -> Int64 in
            try await database.write { db in
                for signature in others { try KeyStore.addSignature(db, signature) }
                for target in targets {
                    try DeviceListStore.noteDeviceListChange(db, position: position, userID: target, observer: observer)
                }
                return position
            }
        }
        fanout.notify([signer], of: StreamChange(.deviceLists, position))
    }

    /// Records that `user`'s device list changed (devices added, renamed or removed).
    func deviceListChanged(_ user: UserID, devices: [String] = [], removedDevices: [String] = []) async throws {
        let userID = user.rawValue
        let change = KeyChange(devices: removedDevices.isEmpty ? devices : removedDevices, deleted: !removedDevices.isEmpty)
        try await changingKeys(of: user, change: change) { db in
            for device in removedDevices { try KeyStore.deleteDevice(db, userID: userID, deviceID: device) }
            return ((), true)
        }
        for device in removedDevices { invalidateCounts(user, device) }
    }

    private func notifyPeers(of user: UserID, _ position: Int64, _ change: KeyChange) async {
        if change.ownOnly {
            fanout.notify([user], of: StreamChange(.deviceLists, position))
            return
        }
        let peers = (try? await database.memberships.peers(of: user)) ?? []
        await sendKeyUpdates(of: user, peers: peers, position: position, change)
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
    /// between two tokens: key changes of the user and their room peers, peers who joined (or
    /// were invited to, or knocked on) a shared room or whose room the user joined, and users who no longer share any room.
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
                    } else if membership == MembershipState.join || membership == MembershipState.invite
                                || membership == MembershipState.knock {
                        // Synapse reports newly joined, invited and knocking users alike (a
                        // client may encrypt for the invited before they join).
                        changed.insert(member)
                    } else if membership == MembershipState.leave || membership == MembershipState.ban {
                        candidates.insert(member)
                    }
                }
                // The store keeps each member's current membership only: a change in the window
                // that a later one replaced (an invite, then the join after `upTo`) is seen as that
                // later one. Such members are reported as changed (a spurious entry only makes
                // the client re-read their keys; a missed one leaves it encrypting for old keys).
                for (_, member, membership) in try MembershipStore.membershipChanges(db, userID: userID, after: eventsUpTo, upTo: .max)
                where member != userID && membership != MembershipState.leave && membership != MembershipState.ban {
                    changed.insert(member)
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
