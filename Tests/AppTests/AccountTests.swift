import Glibc
import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

@Suite("Registration, login and token authentication over real sockets")
struct AccountTests {
    @Test func registerThenWhoamiLoginLogout() async throws {
        try await withMyelin { port, _ in
            let (alice, reply) = try await MatrixTestClient.registered(
                port: port, "alice", extra: ["initial_device_display_name": "Alice's phone"])
            #expect(reply.status == 200)
            #expect(reply.json["user_id"] == "@alice:localhost")
            #expect(reply.json["home_server"] == "localhost")
            let device = try #require(reply.json["device_id"]?.stringValue)
            let token = try #require(alice.token)
            #expect(token.count > 40)

            let whoami = try await alice.call("GET", "/account/whoami")
            #expect(whoami.status == 200)
            #expect(whoami.json == ["user_id": "@alice:localhost", "device_id": .string(device), "is_guest": false])

            // r0 and the access_token query parameter work too.
            let viaQuery = try await alice.call("GET", "/_matrix/client/r0/account/whoami?access_token=\(token)", token: .some(nil))
            #expect(viaQuery.status == 200)

            let flows = try await alice.call("GET", "/login")
            #expect(flows.json["flows"]?[0]?["type"] == "m.login.password")

            for user: JSON in ["alice", "@alice:localhost", "ALICE"] {
                let login = try await alice.call("POST", "/login", ["type": "m.login.password", "user": user,
                                                                    "password": "correct horse"])
                #expect(login.status == 200)
                #expect(login.json["user_id"] == "@alice:localhost")
            }
            let byIdentifier = try await alice.call("POST", "/login", [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"],
                "password": "correct horse", "device_id": "MYDEVICE"])
            #expect(byIdentifier.status == 200)
            #expect(byIdentifier.json["device_id"] == "MYDEVICE")
            let second = try #require(byIdentifier.json["access_token"]?.stringValue)

            let logout = try await alice.call("POST", "/logout", .object([:]), token: second)
            #expect(logout.status == 200)
            let after = try await alice.call("GET", "/account/whoami", token: second)
            #expect(after.status == 401)
            #expect(after.errcode == "M_UNKNOWN_TOKEN")
            #expect(try await alice.call("GET", "/account/whoami").status == 200)

            #expect(try await alice.call("POST", "/logout/all", .object([:])).status == 200)
            #expect(try await alice.call("GET", "/account/whoami").errcode == "M_UNKNOWN_TOKEN")
        }
    }

    @Test func authenticationErrors() async throws {
        try await withMyelin { port, configuration in
            let client = try MatrixTestClient(port: port)
            let missing = try await client.call("GET", "/account/whoami")
            #expect(missing.status == 401)
            #expect(missing.errcode == "M_MISSING_TOKEN")
            let unknown = try await client.call("GET", "/account/whoami", token: "myl_nonsense")
            #expect(unknown.status == 401)
            #expect(unknown.errcode == "M_UNKNOWN_TOKEN")

            // A deactivated user whose tokens survive (e.g. deactivated by an admin tool).
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let database = try await Database.open(configuration.databaseConfiguration)
            var user = try #require(try await database.accounts.user(id: UserID(parsing: "@bob:localhost")))
            user.deactivated = true
            try await database.accounts.updateUser(user)
            await database.close()
            let deactivated = try await bob.call("GET", "/account/whoami")
            #expect(deactivated.status == 403)
            #expect(deactivated.errcode == "M_USER_DEACTIVATED")
            let login = try await bob.call("POST", "/login", ["type": "m.login.password", "user": "bob",
                                                              "password": "correct horse"])
            #expect(login.status == 403)
            #expect(login.errcode == "M_USER_DEACTIVATED")
        }
    }

    @Test func tokensAndPasswordsAreStoredOnlyHashed() async throws {
        try await withMyelin { port, configuration in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice", password: "hunter2hunter2",
                                                                       extra: ["refresh_token": true])
            let token = try #require(alice.token)
            let refresh = try #require(reply.json["refresh_token"]?.stringValue)
            #expect(reply.json["expires_in_ms"]?.intValue == 300_000)
            let database = try await Database.open(configuration.databaseConfiguration)
            let user = try #require(try await database.accounts.user(id: UserID(parsing: "@alice:localhost")))
            #expect(user.passwordHash?.hasPrefix("$argon2id$") == true)
            #expect(try await database.tokens.accessToken(hash: Secrets.hash(token)) != nil)
            await database.close()
            // Nothing in the database file contains the secrets in clear.
            for path in [configuration.resolvedSQLitePath, configuration.resolvedSQLitePath + "-wal"] {
                let bytes = readFile(path)
                for secret in [token, refresh, "hunter2hunter2"] {
                    #expect(!contains(bytes, Array(secret.utf8)), "\(path) contains a secret")
                }
            }
        }
    }

    @Test func registrationErrors() async throws {
        try await withMyelin { port, _ in
            let client = try MatrixTestClient(port: port)
            // Without auth: the UIA challenge.
            let challenge = try await client.call("POST", "/register", ["username": "carol", "password": "pw"])
            #expect(challenge.status == 401)
            #expect(challenge.json["flows"]?[0]?["stages"] == ["m.login.dummy"])
            #expect(challenge.json["session"]?.stringValue != nil)

            // Upper case is lower-cased, as Synapse does: "Frank" registers @frank.
            let frank = try await client.call("POST", "/register", ["username": "Frank", "password": "pw",
                                                                   "auth": ["type": "m.login.dummy"]])
            #expect(frank.json["user_id"] == "@frank:localhost")
            for bad in ["ca rol", "_bridge", "12345", "", String(repeating: "a", count: 250), "carol:x"] {
                let reply = try await client.call("POST", "/register", ["username": .string(bad), "password": "pw",
                                                                        "auth": ["type": "m.login.dummy"]])
                #expect(reply.status == 400, "\(bad)")
                #expect(reply.errcode == "M_INVALID_USERNAME", "\(bad)")
            }
            let first = try await MatrixTestClient.registered(port: port, "carol")
            #expect(first.reply.status == 200)
            let taken = try await client.call("POST", "/register", ["username": "carol", "password": "pw",
                                                                    "auth": ["type": "m.login.dummy"]])
            #expect(taken.status == 400)
            #expect(taken.errcode == "M_USER_IN_USE")

            let available = try await client.call("GET", "/register/available?username=dave")
            #expect(available.json == ["available": true])
            #expect(try await client.call("GET", "/register/available?username=carol").errcode == "M_USER_IN_USE")
            #expect(try await client.call("GET", "/register/available?username=Dave").errcode == "M_INVALID_USERNAME")

            // No username: the server picks one.
            let picked = try await client.call("POST", "/register", ["password": "pw", "auth": ["type": "m.login.dummy"]])
            #expect(picked.status == 200)
            let pickedID = try UserID(parsing: picked.json["user_id"]?.stringValue ?? "")
            #expect(pickedID.isStrictlyValid)
            #expect(pickedID.serverName.rawValue == "localhost")
            #expect(try await client.call("POST", "/register", ["username": "nopw", "auth": ["type": "m.login.dummy"]])
                        .errcode == "M_MISSING_PARAM")

            // inhibit_login: an account, no session.
            let inhibited = try await client.call("POST", "/register", ["username": "erin", "password": "pw",
                                                                        "inhibit_login": true,
                                                                        "auth": ["type": "m.login.dummy"]])
            #expect(inhibited.status == 200)
            #expect(inhibited.json["user_id"] == "@erin:localhost")
            #expect(inhibited.json["access_token"] == nil)

            let noTokens = try await client.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
            #expect(noTokens.status == 403)
            #expect(noTokens.errcode == "M_FORBIDDEN")

            let guest = try await client.call("POST", "/register?kind=guest", .object([:]))
            #expect(guest.status == 403)
            #expect(guest.errcode == "M_FORBIDDEN")

            let wrong = try await client.call("POST", "/login", ["type": "m.login.password", "user": "carol", "password": "nope"])
            #expect(wrong.status == 403)
            #expect(wrong.errcode == "M_FORBIDDEN")
            let nobody = try await client.call("POST", "/login", ["type": "m.login.password", "user": "zed", "password": "x"])
            #expect(nobody.errcode == "M_FORBIDDEN")
            let badType = try await client.call("POST", "/login", ["type": "m.login.magic"])
            #expect(badType.status == 400)
            #expect(badType.errcode == "M_UNKNOWN")
        }
    }

    @Test func disabledRegistrationIsForbidden() async throws {
        try await withMyelin({ $0.registration.enabled = false }) { port, _ in
            let client = try MatrixTestClient(port: port)
            let reply = try await client.call("POST", "/register", ["username": "x", "password": "pw",
                                                                    "auth": ["type": "m.login.dummy"]])
            #expect(reply.status == 403)
            #expect(reply.errcode == "M_FORBIDDEN")
        }
    }

    @Test func registrationTokenStage() async throws {
        try await withMyelin({ $0.registration.registrationToken = "letmein" }) { port, _ in
            let client = try MatrixTestClient(port: port)
            let challenge = try await client.call("POST", "/register", ["username": "x", "password": "pw"])
            #expect(challenge.status == 401)
            #expect(challenge.json["flows"]?[0]?["stages"] == ["m.login.registration_token", "m.login.dummy"])
            let dummy = try await client.call("POST", "/register", ["username": "x", "password": "pw",
                                                                    "auth": ["type": "m.login.dummy"]])
            #expect(dummy.status == 401)
            let wrong = try await client.call("POST", "/register", ["username": "x", "password": "pw",
                                                                    "auth": ["type": "m.login.registration_token", "token": "no"]])
            #expect(wrong.status == 401)
            #expect(wrong.errcode == "M_UNAUTHORIZED")
            // Synapse's flow: the token stage, then the dummy stage in the same session.
            let right = try await client.call("POST", "/register", ["username": "x", "password": "pw",
                                                                    "auth": ["type": "m.login.registration_token", "token": "letmein"]])
            #expect(right.status == 401)
            #expect(right.json["completed"] == ["m.login.registration_token"])
            #expect(right.errcode == nil)
            let session = try #require(right.json["session"]?.stringValue)
            let done = try await client.call("POST", "/register", ["auth": ["type": "m.login.dummy", "session": .string(session)]])
            #expect(done.status == 200)
            #expect(done.json["user_id"] == "@x:localhost")
            let path = "/_matrix/client/v1/register/m.login.registration_token/validity?token="
            #expect(try await client.call("GET", path + "letmein").json == ["valid": true])
            #expect(try await client.call("GET", path + "nope").json == ["valid": false])
        }
    }

    @Test func guestsWhenAllowed() async throws {
        try await withMyelin({ $0.registration.allowGuests = true }) { port, _ in
            var client = try MatrixTestClient(port: port)
            let noTokens = try await client.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
            #expect(noTokens.status == 403)
            #expect(noTokens.errcode == "M_FORBIDDEN")

            let guest = try await client.call("POST", "/register?kind=guest", .object([:]))
            #expect(guest.status == 200)
            client.token = guest.json["access_token"]?.stringValue
            #expect(try await client.call("GET", "/account/whoami").json["is_guest"] == true)
        }
    }

    @Test func refreshTokensRotateAndAccessTokensExpire() async throws {
        // 15 s: the suite runs loaded, and the first whoami must come within the lifetime.
        try await withMyelin({ $0.registration.refreshableAccessTokenLifetimeMs = 15_000 }) { port, _ in
            let asked = ContinuousClock.now
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice", extra: ["refresh_token": true])
            // The token was issued before the reply arrived: its lifetime ends before this + 15 s.
            let replied = ContinuousClock.now
            let refresh = try #require(reply.json["refresh_token"]?.stringValue)
            let first = try await alice.call("GET", "/account/whoami")
            // Issued after `asked`: a whoami answered within 15 s of it was checked in the
            // token's lifetime (a machine at load 90 once took longer, and got the soft logout).
            if ContinuousClock.now < asked + .seconds(15) { #expect(first.status == 200) }
            try await Task.sleep(until: replied + .milliseconds(15_200))
            let expired = try await alice.call("GET", "/account/whoami")
            #expect(expired.status == 401)
            #expect(expired.errcode == "M_UNKNOWN_TOKEN")
            #expect(expired.json["soft_logout"] == true)

            let refreshed = try await alice.call("POST", "/refresh", ["refresh_token": .string(refresh)], token: .some(nil))
            #expect(refreshed.status == 200)
            let newToken = try #require(refreshed.json["access_token"]?.stringValue)
            #expect(refreshed.json["refresh_token"]?.stringValue != refresh)
            #expect(try await alice.call("GET", "/account/whoami", token: newToken).status == 200)
            // The old refresh token was used up.
            let replay = try await alice.call("POST", "/refresh", ["refresh_token": .string(refresh)], token: .some(nil))
            #expect(replay.status == 401)
            #expect(replay.errcode == "M_UNKNOWN_TOKEN")
        }
    }

    /// Limits on, refilled so slowly that a loaded machine cannot refill a token mid-test.
    static func slowRefill(_ configuration: inout Configuration) {
        configuration.rateLimits.enabled = true
        configuration.rateLimits.login = .init(perSecond: 0.001, burst: 3)
        configuration.rateLimits.registration = .init(perSecond: 0.001, burst: 3)
    }

    @Test func loginAndRegistrationAreRateLimited() async throws {
        let slowRefill = Self.slowRefill
        try await withMyelin(slowRefill) { port, _ in
            let client = try MatrixTestClient(port: port)
            var statuses: [Int] = []
            var last: MatrixTestClient.Reply?
            for _ in 0..<5 {
                let reply = try await client.call("POST", "/login", ["type": "m.login.password", "user": "x", "password": "y"])
                statuses.append(reply.status)
                last = reply
            }
            #expect(statuses.prefix(3).allSatisfy { $0 == 403 })
            #expect(statuses.last == 429)
            #expect(last?.errcode == "M_LIMIT_EXCEEDED")
            #expect((last?.json["retry_after_ms"]?.intValue ?? 0) > 0)
        }
        try await withMyelin(slowRefill) { port, _ in
            let client = try MatrixTestClient(port: port)
            // UIA challenges do not count; the fourth account creation in a burst does.
            for name in ["u1", "u2", "u3"] {
                #expect(try await client.call("POST", "/register", ["username": .string(name), "password": "pw"]).status == 401)
                let done = try await client.call("POST", "/register", ["username": .string(name), "password": "pw",
                                                                       "auth": ["type": "m.login.dummy"]])
                #expect(done.status == 200)
            }
            let limited = try await client.call("POST", "/register", ["username": "u4", "password": "pw",
                                                                      "auth": ["type": "m.login.dummy"]])
            #expect(limited.status == 429)
            #expect(limited.errcode == "M_LIMIT_EXCEEDED")
            #expect((limited.json["retry_after_ms"]?.intValue ?? 0) > 0)
        }
        // rate_limits.enabled: false turns every limit off.
        try await withMyelin { port, _ in
            let client = try MatrixTestClient(port: port)
            for _ in 0..<8 {
                let reply = try await client.call("POST", "/login", ["type": "m.login.password", "user": "x", "password": "y"])
                #expect(reply.status == 403)
            }
        }
    }
}

func readFile(_ path: String) -> [UInt8] {
    guard let file = fopen(path, "rb") else { return [] }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    return haystack.withUnsafeBufferPointer { h in
        (0...(h.count - needle.count)).contains { i in needle.indices.allSatisfy { h[i + $0] == needle[$0] } }
    }
}

@Suite("Access log")
struct AccessLogRedactionTests {
    @Test func accessTokensAreRedacted() {
        #expect(MyelinApp.redacted("/_matrix/client/v3/account/whoami?access_token=secret")
                == "/_matrix/client/v3/account/whoami?access_token=<redacted>")
        #expect(MyelinApp.redacted("/x?a=1&access_token=s1&b=2&access_token=s2")
                == "/x?a=1&access_token=<redacted>&b=2&access_token=<redacted>")
        #expect(MyelinApp.redacted("/x?a=1") == "/x?a=1")
    }
}

@Suite("Rate limiter token buckets")
struct RateLimiterTests {
    @Test func burstThenRefill() throws {
        let limiter = RateLimiter(enabled: true)
        let limit = Configuration.RateLimit(perSecond: 0.5, burst: 2)
        try limiter.check("k", limit, now: 0)
        try limiter.check("k", limit, now: 0)
        let error = #expect(throws: MatrixError.self) { try limiter.check("k", limit, now: 0) }
        #expect(error?.code == .limitExceeded)
        #expect(error?.status == 429)
        #expect(error?.extra["retry_after_ms"] == 2000)
        // Other keys have their own bucket.
        try limiter.check("other", limit, now: 0)
        // One token back after 2 s at 0.5/s, not two.
        try limiter.check("k", limit, now: 2000)
        #expect(throws: MatrixError.self) { try limiter.check("k", limit, now: 2000) }
        #expect(throws: MatrixError.self) { try limiter.check("k", limit, now: 2999) }
        try limiter.check("k", limit, now: 4000)
    }

    @Test func disabledNeverRefuses() throws {
        let limiter = RateLimiter(enabled: false)
        for _ in 0..<100 { try limiter.check("k", .init(perSecond: 0.001, burst: 1), now: 0) }
    }
}
