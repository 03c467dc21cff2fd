import Matrix
import Persistence

extension ServerKeyRing {
    /// Key ids one notary query may name for a server; a real server has a handful.
    static let maxNotaryKeyIDs = 16

    /// What the notary serves for `server` when a query names key ids, each with the time
    /// until which it must be valid (server-server API "Querying Keys Through Another
    /// Server"; Synapse's `RemoteKey`): for each key, the latest response of the server that
    /// listed it. When one is missing or not valid until its minimum, the server is asked
    /// again directly (once per query, whatever the refetch interval: the caller asked for
    /// fresher keys than this server holds); a response that no longer lists a key does not
    /// replace the one that did, and a stale response is still served when the fetch fails.
    /// The distinct responses found; empty when nothing is known.
    public func keyResponses(for server: ServerName, minimumValidUntil criteria: [String: Int64]) async -> [JSON] {
        guard let store else { return [] }
        let wanted = criteria.sorted { $0.key < $1.key }.prefix(Self.maxNotaryKeyIDs)
        func stored(_ keyID: String) async -> ServerKeyStore.Response? {
            try? await store.response(of: server.rawValue, keyID: keyID)
        }
        var stale = false
        for (keyID, minimum) in wanted {
            guard let found = await stored(keyID), found.validUntilTS >= minimum else { stale = true; break }
        }
        if stale, let requester = state.withLock({ $0.requester }), let (keys, json) = await fetchDirect(server, using: requester) {
            await remember(keys, json: json)
        }
        var answers: [JSON] = []
        var seen: Set<[UInt8]> = []
        for (keyID, _) in wanted {
            guard let found = await stored(keyID), seen.insert(found.json).inserted, let json = try? JSON.parse(found.json) else { continue }
            answers.append(json)
        }
        return answers
    }
}
