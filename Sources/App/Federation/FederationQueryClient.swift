import Actors
import Matrix
import Persistence

/// The client side of the federation queries: what the client-server handlers ask of
/// remote servers (keys, profiles, aliases, public rooms), each with a timeout, through the
/// `FederationRequesting` connected to `FederationDestinations`.
extension FederationQueries {
    /// One request to `server` answered within `timeoutMs`: the JSON of a 200. A non-200
    /// answer is rethrown as its Matrix error (404 stays 404); no answer is 502/504.
    static func remote(_ app: MyelinApp, _ server: ServerName, method: String, path: String, body: JSON? = nil,
                       timeoutMs: Int64 = defaultTimeoutMs) async throws -> JSON {
        guard app.configuration.federation.enabled, let requester = app.roomService.federation.requester else {
            throw MatrixError(.unknown, "Federation is not available", status: 503)
        }
        let timeout = min(max(timeoutMs, 1), 60_000)
        let reply = try await withThrowingTaskGroup(of: FederationReply?.self) { group in
            group.addTask { try await requester.request(server, method: method, path: path, body: body) }
            group.addTask {
                try await Task.sleep(for: .milliseconds(timeout))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let reply = first else {
                throw MatrixError(.unknown, "\(server) did not answer in time", status: 504)
            }
            return reply
        }
        guard reply.status == 200, let json = reply.json else {
            if reply.status == 404 { throw MatrixError(.notFound, "Not found on \(server)") }
            let code = reply.json?["errcode"]?.stringValue ?? "M_UNKNOWN"
            throw MatrixError(.unknown, "\(server) answered \(reply.status) \(code.prefix(64))", status: 502)
        }
        return json
    }

    /// `failures` entry for a server that did not answer (spec: `/keys/query` "failures").
    static func failure(_ error: any Error) -> JSON {
        if let error = error as? MatrixError { return ["status": .int(Int64(error.status)), "message": .string(error.message)] }
        return ["status": 503, "message": "Not reachable"]
    }

    /// Asks each remote server for its users' keys (concurrently) and merges the answers
    /// into `response`; servers that failed are added to the returned `failures`.
    static func queryRemoteKeys(_ app: MyelinApp, _ byServer: [ServerName: [String: JSON]], timeout: Int64?,
                                into response: inout [String: JSON], failures: [String: JSON]) async throws -> [String: JSON] {
        var failures = failures
        let answers = await ask(app, byServer, path: "/_matrix/federation/v1/user/keys/query",
                                field: "device_keys", timeout: timeout)
        for (server, answer) in answers {
            switch answer {
            case .failure(let error): failures[server.rawValue] = failure(error)
            case .success(let json):
                // Only the server's own users are taken from its answer.
                for field in ["device_keys", "master_keys", "self_signing_keys"] {
                    guard let entries = json[field]?.objectValue else { continue }
                    var merged = response[field]?.objectValue ?? [:]
                    for (user, value) in entries where byServer[server]?[user] != nil { merged[user] = value }
                    response[field] = .object(merged)
                }
            }
        }
        return failures
    }

    /// `/keys/claim` for remote users: `keys` gains their claimed keys.
    static func claimRemoteKeys(_ app: MyelinApp, _ byServer: [ServerName: [String: JSON]], timeout: Int64?,
                                into keys: inout [String: JSON], failures: [String: JSON]) async throws -> [String: JSON] {
        var failures = failures
        let answers = await ask(app, byServer, path: "/_matrix/federation/v1/user/keys/claim",
                                field: "one_time_keys", timeout: timeout)
        for (server, answer) in answers {
            switch answer {
            case .failure(let error): failures[server.rawValue] = failure(error)
            case .success(let json):
                for (user, value) in json["one_time_keys"]?.objectValue ?? [:] where byServer[server]?[user] != nil {
                    keys[user] = value
                }
            }
        }
        return failures
    }

    private static func ask(_ app: MyelinApp, _ byServer: [ServerName: [String: JSON]], path: String, field: String,
                            timeout: Int64?) async -> [(ServerName, Result<JSON, any Error>)] {
        let timeoutMs = timeout ?? defaultTimeoutMs
        return await withTaskGroup(of: (ServerName, Result<JSON, any Error>).self) { group in
            for (server, users) in byServer.prefix(100) {
                group.addTask {
                    do {
                        let body: JSON = [field: .object(users)]
                        return (server, .success(try await remote(app, server, method: "POST", path: path, body: body,
                                                                  timeoutMs: timeoutMs)))
                    } catch {
                        return (server, .failure(error))
                    }
                }
            }
            var answers: [(ServerName, Result<JSON, any Error>)] = []
            for await answer in group { answers.append(answer) }
            return answers
        }
    }

    /// A remote user's profile (`query/profile`), `field` nil for all of it.
    static func remoteProfile(_ app: MyelinApp, _ user: UserID, field: String? = nil) async throws -> JSON {
        var path = "/_matrix/federation/v1/query/profile?user_id=" + percentEncoded(user.rawValue)
        if let field { path += "&field=" + percentEncoded(field) }
        return try await remote(app, user.serverName, method: "GET", path: path)
    }

    /// A remote server's public rooms (`POST publicRooms`, forwarding the client's body).
    static func remotePublicRooms(_ app: MyelinApp, _ server: ServerName, body: JSON) async throws -> JSON {
        try await remote(app, server, method: "POST", path: "/_matrix/federation/v1/publicRooms", body: body)
    }

    /// Query-string encoding (RFC 3986 unreserved characters kept).
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}

extension MyelinApp {
    /// The room an alias names and servers to join it through: local aliases from the
    /// directory, remote ones through `query/directory` on the alias's server (used by
    /// joins by alias and by the client directory lookup).
    func resolveRoomAlias(_ alias: RoomAlias) async throws -> (roomID: RoomID, servers: [ServerName]) {
        if alias.serverName.rawValue == configuration.serverName {
            guard let found = try await database.directory.alias(alias) else {
                throw MatrixError(.notFound, "Room alias \(alias) not found")
            }
            return (found.roomID, try await FederationQueries.servers(of: found.roomID, self))
        }
        let path = "/_matrix/federation/v1/query/directory?room_alias=" + FederationQueries.percentEncoded(alias.rawValue)
        let json = try await FederationQueries.remote(self, alias.serverName, method: "GET", path: path)
        guard let text = json["room_id"]?.stringValue, let roomID = try? RoomID(parsing: text) else {
            throw MatrixError(.unknown, "\(alias.serverName) answered an invalid room id", status: 502)
        }
        var servers = (json["servers"]?.arrayValue ?? []).prefix(100).compactMap { $0.stringValue.flatMap { try? ServerName(parsing: $0) } }
        if !servers.contains(alias.serverName) { servers.insert(alias.serverName, at: 0) }
        return (roomID, servers)
    }
}
