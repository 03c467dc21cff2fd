import Matrix
import Persistence
import Synchronization

/// Authentication of access tokens through resident `SessionActor`s, one per device (key:
/// user id + device id), supervised by a `Registry` with the `actors.sessions` limits.
///
/// In front of the registry sits a token index (a dictionary under a lock): token hash →
/// the device's session and that token's expiry. A request whose token is indexed is
/// authenticated with one lookup and no store read and no actor hop; the registry hears
/// that the session is busy at most once per `touchIntervalMs` (a detached `touch`), which
/// keeps its LRU and idle sweep right. A token not indexed costs one store read
/// (`TokenStore.accessTokenWithUser`), then its device's session is activated (or found
/// resident, as after a refresh) and the token indexed. Keys are devices rather than tokens
/// because what a session owns is the device's: its to-device acknowledgement, its
/// last-seen, its lazy-loading record; a device has one live token except during a refresh,
/// when the old token keeps working until the new one is first used.
///
/// Revocation is immediate: `revoke` removes the tokens from the index before it returns
/// (the next request reads the store, which no longer has them) and then drops the
/// sessions from the registry. An authentication reading the store while a revocation
/// happens answers from what it read (it started first) but does not index the token: the
/// index changes only if no revocation happened since the read (`epoch`).
///
/// Tokens without a device (none is issued today) are authenticated from the store on
/// every request and never resident. Built by the App's `Accounts`; its upkeep
/// (`runUpkeep`) flushes last-seen and sweeps idle sessions.
public final class Sessions: Sendable {
    /// Who a token authenticates.
    public struct Authenticated: Sendable {
        public let user: UserID
        /// The device's id; nil only for a token stored without a device.
        public let deviceID: String?
        public let isGuest: Bool
        public let isAdmin: Bool
        public let isLocked: Bool
        public let isSuspended: Bool
        /// The device's resident session (nil for a token without a device).
        public let session: SessionActor?
    }

    private struct TokenEntry {
        let session: SessionActor
        let expiresTs: Int64?
    }

    private struct Resident {
        let session: SessionActor
        var tokens: Set<String>
    }

    private struct Index {
        var tokens: [String: TokenEntry] = [:]
        var residents: [RawDeviceKey: Resident] = [:]
        /// Counts revocations, so that an authentication which read the store before one
        /// does not index what it read.
        var epoch: UInt64 = 0
    }

    public let registry: Registry<SessionKey, SessionActor>
    public let lastSeen: LastSeenBatcher
    private let store: TokenStore
    private let index = Mutex(Index())
    /// How often at most a busy session tells the registry it is in use: a quarter of the
    /// idle timeout, at most 30 s (each tell is a task and a hop; the registry's LRU order is
    /// that coarse, and an evicted busy session costs one store read).
    public let touchIntervalMs: Int64

    public init(store: TokenStore, limits: RegistryLimits, lastSeen: LastSeenBatcher) {
        self.store = store
        self.lastSeen = lastSeen
        let idle = limits.idleTimeout.components
        let idleMs = idle.seconds * 1000 + idle.attoseconds / 1_000_000_000_000_000
        touchIntervalMs = max(1, min(30_000, idleMs / 4))
        // Sessions are activated by authentication only (`get(_:activatingWith:)`, with
        // the user it has just read), so that every one reports its deactivation here.
        registry = Registry(limits: limits) { _ in
            throw MatrixError(.unknownToken, "Unrecognised access token")
        }
    }

    // MARK: authentication

    /// Authenticates the token of SHA-256 `tokenHash` and records the device's sighting.
    /// Throws 401 `M_UNKNOWN_TOKEN` (with `soft_logout` when expired) or 403
    /// `M_USER_DEACTIVATED`.
    public func authenticate(tokenHash: String, now: Int64, ip: String, userAgent: String?) async throws -> Authenticated {
        guard let entry = index.withLock({ $0.tokens[tokenHash] }) else {
            return try await authenticateFromStore(tokenHash: tokenHash, now: now, ip: ip, userAgent: userAgent)
        }
        if let expires = entry.expiresTs, expires <= now { throw Self.expired }
        let session = entry.session
        session.seen(at: now, ip: ip, userAgent: userAgent)
        if session.shouldTouch(now: now, intervalMs: touchIntervalMs) {
            let registry = registry, key = session.key
            Task { await registry.touch(key) }
        }
        return Self.authenticated(session)
    }

    private func authenticateFromStore(tokenHash: String, now: Int64, ip: String, userAgent: String?) async throws -> Authenticated {
        var epoch = index.withLock { $0.epoch }
        guard let (token, user) = try await store.accessTokenWithUser(hash: tokenHash),
              let userID = try? UserID(parsing: token.userID) else {
            throw MatrixError(.unknownToken, "Unrecognised access token")
        }
        // The first use of tokens from `/refresh` revokes the tokens they replaced.
        if let replaced = token.replacesTokenHash {
            try await store.completeRotation(tokenHash: tokenHash, replaced: replaced)
            let after = revoke(tokenHash: replaced)
            if after == epoch + 1 { epoch = after }  // only this revocation happened meanwhile
        }
        if user.deactivated { throw MatrixError(.userDeactivated, "This account has been deactivated") }
        guard let deviceText = token.deviceID, let device = try? DeviceID(parsing: deviceText) else {
            if let expires = token.expiresTs, expires <= now { throw Self.expired }
            return Authenticated(user: userID, deviceID: token.deviceID, isGuest: user.isGuest, isAdmin: user.isAdmin,
                                 isLocked: user.locked, isSuspended: user.suspended, session: nil)
        }
        let identity = SessionActor.Identity(user: userID, device: device, isGuest: user.isGuest, isAdmin: user.isAdmin,
                                             isLocked: user.locked, isSuspended: user.suspended)
        let lastSeen = lastSeen
        let onDeactivate: @Sendable (SessionActor) -> Void = { [weak self] in self?.deactivated($0) }
        let activate: @Sendable (SessionKey) async throws -> SessionActor = { _ in
            SessionActor(identity: identity, lastSeen: lastSeen, onDeactivate: onDeactivate)
        }
        var session = try await registry.get(identity.key, activatingWith: activate)
        if session.identity != identity {
            // A session activated from an older read (an administrator changed the user's
            // flags meanwhile): what the store says now wins.
            await registry.remove(identity.key)
            session = try await registry.get(identity.key, activatingWith: activate)
        }
        index.withLock { index in
            guard index.epoch == epoch, !session.isDeactivated else { return }
            let key = RawDeviceKey(session.key)
            if let previous = index.residents[key], previous.session !== session {
                // Defensive: a session of this device other than the registry's: its tokens go.
                for hash in previous.tokens { index.tokens[hash] = nil }
                index.residents[key] = nil
            }
            index.tokens[tokenHash] = TokenEntry(session: session, expiresTs: token.expiresTs)
            index.residents[key, default: Resident(session: session, tokens: [])].tokens.insert(tokenHash)
        }
        if let expires = token.expiresTs, expires <= now { throw Self.expired }
        session.seen(at: now, ip: ip, userAgent: userAgent)
        return Self.authenticated(session)
    }

    private static func authenticated(_ session: SessionActor) -> Authenticated {
        let identity = session.identity
        return Authenticated(user: identity.user, deviceID: identity.device.rawValue, isGuest: identity.isGuest,
                             isAdmin: identity.isAdmin, isLocked: identity.isLocked, isSuspended: identity.isSuspended,
                             session: session)
    }

    private static var expired: MatrixError {
        MatrixError(.unknownToken, "Access token has expired", extra: ["soft_logout": true])
    }

    /// The resident session of a device, if any.
    public func resident(_ key: SessionKey) -> SessionActor? {
        let key = RawDeviceKey(key)
        return index.withLock { $0.residents[key]?.session }
    }

    /// The resident session of `user`'s device of raw id `deviceID`, if any (every sync
    /// reads its to-device acknowledgement: no parsing of the id).
    public func resident(_ user: UserID, deviceID: String) -> SessionActor? {
        let key = RawDeviceKey(user: user.rawValue, device: deviceID)
        return index.withLock { $0.residents[key]?.session }
    }

    /// Whether the token of `tokenHash` is indexed (authenticates with no store read).
    public func isResident(tokenHash: String) -> Bool {
        index.withLock { $0.tokens[tokenHash] != nil }
    }

    // MARK: revocation

    /// The token of `tokenHash` was deleted from the store (logout of a device-less token,
    /// a refresh rotation): its next use reads the store. The device's session stays for its
    /// other tokens. Returns the revocation epoch after this one.
    @discardableResult
    public func revoke(tokenHash: String) -> UInt64 {
        index.withLock { index in
            index.epoch += 1
            if let entry = index.tokens.removeValue(forKey: tokenHash) {
                index.residents[RawDeviceKey(entry.session.key)]?.tokens.remove(tokenHash)
            }
            return index.epoch
        }
    }

    /// The device's tokens were deleted (logout, device deletion, a login reusing the device
    /// id): its session goes at once, with its pending last-seen.
    public func revoke(_ user: UserID, device: DeviceID) async {
        await revoke { $0.user == user && $0.device == device }
        lastSeen.forget(user, device: device)
    }

    /// Every device of the user except `keeping` was logged out (logout/all, deactivation,
    /// a password change that logs out the other devices).
    public func revoke(_ user: UserID, keeping: DeviceID? = nil) async {
        await revoke { $0.user == user && $0.device != keeping }
        if let keeping {
            // Only the devices that went lose their pending sightings.
            let kept = lastSeen.pending(SessionKey(user: user, device: keeping))
            lastSeen.forget(user)
            if let kept { lastSeen.record(SessionKey(user: user, device: keeping), kept) }
        } else {
            lastSeen.forget(user)
        }
    }

    /// An administrator changed the user's flags (admin, lock, suspension): the user's
    /// resident sessions go, their tokens stay, and the next request of each device reads the
    /// user again from the store. Pending last-seen is kept.
    public func invalidate(_ user: UserID) async {
        await revoke { $0.user == user }
    }

    private func revoke(where matches: (SessionKey) -> Bool) async {
        let keys = index.withLock { index in
            index.epoch += 1
            let revoked = index.residents.filter { matches($0.value.session.key) }
            for (key, resident) in revoked {
                index.residents[key] = nil
                for hash in resident.tokens { index.tokens[hash] = nil }
            }
            return revoked.values.map(\.session.key)
        }
        for key in keys { await registry.remove(key) }
    }

    /// The registry dropped `session` (eviction, idle, revocation, shutdown): its tokens
    /// leave the index, unless a successor already took its place.
    private func deactivated(_ session: SessionActor) {
        index.withLock { index in
            let key = RawDeviceKey(session.key)
            guard let resident = index.residents[key], resident.session === session else { return }
            index.residents[key] = nil
            for hash in resident.tokens where index.tokens[hash]?.session === session { index.tokens[hash] = nil }
        }
    }

    // MARK: upkeep

    /// Flushes last-seen every `flushEvery` and sweeps idle sessions every `sweepEvery`
    /// until cancelled (then flushes once more).
    public func runUpkeep(flushEvery: Duration, sweepEvery: Duration) async {
        let lastSeen = lastSeen, registry = registry
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await lastSeen.runFlushes(every: flushEvery) }
            group.addTask { await registry.runIdleSweeps(every: sweepEvery) }
        }
    }

    /// Deactivates every session and writes the pending last-seen (shutdown, after
    /// `runUpkeep` ended and before the store closes).
    public func shutdown() async {
        await registry.deactivateAll()
        await lastSeen.flushLogged()
    }
}

extension SessionActor.Identity {
    /// The key of the device's session.
    public var key: SessionKey { SessionKey(user: user, device: device) }
}
