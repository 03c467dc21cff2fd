import Matrix
import Persistence
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The verify keys of other servers, as this server knows them: answers "the key `keyID` of
/// `server`, usable at time `ts`" for inbound request authentication, PDU signature checks
/// and the notary. Keys live in memory (bounded) over the store (`ServerKeyStore`); a key
/// that is unknown or no longer valid at `ts` is fetched from the server itself
/// (`GET /_matrix/key/v2/server`), then through the configured notaries
/// (`POST /_matrix/key/v2/query`, whose answers must carry both the server's and the
/// notary's signatures). Concurrent lookups of one server share one fetch; a server fetched
/// recently is not fetched again for a short while (a hostile or dead server costs one
/// fetch per interval, not one per request).
///
/// Owned by the App (one per process, `MyelinApp.keyRing`); `requireServer`, the notary
/// endpoints and PDU verification call it. A class with a lock rather than an actor: the
/// common case, a cached key, is a dictionary lookup that must not queue behind a fetch.
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
        /// Servers whose stored keys are already in `keys`.
        var loaded: Set<ServerName> = []
        /// When each server was last fetched (whatever the outcome).
        var lastFetch: [ServerName: Int64] = [:]
        var inflight: [ServerName: Task<Void, Never>] = [:]
        var requester: (any FederationRequesting)?
    }

    public let serverName: ServerName
    let signingKey: SigningKey
    let store: ServerKeyStore?
    public let notaries: [ServerName]
    /// Wall-clock milliseconds (injected by tests).
    public let now: @Sendable () -> Int64
    let state = Mutex(State())

    /// Servers kept in memory; the store keeps the rest.
    static let maxCachedServers = 10_000
    /// A server fetched less than this long ago is not fetched again (the negative cache).
    static let refetchIntervalMS: Int64 = 30_000
    /// Keys accepted from one response: a real server has a handful.
    static let maxKeysPerResponse = 64
    /// Rooms v5+ "Signing key validity period": a key's `valid_until_ts` counts for at most
    /// 7 days after it was fetched.
    public static let maxValidityMS: Int64 = 7 * 24 * 3600 * 1000

    public init(serverName: ServerName, signingKey: SigningKey, store: ServerKeyStore? = nil, notaries: [ServerName] = [],
                now: @escaping @Sendable () -> Int64 = ServerKeyRing.wallClockMilliseconds) {
        self.serverName = serverName
        self.signingKey = signingKey
        self.store = store
        self.notaries = notaries.filter { $0 != serverName }
        self.now = now
    }

    /// Sets how keys are fetched from other servers (the App's federation client; tests'
    /// in-process one). Until then only this server's own key and known keys are used.
    public func use(_ requester: any FederationRequesting) {
        state.withLock { $0.requester = requester }
    }

    /// The key `keyID` of `server`, usable for something signed at `validAt` (milliseconds;
    /// nil: at any time, for room versions that do not enforce key validity). Looks in
    /// memory, then in the store, then fetches. Throws 401 `M_UNAUTHORIZED` when no such
    /// key can be found.
    public func verifyKey(server: ServerName, keyID: String, validAt: Int64?) async throws(MatrixError) -> VerifyKey {
        if server == serverName {
            guard keyID == signingKey.keyID else { throw MatrixError(.unauthorized, "Unknown key \(keyID.prefix(64)) of this server") }
            return signingKey.verifyKey
        }
        if let key = cached(server: server, keyID: keyID, validAt: validAt) { return key }
        if await loadStored(server), let key = cached(server: server, keyID: keyID, validAt: validAt) { return key }
        await fetch(server, keyID: keyID, validAt: validAt, throughNotaries: true)
        if let key = cached(server: server, keyID: keyID, validAt: validAt) { return key }
        throw MatrixError(.unauthorized, "No valid key \(keyID.prefix(64)) for \(server)")
    }

    /// What the notary serves for `server` (server-server API "Querying Keys Through Another
    /// Server"): its latest key response as received, fetched directly again when the stored
    /// one is missing or not valid until `minimumValidUntil` (as Synapse's notary, which never
    /// asks other notaries). A stale response is still returned when the refetch fails;
    /// nil when nothing is known. This server's own keys are the caller's to answer.
    public func keyResponse(for server: ServerName, minimumValidUntil: Int64) async -> JSON? {
        guard let store else { return nil }
        var stored = try? await store.response(of: server.rawValue)
        if stored.map({ $0.validUntilTS < minimumValidUntil }) ?? true {
            await fetch(server, keyID: "", validAt: minimumValidUntil, throughNotaries: false)
            if let fresh = try? await store.response(of: server.rawValue) { stored = fresh }
        }
        guard let stored, let json = try? JSON.parse(stored.json) else { return nil }
        return json
    }

    /// The cached key if it is valid at `validAt`.
    func cached(server: ServerName, keyID: String, validAt: Int64?) -> VerifyKey? {
        state.withLock { state -> VerifyKey? in
            guard let entry = state.keys[server]?[keyID] else { return nil }
            if let validAt, entry.validUntilTS < validAt { return nil }
            return entry.key
        }
    }

    /// Every key known in memory for `server`.
    public func cachedKeys(of server: ServerName) -> [String: Entry] {
        state.withLock { $0.keys[server] ?? [:] }
    }

    /// Reads the server's stored keys into memory once; true when it read something new.
    func loadStored(_ server: ServerName) async -> Bool {
        guard let store, !state.withLock({ $0.loaded.contains(server) }) else { return false }
        guard let rows = try? await store.keys(of: server.rawValue) else { return false }
        var entries: [String: Entry] = [:]
        for row in rows {
            guard let key = try? VerifyKey(base64: row.verifyKey) else { continue }
            entries[row.keyID] = Entry(key: key, validUntilTS: row.validUntilTS, expiredTS: row.expiredTS)
        }
        state.withLock { state in
            // A fetch that finished meanwhile is newer than the store: it wins.
            insert(server, entries, into: &state, replacing: false)
            // Servers with nothing stored are remembered too; bounded, forgetting costs one read.
            if state.loaded.count >= 2 * Self.maxCachedServers { state.loaded.removeAll() }
            state.loaded.insert(server)
        }
        return !rows.isEmpty
    }

    /// Fetches `server`'s keys once, however many callers ask at the same time, unless it was
    /// fetched within the refetch interval.
    func fetch(_ server: ServerName, keyID: String, validAt: Int64?, throughNotaries: Bool) async {
        let task = state.withLock { state -> Task<Void, Never>? in
            if let running = state.inflight[server] { return running }
            let t = now()
            if let last = state.lastFetch[server], t - last < Self.refetchIntervalMS, t >= last { return nil }
            guard let requester = state.requester else { return nil }
            if state.lastFetch.count >= Self.maxCachedServers {
                state.lastFetch = state.lastFetch.filter { t - $0.value < Self.refetchIntervalMS }
                if state.lastFetch.count >= Self.maxCachedServers { state.lastFetch.removeAll() }
            }
            state.lastFetch[server] = t
            let task = Task { [self] in
                await self.fetchKeys(of: server, keyID: keyID, validAt: validAt, throughNotaries: throughNotaries, using: requester)
                _ = self.state.withLock { $0.inflight.removeValue(forKey: server) }
            }
            state.inflight[server] = task
            return task
        }
        await task?.value
    }

    /// Direct fetch, then each notary in turn until one answers with the key.
    func fetchKeys(of server: ServerName, keyID: String, validAt: Int64?, throughNotaries: Bool,
                   using requester: any FederationRequesting) async {
        if let (keys, json) = await fetchDirect(server, using: requester) {
            await remember(keys, json: json)
            if keys.verifyKeys[keyID] != nil || keys.oldVerifyKeys[keyID] != nil { return }
        }
        for notary in notaries where throughNotaries {
            if let (keys, json) = await fetchThroughNotary(server, keyID: keyID, validAt: validAt, notary: notary, using: requester) {
                await remember(keys, json: json)
                return
            }
        }
    }

    /// `GET /_matrix/key/v2/server` on the server: the answer must be for that server and
    /// signed by its own keys.
    func fetchDirect(_ server: ServerName, using requester: any FederationRequesting) async -> (ServerKeys, JSON)? {
        guard let reply = try? await requester.request(server, method: "GET", path: "/_matrix/key/v2/server", body: nil),
              reply.status == 200, let json = reply.json else { return nil }
        guard let keys = Self.parse(json, server: server) else { return nil }
        return (keys, json)
    }

    /// `POST /_matrix/key/v2/query` on a notary, asking for the key valid at `validAt`
    /// (`minimum_valid_until_ts`, as rooms v5+ require). The chosen answer must be the
    /// server's own signed response and also be signed by the notary with a key the notary
    /// itself published.
    func fetchThroughNotary(_ server: ServerName, keyID: String, validAt: Int64?, notary: ServerName,
                            using requester: any FederationRequesting) async -> (ServerKeys, JSON)? {
        let criteria: JSON = validAt.map { ["minimum_valid_until_ts": .int($0)] } ?? [:]
        let body: JSON = ["server_keys": .object([server.rawValue: .object([keyID: criteria])])]
        guard let reply = try? await requester.request(notary, method: "POST", path: "/_matrix/key/v2/query", body: body),
              reply.status == 200, let entries = reply.json?["server_keys"]?.arrayValue else { return nil }
        for entry in entries.prefix(Self.maxKeysPerResponse) where entry["server_name"]?.stringValue == server.rawValue {
            guard let keys = Self.parse(entry, server: server) else { continue }
            guard await notarySigned(entry, by: notary, using: requester) else { continue }
            return (keys, entry)
        }
        return nil
    }

    /// True when `json` carries a valid signature of `notary` by a key the notary publishes
    /// (fetched directly: a notary is never vouched for by another notary).
    func notarySigned(_ json: JSON, by notary: ServerName, using requester: any FederationRequesting) async -> Bool {
        for keyID in JSONSignatures.ed25519KeyIDs(of: json, entity: notary.rawValue).prefix(8) {
            var key = cached(server: notary, keyID: keyID, validAt: now())
            if key == nil, await loadStored(notary) { key = cached(server: notary, keyID: keyID, validAt: now()) }
            if key == nil, let (keys, raw) = await fetchDirect(notary, using: requester) {
                await remember(keys, json: raw)
                key = cached(server: notary, keyID: keyID, validAt: now())
            }
            guard let key else { continue }
            if (try? JSONSignatures.verify(json, entity: notary.rawValue, keyID: keyID, key: key)) != nil { return true }
        }
        return false
    }

    /// A key response checked: bounded, for `server`, signed by its own keys.
    static func parse(_ json: JSON, server: ServerName) -> ServerKeys? {
        guard (json["verify_keys"]?.objectValue?.count ?? 0) <= maxKeysPerResponse,
              (json["old_verify_keys"]?.objectValue?.count ?? 0) <= maxKeysPerResponse else { return nil }
        return try? ServerKeys(response: json, expectedServerName: server.rawValue)
    }

    /// Adds the keys of a verified response to memory and the store; current keys count as
    /// valid for at most 7 days after the fetch.
    func remember(_ keys: ServerKeys, json: JSON) async {
        guard let server = try? ServerName(parsing: keys.serverName) else { return }
        let fetchedAt = now()
        let entries = Self.entries(of: keys, fetchedAt: fetchedAt)
        state.withLock { insert(server, entries, into: &$0, replacing: true) }
        guard let store else { return }
        let rows = entries.map { id, entry in
            ServerKeyStore.Key(serverName: server.rawValue, keyID: id, verifyKey: entry.key.base64,
                               validUntilTS: entry.validUntilTS, expiredTS: entry.expiredTS, fetchedTS: fetchedAt)
        }
        let response = ServerKeyStore.Response(serverName: server.rawValue, validUntilTS: keys.validUntilTS,
                                               fetchedTS: fetchedAt, json: json.encoded())
        // A store failure leaves the keys in memory; the next restart fetches them again.
        try? await store.save(response, keys: rows)
        // The notary serves each key from the latest response that listed it.
        try? await store.saveResponse(response, forKeys: Array(keys.verifyKeys.keys) + Array(keys.oldVerifyKeys.keys))
    }

    /// Cache entries for a response: current keys valid until the lesser of the response's
    /// `valid_until_ts` and 7 days after the fetch; old keys until their `expired_ts`.
    public static func entries(of keys: ServerKeys, fetchedAt: Int64) -> [String: Entry] {
        var entries: [String: Entry] = [:]
        let cap = fetchedAt > Int64.max - maxValidityMS ? Int64.max : fetchedAt + maxValidityMS
        for (id, entry) in keys.oldVerifyKeys {
            entries[id] = Entry(key: entry.key, validUntilTS: entry.expiredTS, expiredTS: entry.expiredTS)
        }
        for (id, key) in keys.verifyKeys {
            entries[id] = Entry(key: key, validUntilTS: min(keys.validUntilTS, cap))
        }
        return entries
    }

    private func insert(_ server: ServerName, _ entries: [String: Entry], into state: inout State, replacing: Bool) {
        if state.keys[server] == nil {
            if state.order.count >= Self.maxCachedServers {
                let evicted = state.order.removeFirst()
                state.keys[evicted] = nil
                state.loaded.remove(evicted)
            }
            state.order.append(server)
        }
        state.keys[server, default: [:]].merge(entries) { old, new in replacing ? new : old }
    }

    /// Milliseconds since the epoch.
    public static func wallClockMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
