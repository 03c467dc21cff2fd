import Glibc
import Matrix
import Persistence
import Testing
import StorageTestSupport
import TestSupport
@testable import App

/// The security extension, rate-limit overrides and registration tokens over real sockets, on
/// SQLite and (with `scripts/with-postgres.sh`) PostgreSQL: a blocked address is closed at
/// accept (from 127.0.0.2, a second loopback address, while the admin stays on 127.0.0.1) and
/// stays blocked across a restart on the same database; reputation after 20 failed logins;
/// the event log; a user over the message limit is served once overridden; a registration
/// with a stored token.
@Suite("Admin security")
struct AdminSecurityTests {
    static let admin = "/_synapse/admin/v1"

    /// Runs `body` with a configuration step that points servers at one database of
    /// `backend` (so that several servers in turn share it), then drops it.
    static func withDatabase(_ backend: String, _ body: (@escaping @Sendable (inout Configuration) -> Void) async throws -> Void) async throws {
        let directory = makeTemporaryDirectory()
        guard backend == "postgres", Environment.postgres != nil else {
            return try await body { $0.dataDirectory = directory }
        }
        try await withPostgresSchema { conninfo in
            try await body {
                $0.dataDirectory = directory
                $0.database.backend = .postgres
                $0.database.postgresConninfo = conninfo
                $0.database.postgresPoolSize = 2
            }
        }
    }

    /// A request from `source`: its response, or nil when the connection was closed without a
    /// byte of answer.
    static func request(_ port: Int, from source: String, _ method: String = "GET", _ target: String = "/_matrix/client/versions",
                        body: String? = nil) async throws -> RawClient.Response? {
        let client = try RawClient(port: port, source: source)
        var text = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        client.send(text)
        guard await client.fillAsync() else {
            #expect(client.buffer.isEmpty)
            return nil
        }
        return try await client.read()
    }

    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<150 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }

    @Test(arguments: MediaTest.backends)
    func blockedAddressIsRefusedAtAcceptAcrossARestartUntilUnblocked(_ backend: String) async throws {
        try await Self.withDatabase(backend) { database in
            var adminToken = ""
            try await withMyelinServer({ database(&$0); $0.registration.sharedSecret = "s3cret" }) { server, port in
                adminToken = try await RequestContextAuthTests.registerAdmin(port: port, "root")
                let admin = try MatrixTestClient(port: port, token: adminToken)
                #expect(try await Self.request(port, from: "127.0.0.2")?.status == 200)

                // Bad input: no ip, not an address, expiry in the past, both expiries.
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block", [:]).status == 400)
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block", ["ip": "300.1.1.1"]).errcode == "M_INVALID_PARAM")
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block", ["ip": "10.0.0.0/33"]).errcode == "M_INVALID_PARAM")
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block", ["ip": "10.0.0.1", "expires_at": 5]).status == 400)
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block",
                                             ["ip": "10.0.0.1", "duration_ms": 5, "expires_at": 99_999_999_999_999]).status == 400)

                let blocked = try await admin.call("POST", "\(Self.admin)/security/ip/block", ["ip": "127.0.0.2", "reason": "spam"])
                #expect(blocked.status == 200)
                #expect(blocked.json["blocked"] == true)
                // A range (host bits cleared) and an IPv6 range with an expiry.
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block", ["ip": "198.51.100.7/24"]).json["range"] == "198.51.100.0/24")
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block",
                                             ["ip": "2001:db8::/32", "duration_ms": 3_600_000]).status == 200)

                let parsed = server.servers[0].requestsParsed
                for _ in 0..<3 { #expect(try await Self.request(port, from: "127.0.0.2") == nil) }
                #expect(server.app.security.addressFilter.refusedConnections == 3)
                #expect(server.servers[0].requestsParsed == parsed)
                // The admin, on 127.0.0.1, is served.
                let list = try await admin.call("GET", "\(Self.admin)/security/ip/blocks")
                let blocks = list.json["blocks"]?.arrayValue ?? []
                #expect(blocks.count == 3)
                let entry = blocks.first { $0["ip"] == "127.0.0.2" }
                #expect(entry?["reason"] == "spam")
                #expect(entry?["blocked_by"] == "@root:localhost")
                #expect(entry?["blocked_at"]?.intValue ?? 0 > 0)
                #expect(blocks.first { $0["range"] == "2001:db8::/32" }?["expires_at"]?.intValue ?? 0 > Clock.nowMilliseconds())
                let paged = try await admin.call("GET", "\(Self.admin)/security/ip/blocks?limit=2")
                #expect(paged.json["blocks"]?.arrayValue?.count == 2)
                #expect(paged.json["next_token"] == "2")
                #expect(paged.json["total"] == 3)
                let reputation = try await admin.call("GET", "\(Self.admin)/security/ip/reputation/127.0.0.2")
                #expect(reputation.json["blocked"] == true)
            }
            // Restart on the same database: still refused before anyone asks anything.
            try await withMyelinServer({ database(&$0); $0.registration.sharedSecret = "s3cret" }) { server, port in
                #expect(try await Self.request(port, from: "127.0.0.2") == nil)
                #expect(server.app.security.addressFilter.refusedConnections == 1)
                let admin = try MatrixTestClient(port: port, token: adminToken)
                let unblocked = try await admin.call("POST", "\(Self.admin)/security/ip/unblock", ["ip": "127.0.0.2"])
                #expect(unblocked.json["unblocked"] == true)
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/unblock", ["ip": "127.0.0.2"]).json["unblocked"] == false)
                #expect(try await Self.request(port, from: "127.0.0.2")?.status == 200)

                // A block with a duration stops applying when it expires, without a restart
                // (5 s: long enough that the request right after the block is inside it even on
                // a loaded machine, within `eventually`'s 15 s).
                #expect(try await admin.call("POST", "\(Self.admin)/security/ip/block", ["ip": "127.0.0.0/30", "duration_ms": 5000]).status == 200)
                #expect(try await Self.request(port, from: "127.0.0.2") == nil)
                #expect(try await Self.eventually { try await Self.request(port, from: "127.0.0.2")?.status == 200 })

                // The log: blocks, unblocks and every admin write, newest first, paged.
                let events = try await admin.call("GET", "\(Self.admin)/security/events?limit=100")
                let types = events.json["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue } ?? []
                #expect(types.contains("ip_blocked"))
                #expect(types.contains("ip_unblocked"))
                let actions = events.json["events"]?.arrayValue?.filter { $0["type"] == "admin_action" } ?? []
                #expect(actions.contains { $0["user_id"] == "@root:localhost" && $0["details"]?["path"] == "/_synapse/admin/v1/security/ip/unblock" })
                let ids = events.json["events"]?.arrayValue?.compactMap { $0["id"]?.intValue } ?? []
                #expect(ids == ids.sorted(by: >))
                let first = try await admin.call("GET", "\(Self.admin)/security/events?limit=1&type=ip_blocked")
                let next = try #require(first.json["next_token"]?.stringValue)
                let second = try await admin.call("GET", "\(Self.admin)/security/events?limit=1&type=ip_blocked&from=\(next)")
                #expect(second.json["events"]?[0]?["id"]?.intValue ?? .max < Int64(next) ?? 0)
                #expect(second.json["events"]?[0]?["type"] == "ip_blocked")
                #expect(try await admin.call("GET", "\(Self.admin)/security/events?limit=0").status == 400)
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func reputationRisesAfterTwentyFailedLogins(_ backend: String) async throws {
        try await MediaTest.withServer(backend, { $0.registration.sharedSecret = "s3cret"; $0.security.autoBlockScore = 0 }) { server, port in
            let adminToken = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            let admin = try MatrixTestClient(port: port, token: adminToken)
            let clean = try await admin.call("GET", "\(Self.admin)/security/ip/reputation/127.0.0.2")
            #expect(clean.json["score"] == 0)
            #expect(clean.json["failed_logins"] == 0)
            for i in 0..<20 {
                let body = #"{"type":"m.login.password","identifier":{"type":"m.id.user","user":"nobody\#(i)"},"password":"x"}"#
                #expect(try await Self.request(port, from: "127.0.0.2", "POST", "/_matrix/client/v3/login", body: body)?.status == 403)
            }
            // Malformed bodies count too, and so do requests the parser refuses.
            #expect(try await Self.request(port, from: "127.0.0.2", "POST", "/_matrix/client/v3/login", body: "{not json")?.status == 400)
            let garbage = try RawClient(port: port, source: "127.0.0.2")
            garbage.send("GET /\u{1}bad HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await garbage.read().status == 400)
            let after = try await admin.call("GET", "\(Self.admin)/security/ip/reputation/127.0.0.2")
            #expect(after.json["failed_logins"] == 20)
            #expect(after.json["login_attempts"] == 20)
            #expect(after.json["malformed_requests"] == 2)
            let score = after.json["score"]?.intValue ?? 0
            #expect(score >= 62 && score <= 64)
            #expect(after.json["last_seen"]?.intValue ?? 0 > 0)
            #expect(try await admin.call("GET", "\(Self.admin)/security/ip/reputation/::ffff:127.0.0.2").json["failed_logins"] == 20)
            #expect(try await admin.call("GET", "\(Self.admin)/security/ip/reputation/not-an-ip").errcode == "M_INVALID_PARAM")
            let events = try await admin.call("GET", "\(Self.admin)/security/events?type=login_failed&limit=50")
            let failures = events.json["events"]?.arrayValue ?? []
            #expect(failures.count == 20)
            #expect(failures.allSatisfy { $0["ip"] == "127.0.0.2" })
            #expect(failures.contains { $0["user_id"] == "nobody7" })
            #expect(events.json["total"] == 20)
            _ = server
        }
    }

    @Test func addressOverTheAutoBlockScoreIsBlocked() async throws {
        try await withMyelinServer({ $0.security.autoBlockScore = 10; $0.security.autoBlockDurationSeconds = 600 }) { server, port in
            for _ in 0..<4 {
                let body = #"{"type":"m.login.password","user":"ghost","password":"x"}"#
                _ = try await Self.request(port, from: "127.0.0.3", "POST", "/_matrix/client/v3/login", body: body)
            }
            #expect(try await Self.eventually { try await Self.request(port, from: "127.0.0.3") == nil })
            let block = server.app.security.blocks().first { $0.range == "127.0.0.3/32" }
            #expect(block?.expiresTs ?? 0 > Clock.nowMilliseconds())
            #expect(try await Self.request(port, from: "127.0.0.1")?.status == 200)
        }
    }

    @Test(arguments: MediaTest.backends)
    func messageRateLimitOverride(_ backend: String) async throws {
        try await MediaTest.withServer(backend, {
            $0.registration.sharedSecret = "s3cret"
            $0.rateLimits.enabled = true
            $0.rateLimits.messages = .init(perSecond: 0.01, burst: 3)
        }) { server, port in
            let adminToken = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            let admin = try MatrixTestClient(port: port, token: adminToken)
            let name = MediaTest.uniqueName("alice")
            let alice = try await MatrixTestClient.registered(port: port, name).client
            let userID = "@\(name):localhost"
            let room = try #require(try await alice.call("POST", "/createRoom", .object([:])).json["room_id"]?.stringValue)
            func send(_ txn: String) async throws -> Int {
                try await alice.call("PUT", "/rooms/\(RoomTests.path(room))/send/m.room.message/\(txn)", ["msgtype": "m.text", "body": "hi"]).status
            }
            var statuses: [Int] = []
            for i in 0..<4 { statuses.append(try await send("a\(i)")) }
            #expect(statuses.contains(429))
            // Anonymous and non-admin callers are refused; unknown and remote users are not found.
            #expect(try await alice.call("POST", "\(Self.admin)/users/\(userID)/override_ratelimit", [:]).status == 403)
            #expect(try await admin.call("GET", "\(Self.admin)/users/\(userID)/override_ratelimit").json == .object([:]))
            #expect(try await admin.call("POST", "\(Self.admin)/users/@nobody:localhost/override_ratelimit", [:]).status == 404)
            #expect(try await admin.call("POST", "\(Self.admin)/users/@x:elsewhere.org/override_ratelimit", [:]).status == 400)
            #expect(try await admin.call("POST", "\(Self.admin)/users/\(userID)/override_ratelimit", ["messages_per_second": -1]).status == 400)
            let set = try await admin.call("POST", "\(Self.admin)/users/\(userID)/override_ratelimit",
                                           ["messages_per_second": 0, "burst_count": 0])
            #expect(set.json == ["messages_per_second": 0, "burst_count": 0])
            for i in 0..<8 { #expect(try await send("b\(i)") == 200) }
            // Stored: the store answers what the limiter applies.
            #expect(try await server.app.database.security.rateLimitOverride(userID)?.messagesPerSecond == 0)
            #expect(try await admin.call("GET", "\(Self.admin)/users/\(userID)/override_ratelimit").json["burst_count"] == 0)
            // The 429s were noted against the address.
            let reputation = try await admin.call("GET", "\(Self.admin)/security/ip/reputation/127.0.0.1")
            #expect(reputation.json["rate_limited"]?.intValue ?? 0 >= 1)
            #expect(try await admin.call("DELETE", "\(Self.admin)/users/\(userID)/override_ratelimit").status == 200)
            #expect(try await admin.call("GET", "\(Self.admin)/users/\(userID)/override_ratelimit").json == .object([:]))
            var after: [Int] = []
            for i in 0..<4 { after.append(try await send("c\(i)")) }
            #expect(after.contains(429))
            // An override written by another process sharing the database applies at the
            // upkeep's next re-read (run here at once).
            try await server.app.database.security.setRateLimitOverride(userID, messagesPerSecond: 0, burstCount: 0)
            try await server.app.accounts.rateLimiter.loadOverrides(from: server.app.database.security)
            for i in 0..<4 { #expect(try await send("d\(i)") == 200) }
        }
    }

    @Test(arguments: MediaTest.backends)
    func registrationWithAStoredToken(_ backend: String) async throws {
        try await MediaTest.withServer(backend, { $0.registration.sharedSecret = "s3cret"; $0.security.registrationRequiresToken = true }) { _, port in
            let adminToken = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            let admin = try MatrixTestClient(port: port, token: adminToken)
            let tokens = "\(Self.admin)/registration_tokens"
            let generated = try await admin.call("POST", "\(tokens)/new", ["uses_allowed": 1, "length": 20])
            #expect(generated.status == 200)
            let once = try #require(generated.json["token"]?.stringValue)
            #expect(once.utf8.count == 20)
            #expect(generated.json["pending"] == 0)
            #expect(generated.json["completed"] == 0)
            #expect(generated.json["expiry_time"] == .null)
            let later = Clock.nowMilliseconds() + 3_600_000
            let named = try await admin.call("POST", "\(tokens)/new", ["token": "Team.a_b~c-1", "expiry_time": .int(later)])
            #expect(named.json["token"] == "Team.a_b~c-1")
            #expect(named.json["uses_allowed"] == .null)
            // Bad input.
            #expect(try await admin.call("POST", "\(tokens)/new", ["token": "Team.a_b~c-1"]).errcode == "M_INVALID_PARAM")
            #expect(try await admin.call("POST", "\(tokens)/new", ["token": "no spaces"]).status == 400)
            #expect(try await admin.call("POST", "\(tokens)/new", ["token": .string(String(repeating: "a", count: 65))]).status == 400)
            #expect(try await admin.call("POST", "\(tokens)/new", ["length": 65]).status == 400)
            #expect(try await admin.call("POST", "\(tokens)/new", ["uses_allowed": -1]).status == 400)
            #expect(try await admin.call("POST", "\(tokens)/new", ["expiry_time": 1000]).status == 400)
            #expect(try await admin.call("GET", "\(tokens)").json["registration_tokens"]?.arrayValue?.count == 2)

            let anonymous = try MatrixTestClient(port: port)
            #expect(try await anonymous.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=\(once)").json["valid"] == true)
            #expect(try await anonymous.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=nope").json["valid"] == false)
            // Registration asks for a token; the dummy stage is not offered.
            let bobName = MediaTest.uniqueName("bob")
            let challenge = try await anonymous.call("POST", "/register", ["username": .string(bobName), "password": "pw-bob-1234",
                                                                             "auth": ["type": "m.login.dummy"]])
            #expect(challenge.status == 401)
            let wrong = try await anonymous.call("POST", "/register", ["username": .string(bobName), "password": "pw-bob-1234",
                                                                         "auth": ["type": "m.login.registration_token", "token": "nope"]])
            #expect(wrong.status == 401)
            #expect(wrong.errcode == "M_UNAUTHORIZED")
            let stage = try await anonymous.call("POST", "/register", ["username": .string(bobName), "password": "pw-bob-1234",
                                                                         "auth": ["type": "m.login.registration_token", "token": .string(once)]])
            #expect(stage.status == 401)
            #expect(stage.json["completed"] == ["m.login.registration_token"])
            // Reserved while the registration runs.
            #expect(try await admin.call("GET", "\(tokens)/\(once)").json["pending"] == 1)
            #expect(try await anonymous.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=\(once)").json["valid"] == false)
            let session = try #require(stage.json["session"]?.stringValue)
            let bob = try await anonymous.call("POST", "/register", ["auth": ["type": "m.login.dummy", "session": .string(session)]])
            #expect(bob.status == 200)
            #expect(bob.json["user_id"]?.stringValue == "@\(bobName):localhost")
            let used = try await admin.call("GET", "\(tokens)/\(once)")
            #expect(used.json["completed"] == 1)
            #expect(used.json["pending"] == 0)
            // Used up: invalid, listed as such, refused.
            #expect(try await anonymous.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=\(once)").json["valid"] == false)
            let invalid = try await admin.call("GET", "\(tokens)?valid=false").json["registration_tokens"]?.arrayValue ?? []
            #expect(invalid.map { $0["token"] } == [.string(once)])
            let valid = try await admin.call("GET", "\(tokens)?valid=true").json["registration_tokens"]?.arrayValue ?? []
            #expect(valid.map { $0["token"] } == ["Team.a_b~c-1"])
            let carolName = MediaTest.uniqueName("carol")
            let refused = try await anonymous.call("POST", "/register", ["username": .string(carolName), "password": "pw-carol-1234",
                                                                           "auth": ["type": "m.login.registration_token", "token": .string(once)]])
            #expect(refused.status == 401)
            #expect(refused.errcode == "M_UNAUTHORIZED")
            // The dummy stage alone does not register.
            let carolSession = try #require(refused.json["session"]?.stringValue)
            #expect(try await anonymous.call("POST", "/register", ["auth": ["type": "m.login.dummy", "session": .string(carolSession)]]).status == 401)
            // One more use, then deleted.
            let raised = try await admin.call("PUT", "\(tokens)/\(once)", ["uses_allowed": 2])
            #expect(raised.json["uses_allowed"] == 2)
            #expect(try await anonymous.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=\(once)").json["valid"] == true)
            #expect(try await admin.call("PUT", "\(tokens)/\(once)", ["expiry_time": 5]).status == 400)
            #expect(try await admin.call("PUT", "\(tokens)/missing", ["uses_allowed": 2]).status == 404)
            #expect(try await admin.call("DELETE", "\(tokens)/\(once)").status == 200)
            #expect(try await admin.call("GET", "\(tokens)/\(once)").errcode == "M_NOT_FOUND")
            #expect(try await admin.call("DELETE", "\(tokens)/\(once)").status == 404)
        }
    }

    @Test func securitySectionOfTheConfiguration() throws {
        let configuration = try ConfigurationLoader.load(yaml: """
            security:
              event_log_capacity: 500
              reputation_half_life_seconds: 60
              auto_block_score: 40
              auto_block_duration_seconds: 120
              registration_requires_token: true
            """)
        #expect(configuration.security == Configuration.Security(eventLogCapacity: 500, reputationHalfLifeSeconds: 60, autoBlockScore: 40,
                                                                 autoBlockDurationSeconds: 120, registrationRequiresToken: true))
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "security:\n  auto_block_score: 101\n") }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "security:\n  event_log_capacity: 5\n") }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "security:\n  auto_block: 5\n") }
        // The generated file carries the section with its defaults.
        #expect(try ConfigurationLoader.load(yaml: ConfigurationTemplate.render(serverName: "example.org")).security == Configuration.Security())
    }

    @Test func everyRouteAnswers401WithoutTokenAnd403ToOthers() async throws {
        try await withMyelinServer({ $0.registration.sharedSecret = "s3cret" }) { _, port in
            let alice = try await MatrixTestClient.registered(port: port, "alice").client
            let routes: [(String, String)] = [
                ("POST", "/security/ip/block"), ("POST", "/security/ip/unblock"), ("GET", "/security/ip/blocks"),
                ("GET", "/security/ip/reputation/127.0.0.1"), ("GET", "/security/events"),
                ("GET", "/users/@alice:localhost/override_ratelimit"), ("POST", "/users/@alice:localhost/override_ratelimit"),
                ("DELETE", "/users/@alice:localhost/override_ratelimit"),
                ("GET", "/registration_tokens"), ("POST", "/registration_tokens/new"), ("GET", "/registration_tokens/abc"),
                ("PUT", "/registration_tokens/abc"), ("DELETE", "/registration_tokens/abc"),
            ]
            for (method, path) in routes {
                let body: JSON? = method == "POST" || method == "PUT" ? .object(["ip": "127.0.0.1"]) : nil
                let anonymous = try await alice.call(method, Self.admin + path, body, token: .some(nil))
                #expect(anonymous.status == 401, "\(method) \(path)")
                let user = try await alice.call(method, Self.admin + path, body)
                #expect(user.status == 403, "\(method) \(path)")
                #expect(user.errcode == "M_FORBIDDEN", "\(method) \(path)")
            }
        }
    }
}
