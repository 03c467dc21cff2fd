import Actors
import Matrix
import Persistence
import Synchronization
import Testing
import TestSupport
@testable import App

/// Server-to-server for tests until the real federation client lands: signs each request
/// with a real X-Matrix header (the sending server's key) and sends it over a real socket to
/// the other in-process server's listener, found by server name. A server marked down is
/// unreachable.
final class SignedTestFederation: FederationRequesting {
    let origin: ServerName
    let key: SigningKey
    let peers: Mutex<[ServerName: Int]>
    let down = Mutex<Set<ServerName>>([])

    init(origin: ServerName, key: SigningKey, peers: [ServerName: Int]) {
        self.origin = origin
        self.key = key
        self.peers = Mutex(peers)
    }

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        guard !down.withLock({ $0.contains(destination) }), let port = peers.withLock({ $0[destination] }) else {
            throw FederationRequestError(.unreachable, "\(destination) is down")
        }
        let auth = try FederationRequestSignature.authorization(method: method, uri: path, origin: origin.rawValue,
                                                                destination: destination.rawValue, content: body, key: key)
        let client = try RawClient(port: port)
        var headers = ["Authorization": auth.headerValue]
        if body != nil { headers["Content-Type"] = "application/json" }
        let response = try await client.request(method, path, body: body?.encodedString, headers: headers)
        return FederationReply(status: response.status, json: try? JSON.parse(response.body))
    }
}

/// Two Myelin servers, `alpha.test` and `beta.test`, each on its own socket, federating
/// through `SignedTestFederation`.
func withTwoQueryServers(_ body: (_ alpha: MyelinServer, _ alphaPort: Int, _ beta: MyelinServer, _ betaPort: Int,
                             _ alphaFederation: SignedTestFederation, _ betaFederation: SignedTestFederation) async throws -> Void) async throws {
    try await withMyelinServer({ $0.serverName = "alpha.test" }) { alpha, alphaPort in
        try await withMyelinServer({ $0.serverName = "beta.test" }) { beta, betaPort in
            let a = try ServerName(parsing: "alpha.test"), b = try ServerName(parsing: "beta.test")
            let peers = [a: alphaPort, b: betaPort]
            let alphaFederation = SignedTestFederation(origin: a, key: alpha.app.signingKey, peers: peers)
            let betaFederation = SignedTestFederation(origin: b, key: beta.app.signingKey, peers: peers)
            alpha.app.keyRing.use(alphaFederation)
            alpha.app.roomService.federation.connect(alphaFederation)
            beta.app.keyRing.use(betaFederation)
            beta.app.roomService.federation.connect(betaFederation)
            try await body(alpha, alphaPort, beta, betaPort, alphaFederation, betaFederation)
        }
    }
}

@Suite(.serialized) struct FederationQueryTests {
    /// A signed federation request from `federation`'s server to `destination`.
    func ask(_ federation: SignedTestFederation, _ destination: String, _ method: String, _ path: String,
             _ body: JSON? = nil) async throws -> FederationReply {
        try await federation.request(try ServerName(parsing: destination), method: method, path: path, body: body)
    }

    @Test func queryEndpointsServeLocalUsersAndRoomsToAnAuthenticatedServer() async throws {
        try await withTwoQueryServers { alpha, alphaPort, _, _, _, betaFederation in
            var (alice, _) = try await MatrixTestClient.registered(port: alphaPort, "alice")
            #expect(try await alice.call("PUT", "/profile/@alice:alpha.test/displayname", ["displayname": "Alice A"]).status == 200)
            let room = try await alice.call("POST", "/createRoom", ["room_alias_name": "lobby", "visibility": "public",
                                                                    "name": "The Lobby"])
            let roomID = try #require(room.json["room_id"]?.stringValue)
            let device = try #require(try await alice.call("GET", "/account/whoami").json["device_id"]?.stringValue)
            #expect(try await alice.call("POST", "/keys/upload", [
                "device_keys": KeysTests.deviceKeys("@alice:alpha.test", device),
                "one_time_keys": ["signed_curve25519:AAA": KeysTests.otk("one")],
            ]).status == 200)

            // No signature: 401, over a real socket.
            let raw = try RawClient(port: alphaPort)
            let unsigned = try await raw.request("GET", "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aalpha.test")
            #expect(unsigned.status == 401)
            #expect(unsigned.text.contains("M_UNAUTHORIZED"))
            // Version needs none (spec).
            let version = try await RawClient(port: alphaPort).request("GET", "/_matrix/federation/v1/version")
            #expect(version.status == 200 && version.text.contains("Myelin"))

            let profile = try await ask(betaFederation, "alpha.test", "GET",
                                        "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aalpha.test")
            #expect(profile.status == 200, "\(String(describing: profile.json))")
            #expect(profile.json?["displayname"]?.stringValue == "Alice A")
            let field = try await ask(betaFederation, "alpha.test", "GET",
                                      "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aalpha.test&field=avatar_url")
            #expect(field.json?["displayname"] == nil)
            let nobody = try await ask(betaFederation, "alpha.test", "GET",
                                       "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Aalpha.test")
            #expect(nobody.status == 404)

            let directory = try await ask(betaFederation, "alpha.test", "GET",
                                          "/_matrix/federation/v1/query/directory?room_alias=%23lobby%3Aalpha.test")
            #expect(directory.json?["room_id"]?.stringValue == roomID)
            #expect(directory.json?["servers"]?.arrayValue?.first?.stringValue == "alpha.test")

            let listed = try await ask(betaFederation, "alpha.test", "GET", "/_matrix/federation/v1/publicRooms?limit=10")
            #expect(listed.json?["chunk"]?.arrayValue?.contains { $0["room_id"]?.stringValue == roomID } == true)
            let searched = try await ask(betaFederation, "alpha.test", "POST", "/_matrix/federation/v1/publicRooms",
                                         ["filter": ["generic_search_term": "lobby"]])
            #expect(searched.json?["chunk"]?.arrayValue?.count == 1)

            let devices = try await ask(betaFederation, "alpha.test", "GET", "/_matrix/federation/v1/user/devices/%40alice%3Aalpha.test")
            #expect(devices.json?["user_id"]?.stringValue == "@alice:alpha.test")
            #expect(devices.json?["devices"]?[0]?["device_id"]?.stringValue == device)
            #expect(devices.json?["devices"]?[0]?["keys"]?["device_id"]?.stringValue == device)

            let keys = try await ask(betaFederation, "alpha.test", "POST", "/_matrix/federation/v1/user/keys/query",
                                     ["device_keys": ["@alice:alpha.test": [], "@mallory:beta.test": []]])
            #expect(keys.json?["device_keys"]?["@alice:alpha.test"]?[device] != nil)
            #expect(keys.json?["device_keys"]?["@mallory:beta.test"] == nil)
            #expect(keys.json?["user_signing_keys"] == nil)
            let claimed = try await ask(betaFederation, "alpha.test", "POST", "/_matrix/federation/v1/user/keys/claim",
                                        ["one_time_keys": ["@alice:alpha.test": [device: "signed_curve25519"]]])
            #expect(claimed.json?["one_time_keys"]?["@alice:alpha.test"]?[device]?["signed_curve25519:AAA"] != nil)
            _ = alpha
            alice.token = nil
        }
    }

    @Test func clientQueriesReachTheRemoteServerAndReportItWhenItIsDown() async throws {
        try await withTwoQueryServers { _, alphaPort, _, betaPort, alphaFederation, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: alphaPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: betaPort, "bob")
            #expect(try await bob.call("PUT", "/profile/@bob:beta.test/displayname", ["displayname": "Bob B"]).status == 200)
            let bobDevice = try #require(try await bob.call("GET", "/account/whoami").json["device_id"]?.stringValue)
            #expect(try await bob.call("POST", "/keys/upload", [
                "device_keys": KeysTests.deviceKeys("@bob:beta.test", bobDevice),
                "one_time_keys": ["signed_curve25519:BBB": KeysTests.otk("bee")],
            ]).status == 200)
            let room = try await bob.call("POST", "/createRoom", ["room_alias_name": "hall", "visibility": "public"])
            let roomID = try #require(room.json["room_id"]?.stringValue)

            // Profile, alias and public rooms of beta, asked by a client of alpha.
            let profile = try await alice.call("GET", "/profile/@bob:beta.test")
            #expect(profile.json["displayname"]?.stringValue == "Bob B")
            let name = try await alice.call("GET", "/profile/@bob:beta.test/displayname")
            #expect(name.json["displayname"]?.stringValue == "Bob B")
            let alias = try await alice.call("GET", "/directory/room/%23hall%3Abeta.test")
            #expect(alias.json["room_id"]?.stringValue == roomID)
            #expect(alias.json["servers"]?.arrayValue?.contains("beta.test") == true)
            #expect(try await alice.call("GET", "/directory/room/%23missing%3Abeta.test").status == 404)
            let rooms = try await alice.call("POST", "/publicRooms?server=beta.test", [:])
            #expect(rooms.json["chunk"]?.arrayValue?.contains { $0["room_id"]?.stringValue == roomID } == true)

            // Keys of a remote user, then the same with the remote down: `failures`.
            let keys = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:beta.test": []]])
            #expect(keys.json["device_keys"]?["@bob:beta.test"]?[bobDevice] != nil)
            #expect(keys.json["failures"]?.objectValue?.isEmpty == true)
            let claimed = try await alice.call("POST", "/keys/claim", ["one_time_keys": ["@bob:beta.test": [bobDevice: "signed_curve25519"]]])
            #expect(claimed.json["one_time_keys"]?["@bob:beta.test"]?[bobDevice]?["signed_curve25519:BBB"] != nil)

            alphaFederation.down.withLock { _ = $0.insert(try! ServerName(parsing: "beta.test")) }
            let failed = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:beta.test": [], "@alice:alpha.test": []],
                                                                      "timeout": 2_000])
            #expect(failed.status == 200)
            #expect(failed.json["failures"]?["beta.test"] != nil)
            #expect(failed.json["device_keys"]?["@alice:alpha.test"] != nil)
            #expect(failed.json["device_keys"]?["@bob:beta.test"] == nil)
        }
    }
}
