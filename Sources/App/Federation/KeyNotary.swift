import Actors
import Matrix
import Transport

/// The notary half of the key API (server-server API "Querying Keys Through Another
/// Server"): `GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query`.
/// Unauthenticated, as the specification defines them. This server's own keys are answered
/// from its signing key; other servers' come from the key ring (stored, or fetched directly
/// when too old). Every answer is additionally signed by this server, as Synapse does.
enum KeyNotary {
    /// Servers one query may name; Synapse's batches stay far below.
    static let maxServersPerQuery = 100

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/key/v2/query/{serverName}", queryOne)
        // The deprecated form naming a key id: the same answer (all the server's keys).
        routes.get("/_matrix/key/v2/query/{serverName}/{keyId}", queryOne)
        routes.post("/_matrix/key/v2/query", queryMany)
    }

    /// `GET /_matrix/key/v2/query/{serverName}?minimum_valid_until_ts=`: the server's keys,
    /// an empty list when unknown and unreachable.
    static func queryOne(_ context: RequestContext) async throws -> HTTPResponse {
        let server = try ServerName(parsing: context.parameter("serverName"))
        var minimum = Clock.nowMilliseconds()
        if let text = context.query["minimum_valid_until_ts"] {
            guard let value = Int64(text), value >= 0 else {
                throw MatrixError(.invalidParam, "minimum_valid_until_ts must be a non-negative integer")
            }
            minimum = value
        }
        let answers = await responses(for: [(server, minimum)], app: context.app)
        return .json(["server_keys": .array(answers)])
    }

    /// `POST /_matrix/key/v2/query` with `{"server_keys": {server: {keyId: {minimum_valid_until_ts}}}}`:
    /// the keys of every named server that could be found. Key IDs only narrow what must be
    /// fresh; whole responses are returned (the spec allows more keys than asked).
    static func queryMany(_ context: RequestContext) async throws -> HTTPResponse {
        let body = try await context.jsonObject()
        guard let query = body["server_keys"]?.objectValue else { throw MatrixError(.badJSON, "server_keys must be an object") }
        guard query.count <= maxServersPerQuery else {
            throw MatrixError(.badJSON, "At most \(maxServersPerQuery) servers per query")
        }
        let now = Clock.nowMilliseconds()
        var wanted: [(ServerName, Int64)] = []
        var byKey: [(ServerName, [String: Int64])] = []
        for (name, criteria) in query {
            let server = try ServerName(parsing: name)
            guard let keys = criteria.objectValue else { throw MatrixError(.badJSON, "server_keys.\(name.prefix(255)) must be an object") }
            var minimum = now
            var perKey: [String: Int64] = [:]
            for (keyID, criterion) in keys {
                guard let c = criterion.objectValue else { throw MatrixError(.badJSON, "Key criteria must be objects") }
                // Absent, the notary's current time (the spec's default).
                perKey[keyID] = now
                if let m = c["minimum_valid_until_ts"] {
                    guard let value = m.intValue else { throw MatrixError(.badJSON, "minimum_valid_until_ts must be an integer") }
                    minimum = max(minimum, value)
                    perKey[keyID] = value
                }
            }
            // Named key ids of another server: each from the latest response listing it.
            if perKey.isEmpty || server.rawValue == context.app.configuration.serverName {
                wanted.append((server, minimum))
            } else {
                byKey.append((server, perKey))
            }
        }
        var answers = await responses(for: wanted, app: context.app)
        answers += await keyedResponses(for: byKey, app: context.app)
        return .json(["server_keys": .array(answers)])
    }

    /// The responses for the named key ids of each server, fetched concurrently, each signed
    /// by this server.
    static func keyedResponses(for wanted: [(ServerName, [String: Int64])], app: MyelinApp) async -> [JSON] {
        let ownName = app.configuration.serverName
        let found = await withTaskGroup(of: [JSON].self, returning: [JSON].self) { group in
            for (server, criteria) in wanted {
                group.addTask { await app.keyRing.keyResponses(for: server, minimumValidUntil: criteria) }
            }
            var all: [JSON] = []
            for await answers in group { all += answers }
            return all
        }
        return found.compactMap { try? app.signingKey.sign(json: $0, entity: ownName, strict: false) }
    }

    /// The responses for each server, fetched concurrently, each signed by this server.
    static func responses(for wanted: [(ServerName, Int64)], app: MyelinApp) async -> [JSON] {
        let ownName = app.configuration.serverName
        let found = await withTaskGroup(of: JSON?.self, returning: [JSON].self) { group in
            for (server, minimum) in wanted {
                group.addTask {
                    if server.rawValue == ownName {
                        return app.signingKey.serverKeysResponse(serverName: ownName,
                                                                 validUntilTS: Clock.nowMilliseconds() + KeyServer.validityMilliseconds)
                    }
                    return await app.keyRing.keyResponse(for: server, minimumValidUntil: minimum)
                }
            }
            var all: [JSON] = []
            for await answer in group { if let answer { all.append(answer) } }
            return all
        }
        // Our own response is already signed by us; adding the signature again is idempotent.
        return found.compactMap { try? app.signingKey.sign(json: $0, entity: ownName, strict: false) }
    }
}
