import Actors
import Logging
import Matrix
import Persistence
import Synchronization
import Testing
import TestSupport
import Transport
@testable import App

/// A test-only `FederationRequesting` over plain HTTP to 127.0.0.1 (the real client, with
/// discovery and TLS, is the App's federation client): server names map to local ports;
/// every request is signed with X-Matrix by `origin`.
struct PlainHTTPFederation: FederationRequesting {
    let origin: String
    let key: SigningKey
    let ports: [String: Int]

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        guard let port = ports[destination.rawValue] else { throw FederationRequestError(.unreachable, "\(destination)") }
        let auth = try FederationRequestSignature.authorization(method: method, uri: path, origin: origin,
                                                                destination: destination.rawValue, content: body, key: key)
        let client: RawClient
        do { client = try RawClient(port: port) } catch { throw FederationRequestError(.unreachable, "\(error)") }
        var headers = ["Authorization": auth.headerValue]
        if body != nil { headers["Content-Type"] = "application/json" }
        let response = try await client.request(method, path, body: body.map(\.encodedString), headers: headers)
        return FederationReply(status: response.status, json: try? JSON.parse(response.body))
    }
}

/// Serves the app, plus one route that only authenticates its caller (`requireServer`) and
/// records who called: the stand-in for a federation endpoint that changes something.
final class AuthProbe: HTTPResponder {
    let app: MyelinApp
    let accepted = Mutex<[String]>([])
    static let path = "/_matrix/federation/v1/test_probe"

    init(app: MyelinApp) { self.app = app }

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        guard request.head.path == Self.path else { return await app.respond(to: request) }
        do {
            let origin = try await requireServer(RequestContext(request: request, parameters: [:], app: app))
            accepted.withLock { $0.append(origin.rawValue) }
            return .json(["origin": .string(origin.rawValue)])
        } catch let error as MatrixError {
            return .matrixError(error)
        } catch {
            return .matrixError(MatrixError(.unknown, "\(error)"))
        }
    }
}

@Suite("Federation: keys, notary and X-Matrix over real sockets")
struct FederationAuthTests {
    /// Two servers, a.test and b.test, each a real MyelinApp on its own port; A fetches B's
    /// keys over HTTP. `body` gets both servers, A's probe port and the probe.
    func withTwoServers(_ body: (MyelinServer, Int, MyelinServer, Int, Int, AuthProbe) async throws -> Void) async throws {
        try await withMyelinServer({ $0.serverName = "b.test" }) { b, bPort in
            try await withMyelinServer({ $0.serverName = "a.test" }) { a, aPort in
                a.app.keyRing.use(PlainHTTPFederation(origin: "a.test", key: a.app.signingKey, ports: ["a.test": aPort, "b.test": bPort]))
                b.app.keyRing.use(PlainHTTPFederation(origin: "b.test", key: b.app.signingKey, ports: ["a.test": aPort, "b.test": bPort]))
                let probe = AuthProbe(app: a.app)
                var transport = a.configuration.transport
                transport.host = "127.0.0.1"
                transport.port = 0
                let server = HTTPServer(configuration: transport, responder: probe)
                let probePort = try await server.start()
                do { try await body(a, aPort, b, bPort, probePort, probe) } catch {
                    server.shutdown(); await server.waitUntilStopped(); throw error
                }
                server.shutdown()
                await server.waitUntilStopped()
            }
        }
    }

    func send(_ port: Int, _ method: String, _ target: String, body: JSON? = nil, authorization: String?) async throws -> (Int, JSON) {
        let client = try RawClient(port: port)
        var headers: [String: String] = [:]
        if let authorization { headers["Authorization"] = authorization }
        let response = try await client.request(method, target, body: body.map(\.encodedString), headers: headers)
        return (response.status, (try? JSON.parse(response.body)) ?? .null)
    }

    func header(_ method: String, _ uri: String, body: JSON? = nil, origin: String = "b.test", destination: String = "a.test",
                key: SigningKey) throws -> String {
        try FederationRequestSignature.authorization(method: method, uri: uri, origin: origin, destination: destination,
                                                     content: body, key: key).headerValue
    }

    @Test func badOrMissingSignaturesGet401AndChangeNothing() async throws {
        try await withTwoServers { a, _, b, _, probePort, probe in
            let path = AuthProbe.path
            let bKey = b.app.signingKey
            // Correctly signed requests pass, A fetching B's key over HTTP on the way.
            var (status, json) = try await send(probePort, "GET", path, authorization: try header("GET", path, key: bKey))
            #expect(status == 200, "\(json)")
            (status, json) = try await send(probePort, "GET", path + "?x=1", authorization: try header("GET", path + "?x=1", key: bKey))
            #expect(status == 200 && json["origin"]?.stringValue == "b.test", "\(json)")
            let content: JSON = ["pdus": [], "edus": []]
            (status, _) = try await send(probePort, "PUT", path, body: content, authorization: try header("PUT", path, body: content, key: bKey))
            #expect(status == 200)
            #expect(try await ServerKeyStore(database: a.database).keys(of: "b.test").map(\.keyID) == [bKey.keyID])

            // Every defect: 401 M_UNAUTHORIZED.
            let forger = try SigningKey(seed: SigningKey.generate().seed, version: bKey.version)
            var unknownKey = try FederationRequestSignature.authorization(method: "GET", uri: path, origin: "b.test", destination: "a.test",
                                                                          content: nil, key: bKey)
            unknownKey.keyID = "ed25519:nope"
            let refused: [(String, String, JSON?, String?)] = [
                ("GET", path, nil, nil),                                                         // missing
                ("GET", path, nil, "Bearer abc"),                                                // other scheme
                ("GET", path, nil, "X-Matrix origin=b.test,key=ed25519:x"),                      // malformed
                ("GET", path, nil, try header("GET", path, key: forger)),                        // wrong key
                ("GET", path, nil, try header("GET", path, destination: "c.test", key: bKey)),   // other destination
                ("GET", path + "?x=2", nil, try header("GET", path + "?x=1", key: bKey)),        // other URI
                ("POST", path, nil, try header("GET", path, key: bKey)),                         // other method
                ("PUT", path, ["pdus": [1]], try header("PUT", path, body: content, key: bKey)), // other body
                ("GET", path, nil, unknownKey.headerValue),                                      // unknown key ID
                ("GET", path, nil, try header("GET", path, origin: "d.test", key: bKey)),        // unreachable origin
            ]
            for (method, target, body, authorization) in refused {
                (status, json) = try await send(probePort, method, target, body: body, authorization: authorization)
                #expect(status == 401, "\(method) \(target) \(authorization ?? "-")")
                #expect(json["errcode"]?.stringValue == "M_UNAUTHORIZED")
            }
            #expect(probe.accepted.withLock { $0 } == ["b.test", "b.test", "b.test"])
        }
    }

    @Test func federationOffOrOutsideTheDomainWhitelistIs403() async throws {
        let key = SigningKey.generate()
        let path = "/_matrix/federation/v1/query/profile?user_id=%40x%3Aa.test"
        for (enabled, whitelist) in [(false, [String]()), (true, ["c.test"])] {
            try await withMyelinServer({
                $0.serverName = "a.test"
                $0.federation.enabled = enabled
                $0.federation.domainWhitelist = whitelist
            }) { _, port in
                let (status, json) = try await send(port, "GET", path, authorization: try header("GET", path, key: key))
                #expect(status == 403, "enabled \(enabled), whitelist \(whitelist): \(json)")
                #expect(json["errcode"]?.stringValue == "M_FORBIDDEN")
            }
        }
    }

    @Test func notaryServesOwnAndRemoteKeysSignedByItself() async throws {
        try await withTwoServers { a, aPort, b, _, _, _ in
            let aKey = a.app.signingKey, bKey = b.app.signingKey
            // Our own keys.
            var (status, json) = try await send(aPort, "GET", "/_matrix/key/v2/query/a.test", authorization: nil)
            #expect(status == 200)
            let own = try #require(json["server_keys"]?[0])
            #expect(try ServerKeys(response: own, expectedServerName: "a.test").verifyKeys[aKey.keyID] == aKey.verifyKey)
            // Another server's, fetched and signed by both.
            (status, json) = try await send(aPort, "GET", "/_matrix/key/v2/query/b.test?minimum_valid_until_ts=0", authorization: nil)
            let remote = try #require(json["server_keys"]?[0])
            #expect(try ServerKeys(response: remote, expectedServerName: "b.test").verifyKeys[bKey.keyID] == bKey.verifyKey)
            try JSONSignatures.verify(remote, entity: "a.test", keyID: aKey.keyID, key: aKey.verifyKey)
            // Batch: unknown servers are left out.
            let query: JSON = ["server_keys": ["a.test": [:], "b.test": [bKey.keyID: ["minimum_valid_until_ts": 0]], "nowhere.test": [:]]]
            (status, json) = try await send(aPort, "POST", "/_matrix/key/v2/query", body: query, authorization: nil)
            #expect(status == 200)
            let names = Set((json["server_keys"]?.arrayValue ?? []).compactMap { $0["server_name"]?.stringValue })
            #expect(names == ["a.test", "b.test"])
            for entry in json["server_keys"]?.arrayValue ?? [] {
                try JSONSignatures.verify(entry, entity: "a.test", keyID: aKey.keyID, key: aKey.verifyKey)
            }
            (status, json) = try await send(aPort, "POST", "/_matrix/key/v2/query", body: ["server_keys": [1]], authorization: nil)
            #expect(status == 400 && json["errcode"]?.stringValue == "M_BAD_JSON")
            (status, _) = try await send(aPort, "GET", "/_matrix/key/v2/query/not%20a%20name", authorization: nil)
            #expect(status == 400)

            // A third server that cannot reach b.test learns its key through A as notary.
            let c = ServerKeyRing(serverName: try ServerName(parsing: "c.test"), signingKey: SigningKey.generate(),
                                  notaries: [try ServerName(parsing: "a.test")])
            c.use(PlainHTTPFederation(origin: "c.test", key: SigningKey.generate(), ports: ["a.test": aPort]))
            let learned = try await c.verifyKey(server: try ServerName(parsing: "b.test"), keyID: bKey.keyID, validAt: c.now())
            #expect(learned == bKey.verifyKey)
        }
    }
}

@Suite("Configuration: federation keys")
struct FederationKeysConfigurationTests {
    @Test func trustedKeyServersDefaultToNoneAndAreValidated() throws {
        #expect(Configuration().federation.trustedKeyServers.isEmpty)
        let read = try ConfigurationLoader.load(yaml: "federation:\n  trusted_key_servers: [matrix.org, \"notary.example:8448\"]\n")
        #expect(read.federation.trustedKeyServers == ["matrix.org", "notary.example:8448"])
        #expect(throws: (any Error).self) { try ConfigurationLoader.load(yaml: "federation:\n  trusted_key_servers: [\"bad name\"]\n") }
        #expect(throws: (any Error).self) { try ConfigurationLoader.load(yaml: "server_name: \"a:b:c\"\n") }
    }
}
