import Matrix
import Persistence
import Synchronization

/// One logged-in device (key: user id + device id), resident while its tokens are in use:
/// who it is (user, device, guest, admin, lock and suspension flags, read from the store
/// once at activation; an administrator's change drops the user's sessions,
/// `Sessions.invalidate`), where its to-device inbox was acknowledged up to, which room members it
/// already received for lazy loading, and its last sighting (handed to the shared
/// `LastSeenBatcher`, never one write per request). Supervised by the `Registry` of
/// `Sessions`, which also indexes the device's live tokens in front of it.
///
/// Everything on the path of every request (`seen`, the to-device acknowledgement) is
/// `nonisolated` and synchronous, under a small lock of this session: authentication and
/// sync never hop onto the actor. Its state is a cache: the sync token carries the inbox
/// position and a lost lazy-loading record only resends members, so deactivation loses
/// nothing.
public actor SessionActor: RegistryMember {
    /// Who the device's tokens authenticate.
    public struct Identity: Sendable, Equatable {
        public var user: UserID
        public var device: DeviceID
        public var isGuest: Bool
        public var isAdmin: Bool
        /// Locked by an administrator (spec: "Account locking"): requests answer 401
        /// `M_USER_LOCKED`, logout aside.
        public var isLocked: Bool
        /// Suspended by an administrator (spec: "Account suspension"): reads work, actions
        /// answer 403 `M_USER_SUSPENDED`.
        public var isSuspended: Bool
        public init(user: UserID, device: DeviceID, isGuest: Bool, isAdmin: Bool) {
            self.init(user: user, device: device, isGuest: isGuest, isAdmin: isAdmin, isLocked: false, isSuspended: false)
        }

        public init(user: UserID, device: DeviceID, isGuest: Bool, isAdmin: Bool, isLocked: Bool, isSuspended: Bool) {
            self.user = user
            self.device = device
            self.isGuest = isGuest
            self.isAdmin = isAdmin
            self.isLocked = isLocked
            self.isSuspended = isSuspended
        }
    }

    private struct Shared {
        /// The `since` to-device position the device's last sync acknowledged in the store;
        /// nil until its first sync here.
        var toDeviceAcknowledged: Int64?
        /// When the registry last heard that this session is in use (ms).
        var lastTouchMs: Int64 = 0
        /// Set when the registry dropped this session: it must not be indexed again.
        var deactivated = false
    }

    public nonisolated let identity: Identity
    public nonisolated let key: SessionKey
    private nonisolated let lastSeen: LastSeenBatcher
    private nonisolated let shared = Mutex(Shared())
    private nonisolated let onDeactivate: @Sendable (SessionActor) -> Void
    private var membersSent: [RoomID: Set<UserID>] = [:]

    /// - Parameter onDeactivate: called when the registry drops this session, synchronously
    ///   (the token index forgets it).
    public init(identity: Identity, lastSeen: LastSeenBatcher,
                onDeactivate: @escaping @Sendable (SessionActor) -> Void = { _ in }) {
        self.identity = identity
        self.key = SessionKey(user: identity.user, device: identity.device)
        self.lastSeen = lastSeen
        self.onDeactivate = onDeactivate
    }

    /// The device made a request: its sighting goes to the batcher, which keeps the newest
    /// per device until its next flush.
    public nonisolated func seen(at timestamp: Int64, ip: String, userAgent: String?) {
        lastSeen.record(key, .init(timestamp: timestamp, ip: ip, userAgent: userAgent))
    }

    /// Whether the registry should hear that this session is in use: true at most once per
    /// `intervalMs`, so the request path tells the registry's LRU about a busy session
    /// without a hop per request.
    nonisolated func shouldTouch(now: Int64, intervalMs: Int64) -> Bool {
        shared.withLock { shared in
            guard now - shared.lastTouchMs >= intervalMs else { return false }
            shared.lastTouchMs = now
            return true
        }
    }

    /// The to-device position the device's last sync acknowledged (deleted from the store
    /// up to), or nil if it has not synced since this session became resident.
    public nonisolated var toDeviceAcknowledged: Int64? {
        shared.withLock { $0.toDeviceAcknowledged }
    }

    /// The device's sync deleted its to-device messages up to `position` (its `since`).
    public nonisolated func recordToDeviceAcknowledged(_ position: Int64) {
        shared.withLock { $0.toDeviceAcknowledged = position }
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

    /// True once the registry dropped this session.
    nonisolated var isDeactivated: Bool { shared.withLock { $0.deactivated } }

    /// The registry dropped this session: the token index forgets it at once.
    public nonisolated func willDeactivate() {
        shared.withLock { $0.deactivated = true }
        onDeactivate(self)
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

/// A device as two raw strings, for dictionaries on the request path: `String` equality has
/// a fast path (same storage) that the typed ids' byte-wise comparison lacks.
struct RawDeviceKey: Hashable, Sendable {
    let user: String
    let device: String
    init(_ key: SessionKey) {
        user = key.user.rawValue
        device = key.device.rawValue
    }
    init(user: String, device: String) {
        self.user = user
        self.device = device
    }
}
