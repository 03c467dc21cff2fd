import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

/// Sessions are resident `SessionActor`s: authentication of a resident token reads nothing,
/// every revocation takes effect on the next request, and `actors.sessions.max_resident`
/// bounds what stays resident.
@Suite("Session actors over real sockets")
struct SessionTests {
    static let password = "correct horse"

    static func login(_ client: MatrixTestClient, _ user: String, device: String) async throws -> String {
        let reply = try await client.call("POST", "/login", ["type": "m.login.password", "user": .string(user),
                                                              "password": .string(password), "device_id": .string(device)])
        return try #require(reply.json["access_token"]?.stringValue)
    }

    static func whoami(_ client: MatrixTestClient, _ token: String) async throws -> MatrixTestClient.Reply {
        try await client.call("GET", "/account/whoami", token: token)
    }

    static func isResident(_ server: MyelinServer, _ token: String) -> Bool {
        server.app.accounts.sessions.isResident(tokenHash: Secrets.hash(token))
    }

    @Test func residentSessionAuthenticatesWithoutAStoreRead() async throws {
        try await withMyelinServer { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let token = try #require(alice.token)
            let before = server.database.readCount
            #expect(try await Self.whoami(alice, token).status == 200)
            // The first request reads the token and its user, once. (One more read is allowed
            // in each window: the server's own periodic tasks read the same store meanwhile.)
            #expect((before + 1...before + 2).contains(server.database.readCount))
            #expect(Self.isResident(server, token))
            let resident = server.database.readCount
            for _ in 0..<20 {
                #expect(try await Self.whoami(alice, token).json["user_id"] == "@alice:localhost")
            }
            // Twenty requests that each read would add twenty.
            #expect(server.database.readCount <= resident + 1)
        }
    }

    @Test func everyRevocationTakesEffectOnTheNextRequest() async throws {
        try await withMyelinServer { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice", password: Self.password)
            let main = try #require(alice.token)
            var tokens: [String: String] = [:]
            for device in ["LOGOUT", "DELETED", "OTHER"] {
                tokens[device] = try await Self.login(alice, "alice", device: device)
            }
            func expectResident(_ token: String) async throws {
                #expect(try await Self.whoami(alice, token).status == 200)
                #expect(Self.isResident(server, token))
            }
            func expectRevoked(_ token: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let reply = try await Self.whoami(alice, token)
                #expect(reply.status == 401, sourceLocation: sourceLocation)
                #expect(reply.errcode == "M_UNKNOWN_TOKEN", sourceLocation: sourceLocation)
            }
            for token in [main] + tokens.values { try await expectResident(token) }

            // Logout.
            #expect(try await alice.call("POST", "/logout", .object([:]), token: tokens["LOGOUT"]).status == 200)
            try await expectRevoked(tokens["LOGOUT"]!)
            // Device deletion.
            let auth: JSON = ["type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"],
                              "password": .string(Self.password)]
            #expect(try await alice.call("DELETE", "/devices/DELETED", ["auth": auth]).status == 200)
            try await expectRevoked(tokens["DELETED"]!)
            // A password change logs out the other devices, not the requester's.
            #expect(try await alice.call("POST", "/account/password", ["new_password": .string(Self.password), "auth": auth])
                .status == 200)
            try await expectRevoked(tokens["OTHER"]!)
            try await expectResident(main)
            // Logout of every device.
            let second = try await Self.login(alice, "alice", device: "SECOND")
            try await expectResident(second)
            #expect(try await alice.call("POST", "/logout/all", .object([:])).status == 200)
            try await expectRevoked(main)
            try await expectRevoked(second)
            // Deactivation.
            let third = try await Self.login(alice, "alice", device: "THIRD")
            let fourth = try await Self.login(alice, "alice", device: "FOURTH")
            try await expectResident(third)
            try await expectResident(fourth)
            #expect(try await alice.call("POST", "/account/deactivate", ["auth": auth], token: third).status == 200)
            try await expectRevoked(third)
            try await expectRevoked(fourth)
            #expect(await server.app.accounts.sessions.registry.counters.resident == 0)
        }
    }

    /// The token replaced by `/refresh` keeps working until the new one is first used, then
    /// fails on the very next request.
    @Test func refreshKeepsTheOldTokenUntilTheNewOneIsUsed() async throws {
        try await withMyelinServer { server, port in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice", extra: ["refresh_token": true])
            let old = try #require(alice.token)
            let refresh = try #require(reply.json["refresh_token"]?.stringValue)
            #expect(try await Self.whoami(alice, old).status == 200)
            let refreshed = try await alice.call("POST", "/refresh", ["refresh_token": .string(refresh)], token: .some(nil))
            let new = try #require(refreshed.json["access_token"]?.stringValue)
            #expect(try await Self.whoami(alice, old).status == 200)
            #expect(Self.isResident(server, old))
            #expect(try await Self.whoami(alice, new).status == 200)
            #expect(try await Self.whoami(alice, old).errcode == "M_UNKNOWN_TOKEN")
            #expect(try await Self.whoami(alice, new).status == 200)
        }
    }

    /// Two devices taking turns: with `max_resident: 1` each turn evicts the other device's
    /// session and reads the store; with room for both, only the first turn of each reads.
    @Test(arguments: [(1, 8), (4, 2)])
    func maxResidentDecidesWhatStaysResident(_ maxResident: Int, _ expectedReads: Int) async throws {
        try await withMyelinServer({ $0.actors.sessions.maxResident = maxResident }) { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice", password: Self.password)
            let phone = try await Self.login(alice, "alice", device: "PHONE")
            let laptop = try await Self.login(alice, "alice", device: "LAPTOP")
            let before = server.database.readCount
            for _ in 0..<4 {
                #expect(try await Self.whoami(alice, phone).status == 200)
                #expect(try await Self.whoami(alice, laptop).status == 200)
            }
            #expect(server.database.readCount - before == expectedReads)
        }
    }

    @Test func lastSeenIsShownAtOnce() async throws {
        try await withMyelin { port, _ in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice")
            let device = try #require(reply.json["device_id"]?.stringValue)
            let shown = try await alice.call("GET", "/devices/\(device)")
            #expect(shown.json["last_seen_ip"] == "127.0.0.1")
            let first = try #require(shown.json["last_seen_ts"]?.intValue)
            try await Task.sleep(for: .milliseconds(20))
            let later = try #require(try await alice.call("GET", "/devices/\(device)").json["last_seen_ts"]?.intValue)
            #expect(later > first)
        }
    }
}
