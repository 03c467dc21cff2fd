import Matrix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The verify keys of other servers, as this server knows them: answers "the key `keyID` of
/// `server`, usable at time `ts`" for inbound request authentication and PDU signature
/// checks. Keys live in memory (bounded) over the store; a key that is unknown or no
/// longer valid at `ts` is fetched from the server itself (`GET /_matrix/key/v2/server`),
/// then through the configured notaries (`POST /_matrix/key/v2/query`). Concurrent lookups
/// of one server share one fetch; a fetch that did not help is not repeated for a short
/// while (a hostile or dead server costs one fetch per interval, not one per request).
///
/// Owned by the App (one per process); `requireServer`, the notary endpoints and PDU
/// verification call it. A class with a lock rather than an actor: the common case, a
/// cached key, is a dictionary lookup that must not queue behind a fetch.
public final class ServerKeyRing: Sendable {
    /// A key as cached: usable for anything signed at or before `validUntilTS` (for an old
    /// key, its `expired_ts`).
    public struct Entry: Sendable, Equatable {
        public var key: VerifyKey
        public var validUntilTS: Int64
        /// Set for keys listed under `old_verify_keys`.
        public var expiredTS: Int64?

        public init(key: VerifyKey, validUntilTS: Int64, expiredTS: Int64? = nil) {
            self.key = key
            self.validUntilTS = validUntilTS
            self.expiredTS = expiredTS
        }
    }

    struct State {
        var keys: [ServerName: [String: Entry]] = [:]
        /// Insertion order of `keys`, for eviction.
        var order: [ServerName] = []
        /// When each server was last fetched (whatever the outcome).
        var lastFetch: [ServerName: Int64] = [:]
        var inflight: [ServerName: Task<Void, Never>] = [:]
        var requester: (any FederationRequesting)?
    }

    public let serverName: ServerName
    let signingKey: SigningKey
    let notaries: [ServerName]
    /// Wall-clock milliseconds (injected by tests).
    public let now: @Sendable () -> Int64
    let state = Mutex(State())

    /// Servers kept in memory; the store keeps the rest.
    static let maxCachedServers = 10_000
    /// A server fetched less than this long ago is not fetched again (the negative cache).
    static let refetchIntervalMS: Int64 = 30_000
    /// Keys accepted from one response: a real server has a handful.
    static let maxKeysPerResponse = 64
    /// Spec (room version 5+, "Validity of keys"): a key's `valid_until_ts` counts for at
    /// most 7 days after it was fetched.
    static let maxValidityMS: Int64 = 7 * 24 * 3600 * 1000

    public init(serverName: ServerName, signingKey: SigningKey, notaries: [ServerName] = [],
                now: @escaping @Sendable () -> Int64 = ServerKeyRing.wallClockMilliseconds) {
        self.serverName = serverName
        self.signingKey = signingKey
        self.notaries = notaries
        self.now = now
    }

    /// Sets how keys are fetched from other servers (the App's federation client; tests'
    /// in-process one). Until then only this server's own keys and cached ones are known.
    public func use(_ requester: any FederationRequesting) {
        state.withLock { $0.requester = requester }
    }

    /// The key `keyID` of `server`, usable for something signed at `validAt` (milliseconds;
    /// nil: at any time, for room versions that do not enforce key validity). Fetches when
    /// needed. Throws 401 `M_UNAUTHORIZED` when no such key can be found.
    public func verifyKey(server: ServerName, keyID: String, validAt: Int64?) async throws(MatrixError) -> VerifyKey {
        if server == serverName {
            guard keyID == signingKey.keyID else { throw MatrixError(.unauthorized, "Unknown key \(keyID.prefix(64)) of this server") }
            return signingKey.verifyKey
        }
        if let key = cached(server: server, keyID: keyID, validAt: validAt) { return key }
        await fetch(server)
        if let key = cached(server: server, keyID: keyID, validAt: validAt) { return key }
        throw MatrixError(.unauthorized, "No valid key \(keyID.prefix(64)) for \(server)")
    }

    /// The cached key if it is valid at `validAt`.
    func cached(server: ServerName, keyID: String, validAt: Int64?) -> VerifyKey? {
        state.withLock { state -> VerifyKey? in
            guard let entry = state.keys[server]?[keyID] else { return nil }
            if let validAt, entry.validUntilTS < validAt { return nil }
            return entry.key
        }
    }

    /// Every key cached for `server` (tests, the notary).
    public func cachedKeys(of server: ServerName) -> [String: Entry] {
        state.withLock { $0.keys[server] ?? [:] }
    }

    /// Fetches `server`'s keys once, however many callers ask at the same time, unless it was
    /// fetched within the refetch interval.
    func fetch(_ server: ServerName) async {
        let task = state.withLock { state -> Task<Void, Never>? in
            if let running = state.inflight[server] { return running }
            let t = now()
            if let last = state.lastFetch[server], t - last < Self.refetchIntervalMS, t >= last { return nil }
            guard let requester = state.requester else { return nil }
            state.lastFetch[server] = t
            let task = Task { [self] in
                await self.fetchKeys(of: server, using: requester)
                _ = self.state.withLock { $0.inflight.removeValue(forKey: server) }
            }
            state.inflight[server] = task
            return task
        }
        await task?.value
    }

    /// Direct fetch, then each notary until one answers with keys.
    func fetchKeys(of server: ServerName, using requester: any FederationRequesting) async {
        if let keys = await fetchDirect(server, using: requester) {
            remember(keys, fetchedAt: now())
            return
        }
    }

    /// `GET /_matrix/key/v2/server` on the server: the answer must be for that server and
    /// signed by its own keys.
    func fetchDirect(_ server: ServerName, using requester: any FederationRequesting) async -> ServerKeys? {
        guard let reply = try? await requester.request(server, method: "GET", path: "/_matrix/key/v2/server", body: nil),
              reply.status == 200, let json = reply.json else { return nil }
        return try? ServerKeys(response: json, expectedServerName: server.rawValue)
    }

    /// Adds the keys of a verified response to the cache; validity is capped at 7 days after
    /// the fetch.
    func remember(_ keys: ServerKeys, fetchedAt: Int64) {
        guard let server = try? ServerName(parsing: keys.serverName) else { return }
        var entries: [String: Entry] = [:]
        let cap = fetchedAt > Int64.max - Self.maxValidityMS ? Int64.max : fetchedAt + Self.maxValidityMS
        for (id, entry) in keys.oldVerifyKeys.prefix(Self.maxKeysPerResponse) {
            entries[id] = Entry(key: entry.key, validUntilTS: entry.expiredTS, expiredTS: entry.expiredTS)
        }
        for (id, key) in keys.verifyKeys.prefix(Self.maxKeysPerResponse) {
            entries[id] = Entry(key: key, validUntilTS: min(keys.validUntilTS, cap))
        }
        state.withLock { state in
            if state.keys[server] == nil {
                if state.order.count >= Self.maxCachedServers {
                    let evicted = state.order.removeFirst()
                    state.keys[evicted] = nil
                    state.lastFetch[evicted] = nil
                }
                state.order.append(server)
            }
            state.keys[server, default: [:]].merge(entries) { _, new in new }
        }
    }

    /// Milliseconds since the epoch.
    public static func wallClockMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
