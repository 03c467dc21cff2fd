import Actors
import Glibc
import Matrix
import Synchronization
import TestSupport
import Testing
import Transport
@testable import App

/// A free TCP port on 127.0.0.1 (bound, read, released), for servers whose name carries it.
func freePort() -> Int { freeTCPPort() }

/// Serves `/.well-known/matrix/server` with a body and headers the test sets, counting hits.
final class WellKnownResponder: HTTPResponder {
    struct Answer { var status = 200; var body = ""; var headers: HTTPHeaders = [:] }
    let answer = Mutex(Answer())
    let hits = Atomic<Int>(0)

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        guard request.head.path == "/.well-known/matrix/server" else {
            return HTTPResponse(status: 404, contentType: "text/plain", bytes: Array("no".utf8))
        }
        hits.add(1, ordering: .relaxed)
        let a = answer.withLock { $0 }
        return HTTPResponse(status: a.status, contentType: "application/json", bytes: Array(a.body.utf8), headers: a.headers)
    }
}

func withWellKnownServer(_ body: (WellKnownResponder, Int) async throws -> Void) async throws {
    let responder = WellKnownResponder()
    let server = HTTPServer(configuration: TransportConfiguration(loops: 1, host: "127.0.0.1", port: 0), responder: responder)
    let port = try await server.start()
    do { try await body(responder, port) } catch {
        server.shutdown()
        await server.waitUntilStopped()
        throw error
    }
    server.shutdown()
    await server.waitUntilStopped()
}

func loopbackHTTPClient(_ ranges: [String] = ["127.0.0.0/8", "::1/128"]) throws -> HTTPClient {
    var configuration = HTTPClientConfiguration()
    configuration.blacklist = IPBlacklist(allowed: ranges.map { IPRange($0)! })
    return try HTTPClient(configuration: configuration)
}

@Suite struct ServerDiscoveryTests {
    @Test func ipLiteralsAndExplicitPortsNeedNoLookup() async throws {
        let client = try loopbackHTTPClient()
        defer { client.shutdown() }
        let discovery = ServerDiscovery(client: client, srv: { _ in
            Issue.record("SRV looked up")
            return []
        })
        #expect(await discovery.resolve(try ServerName(parsing: "127.0.0.1:8000")) ==
                [ResolvedServer(host: "127.0.0.1", port: 8000, hostHeader: "127.0.0.1:8000", tlsServerName: nil)])
        #expect(await discovery.resolve(try ServerName(parsing: "[::1]")) ==
                [ResolvedServer(host: "::1", port: 8448, hostHeader: "[::1]", tlsServerName: nil)])
        #expect(await discovery.resolve(try ServerName(parsing: "example.org:1234")) ==
                [ResolvedServer(host: "example.org", port: 1234, hostHeader: "example.org:1234", tlsServerName: "example.org")])
    }

    @Test func wellKnownDelegationIsFollowedAndCached() async throws {
        try await withWellKnownServer { responder, port in
            responder.answer.withLock {
                $0.body = #"{"m.server": "127.0.0.1:9999"}"#
                $0.headers = ["Cache-Control": "public, max-age=3600"]
            }
            let client = try loopbackHTTPClient()
            defer { client.shutdown() }
            let discovery = ServerDiscovery(client: client, wellKnownScheme: .http, wellKnownPort: port, srv: { _ in [] })
            let expected = [ResolvedServer(host: "127.0.0.1", port: 9999, hostHeader: "127.0.0.1:9999", tlsServerName: nil)]
            #expect(await discovery.resolve(try ServerName(parsing: "localhost")) == expected)
            #expect(await discovery.resolve(try ServerName(parsing: "localhost")) == expected)
            #expect(responder.hits.load(ordering: .relaxed) == 1)
            let entry = discovery.cache.withLock { $0["localhost"] }
            #expect(entry?.delegated == "127.0.0.1:9999")
        }
    }

    @Test func delegatedNameWithoutPortGoesThroughSRV() async throws {
        try await withWellKnownServer { responder, port in
            responder.answer.withLock { $0.body = #"{"m.server": "matrix.example.org"}"# }
            let client = try loopbackHTTPClient()
            defer { client.shutdown() }
            let asked = Mutex<[String]>([])
            let discovery = ServerDiscovery(client: client, wellKnownScheme: .http, wellKnownPort: port, srv: { name in
                asked.withLock { $0.append(name) }
                return name.hasPrefix("_matrix._tcp.") ? [SRVRecord(priority: 1, weight: 1, port: 8443, target: "fed.example.org")] : []
            })
            #expect(await discovery.resolve(try ServerName(parsing: "localhost")) ==
                    [ResolvedServer(host: "fed.example.org", port: 8443, hostHeader: "matrix.example.org", tlsServerName: "matrix.example.org")])
            // _matrix-fed first, then the deprecated _matrix, both on the delegated name.
            #expect(asked.withLock { $0 } == ["_matrix-fed._tcp.matrix.example.org", "_matrix._tcp.matrix.example.org"])
        }
    }

    @Test func noWellKnownFallsBackToSRVThenPort8448AndCachesTheFailure() async throws {
        try await withWellKnownServer { responder, port in
            responder.answer.withLock { $0.status = 404; $0.body = "{}" }
            let client = try loopbackHTTPClient()
            defer { client.shutdown() }
            let discovery = ServerDiscovery(client: client, wellKnownScheme: .http, wellKnownPort: port, srv: { name in
                name == "_matrix-fed._tcp.localhost" ? [SRVRecord(priority: 1, weight: 1, port: 7000, target: "srv.localhost")] : []
            })
            #expect(await discovery.resolve(try ServerName(parsing: "localhost")) ==
                    [ResolvedServer(host: "srv.localhost", port: 7000, hostHeader: "localhost", tlsServerName: "localhost")])
            let plain = ServerDiscovery(client: client, wellKnownScheme: .http, wellKnownPort: port, srv: { _ in [] })
            #expect(await plain.resolve(try ServerName(parsing: "localhost")) ==
                    [ResolvedServer(host: "localhost", port: 8448, hostHeader: "localhost", tlsServerName: "localhost")])
            _ = await plain.resolve(try ServerName(parsing: "localhost"))
            #expect(responder.hits.load(ordering: .relaxed) == 2)  // once per discovery, the failure cached
            let entry = plain.cache.withLock { $0["localhost"] }
            #expect(entry?.delegated == nil && entry != nil)
        }
    }

    @Test func invalidWellKnownBodiesAreIgnored() async throws {
        try await withWellKnownServer { responder, port in
            let client = try loopbackHTTPClient()
            defer { client.shutdown() }
            for body in ["not json", #"{"m.server": 5}"#, #"{"m.server": "bad name!"}"#, String(repeating: " ", count: 60_000) + "{}"] {
                responder.answer.withLock { $0.body = body }
                let discovery = ServerDiscovery(client: client, wellKnownScheme: .http, wellKnownPort: port, srv: { _ in [] })
                #expect(await discovery.resolve(try ServerName(parsing: "localhost")).first?.port == 8448, "\(body.prefix(30))")
            }
        }
    }

    @Test func cacheLifetimes() {
        let h = 3600 * 1000 as Int64
        #expect(ServerDiscovery.cacheLifetime(["Cache-Control": "max-age=600"], now: 0) == 600_000)
        #expect(ServerDiscovery.cacheLifetime(["Cache-Control": "max-age=999999999"], now: 0) == 48 * h)
        #expect(ServerDiscovery.cacheLifetime(["Cache-Control": "no-store"], now: 0) == 0)
        #expect(ServerDiscovery.cacheLifetime([:], now: 0) == 24 * h)
        let at = ServerDiscovery.httpDate("Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(at == 784_111_777_000)
        #expect(ServerDiscovery.cacheLifetime(["Expires": "Sun, 06 Nov 1994 10:49:37 GMT"], now: 784_111_777_000) == 2 * h)
        #expect(ServerDiscovery.httpDate("yesterday") == nil)
    }
}

@Suite struct FederationClientTests {
    /// Server A signs a request to B over a real socket; B's `requireServer` (through a
    /// listener that hands requests to B's app) fetches A's key from A and accepts it.
    @Test func signedRequestAcceptedByRequireServer() async throws {
        let portA = freePort()
        let gatePort = freePort()
        try await withMyelinServer({
            $0.listeners = [.init(host: "127.0.0.1", port: portA)]
            $0.serverName = "127.0.0.1:\(portA)"
        }) { serverA, _ in
            try await withMyelinServer({ $0.serverName = "127.0.0.1:\(gatePort)" }) { serverB, _ in
                let clientB = try loopbackHTTPClient()
                defer { clientB.shutdown() }
                serverB.app.keyRing.use(FederationClient(serverName: try ServerName(parsing: "127.0.0.1:\(gatePort)"),
                                                         signingKey: serverB.app.signingKey, client: clientB, scheme: .http))
                let gate = HTTPServer(configuration: TransportConfiguration(loops: 1, host: "127.0.0.1", port: gatePort),
                                      responder: RequireServerResponder(app: serverB.app))
                _ = try await gate.start()
                let clientA = try loopbackHTTPClient()
                defer { clientA.shutdown() }
                let federation = FederationClient(serverName: try ServerName(parsing: "127.0.0.1:\(portA)"),
                                                  signingKey: serverA.app.signingKey, client: clientA, scheme: .http)
                let destination = try ServerName(parsing: "127.0.0.1:\(gatePort)")
                let reply = try await federation.request(destination, method: "PUT", path: "/_matrix/federation/v1/send/t1?x=%20y",
                                                         body: .object(["pdus": .array([])]))
                #expect(reply.status == 200)
                #expect(reply.json?["origin"]?.stringValue == "127.0.0.1:\(portA)")
                #expect(reply.json?["content"]?["pdus"]?.arrayValue?.isEmpty == true)
                // Another key under A's name is refused.
                let impostor = FederationClient(serverName: try ServerName(parsing: "127.0.0.1:\(portA)"),
                                                signingKey: SigningKey.generate(version: "other"), client: clientA, scheme: .http)
                let refused = try await impostor.request(destination, method: "GET", path: "/_matrix/federation/v1/version", body: nil)
                #expect(refused.status == 401)
                gate.shutdown()
                await gate.waitUntilStopped()
            }
        }
    }

    @Test func blacklistAndDomainWhitelist() async throws {
        try await withWellKnownServer { responder, port in
            let strict = try loopbackHTTPClient(["127.0.0.1/32"])
            defer { strict.shutdown() }
            let origin = try ServerName(parsing: "origin.example")
            // A well-known on 127.0.0.1 that delegates to 127.0.0.2: never connected to.
            responder.answer.withLock { $0.body = #"{"m.server": "127.0.0.2:\#(port)"}"# }
            let discovery = ServerDiscovery(client: strict, wellKnownScheme: .http, wellKnownPort: port, srv: { _ in [] })
            let client = FederationClient(serverName: origin, signingKey: SigningKey.generate(), client: strict,
                                          discovery: discovery, scheme: .http)
            do {
                _ = try await client.request(try ServerName(parsing: "localhost"), method: "GET", path: "/_matrix/federation/v1/version", body: nil)
                Issue.record("reached a blacklisted delegate")
            } catch let error as FederationRequestError {
                #expect(error.kind == .refused)
            }
            // No whitelist at all: loopback refused outright.
            let none = try HTTPClient()
            defer { none.shutdown() }
            let blocked = FederationClient(serverName: origin, signingKey: SigningKey.generate(), client: none, scheme: .http)
            do {
                _ = try await blocked.request(try ServerName(parsing: "127.0.0.1:\(port)"), method: "GET", path: "/x", body: nil)
                Issue.record("reached loopback without a whitelist")
            } catch let error as FederationRequestError {
                #expect(error.kind == .refused)
            }
            let listed = FederationClient(serverName: origin, signingKey: SigningKey.generate(), client: strict,
                                          domainWhitelist: ["allowed.example"], scheme: .http)
            do {
                _ = try await listed.request(try ServerName(parsing: "127.0.0.1:\(port)"), method: "GET", path: "/x", body: nil)
                Issue.record("a domain outside the whitelist")
            } catch let error as FederationRequestError {
                #expect(error.kind == .refused)
            }
        }
    }
}

/// Hands every request to `requireServer` of `app` and answers who sent it (and the body).
struct RequireServerResponder: HTTPResponder {
    let app: MyelinApp

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        let context = RequestContext(request: request, parameters: [:], app: app)
        do {
            let origin = try await requireServer(context)
            let content = try? JSON.parse(try await request.body.collect())
            let json = JSON.object(["origin": .string(origin.rawValue), "content": content ?? .null])
            return HTTPResponse(contentType: "application/json", bytes: json.encoded())
        } catch {
            return HTTPResponse(status: 401, contentType: "application/json", bytes: Array(#"{"errcode":"M_UNAUTHORIZED"}"#.utf8))
        }
    }
}

@Suite struct FederationClientConfigurationTests {
    @Test func keysAreReadAndRangesValidated() throws {
        let configuration = try ConfigurationLoader.load(yaml: """
            federation:
              verify_certificates: false
              extra_ca_files: [/etc/ca.pem]
              ip_range_whitelist: [127.0.0.0/8, "::1/128"]
              domain_whitelist: [example.org]
            """)
        #expect(configuration.federation.verifyCertificates == false)
        #expect(configuration.federation.extraCAFiles == ["/etc/ca.pem"])
        #expect(configuration.federation.ipRangeWhitelist == ["127.0.0.0/8", "::1/128"])
        #expect(configuration.federation.domainWhitelist == ["example.org"])
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.load(yaml: "federation:\n  ip_range_whitelist: [127.0.0.0/33]")
        }
        #expect(Configuration().federation.verifyCertificates)
    }
}
