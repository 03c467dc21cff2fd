import Matrix
import Persistence

/// One logged-in device (key: user id + device id): where its to-device inbox was read
/// up to, which room members it already received for lazy loading, and when it was last
/// seen (handed to a shared `LastSeenBatcher`, never one write per request). Its state is
/// a cache: the sync token carries the inbox position and a lost lazy-loading record only
/// resends members, so deactivation loses nothing. Supervised by a `Registry` keyed by
/// `SessionKey`; sync and the auth middleware call it.
public actor SessionActor: RegistryMember {
    public nonisolated let key: SessionKey
    private let lastSeen: LastSeenBatcher
    private var lastSighting: LastSeenBatcher.Sighting?
    /// Highest to-device position delivered to and acknowledged by the device.
    public private(set) var toDevicePosition: Int64 = 0
    private var membersSent: [RoomID: Set<UserID>] = [:]

    public init(key: SessionKey, lastSeen: LastSeenBatcher) {
        self.key = key
        self.lastSeen = lastSeen
    }

    /// The device made a request. Cheap: records in memory, the batcher writes later.
    /// Sightings within a minute of the last recorded one with the same IP and user agent
    /// are not even handed on (as Synapse's client-IP cache).
    public func seen(at timestamp: Int64, ip: String?, userAgent: String?) {
        let sighting = LastSeenBatcher.Sighting(timestamp: timestamp, ip: ip, userAgent: userAgent)
        if let last = lastSighting, last.ip == ip, last.userAgent == userAgent, timestamp - last.timestamp < 60_000 { return }
        lastSighting = sighting
        lastSeen.record(key.user, key.device, sighting)
    }

    /// The device's sync acknowledged to-device messages up to `position` (its `since`).
    public func acknowledgeToDevice(upTo position: Int64) {
        toDevicePosition = max(toDevicePosition, position)
    }

    /// Of `members` (senders in a lazy-loading sync of `room`), those whose membership the
    /// device has not received yet; they are recorded as sent.
    public func membersToSend(in room: RoomID, among members: some Sequence<UserID>) -> [UserID] {
        var sent = membersSent[room, default: []]
        var fresh: [UserID] = []
        for member in members where sent.insert(member).inserted { fresh.append(member) }
        membersSent[room] = sent
        return fresh
    }

    /// A membership changed or the client asked for a full state: send members again.
    public func forgetMembersSent(in room: RoomID) {
        membersSent[room] = nil
    }

    public func deactivate() {}
}

/// The key of a `SessionActor`: one device of one user.
public struct SessionKey: Sendable, Hashable, CustomStringConvertible {
    public var user: UserID
    public var device: DeviceID
    public init(user: UserID, device: DeviceID) {
        self.user = user
        self.device = device
    }
    public var description: String { "\(user)/\(device.rawValue)" }
}
