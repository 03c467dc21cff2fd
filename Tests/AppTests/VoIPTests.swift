import Glibc
import Matrix
import Testing
import TestSupport
@testable import App

/// TURN credentials (`voip/turnServer`, the seed's `voip/turnServer/guest` and
/// `voip/config`): their shapes over a running server on SQLite and PostgreSQL, the `voip:`
/// configuration section, and a real coturn (Debian's `coturn`, installed by `make deps`)
/// that allocates a relay with the credentials Myelin hands out and refuses them once expired.
@Suite("VoIP")
struct VoIPTests {
    static let secret = "turn-shared-secret-for-tests"

    static func configure(_ c: inout Configuration, port: Int = 3478) {
        c.voip.turnUris = ["turn:127.0.0.1:\(port)?transport=udp", "turn:127.0.0.1:\(port)?transport=tcp"]
        c.voip.turnSharedSecret = secret
        c.voip.stunUris = ["stun:127.0.0.1:\(port)"]
    }

    @Test(arguments: MediaTest.backends)
    func notConfigured(_ backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            for path in ["/voip/turnServer", "/voip/turnServer/guest"] {
                let reply = try await alice.call("GET", path)
                #expect(reply.status == 404 && reply.errcode == "M_NOT_FOUND", "\(path): \(reply.json)")
            }
            let config = try await alice.call("GET", "/voip/config", token: .some(nil))
            #expect(config.status == 200 && config.json == ["turn_servers": .null, "stun_servers": .null], "\(config.json)")
            #expect(try await alice.call("GET", "/voip/turnServer", token: .some(nil)).errcode == "M_MISSING_TOKEN")
        }
    }

    @Test(arguments: MediaTest.backends)
    func credentialsFollowTheRESTScheme(_ backend: String) async throws {
        try await MediaTest.withServer(backend, {
            Self.configure(&$0)
            $0.registration.sharedSecret = "s3cret"
        }) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let me = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let before = Int64(time(nil))
            let reply = try await alice.call("GET", "/_matrix/client/r0/voip/turnServer")
            #expect(reply.status == 200, "\(reply.json)")
            #expect(reply.json["ttl"] == 3600)
            #expect(reply.json["uris"] == ["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"])
            let username = try #require(reply.json["username"]?.stringValue)
            let expiry = try #require(Int64(username.prefix { $0 != ":" }))
            #expect(username == "\(expiry):\(me)")
            #expect(expiry >= before + 3600 && expiry <= Int64(time(nil)) + 3600)
            // base64 (padded) of the 20-byte HMAC-SHA1 of the username under the secret.
            let password = try #require(reply.json["password"]?.stringValue)
            #expect(password.utf8.count == 28 && password.hasSuffix("="))
            #expect(password == VoIPEndpoints.paddedBase64(HMACSHA1.mac(key: Array(Self.secret.utf8), message: Array(username.utf8))))

            let guest = try await alice.call("GET", "/voip/turnServer/guest", token: .some(nil))
            #expect(guest.status == 200 && guest.json["username"]?.stringValue?.contains(":guest-") == true, "\(guest.json)")
            let config = try await alice.call("GET", "/voip/config")
            #expect(config.json["stun_servers"] == ["stun:127.0.0.1:3478"])
            #expect(config.json["turn_servers"]?[0]?["username"]?.stringValue?.hasSuffix(":\(me)") == true, "\(config.json)")

            // The admin config shows the section with the secret redacted.
            let token = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            let admin = try await alice.call("GET", "/_synapse/admin/v1/config", token: .some(token))
            #expect(admin.status == 200)
            #expect(admin.json["voip"]?["turn_shared_secret"]?.stringValue == AdminServerConfig.redacted, "\(admin.json["voip"] ?? .null)")
            #expect(admin.json["voip"]?["turn_uris"]?.arrayValue?.count == 2)
        }
    }

    @Test(arguments: MediaTest.backends)
    func guestsWhenRefused(_ backend: String) async throws {
        try await MediaTest.withServer(backend, {
            Self.configure(&$0)
            $0.voip.turnAllowGuests = false
            $0.registration.allowGuests = true
        }) { _, port in
            var guest = try MatrixTestClient(port: port)
            guest.token = try #require(try await guest.call("POST", "/register?kind=guest", [:]).json["access_token"]?.stringValue)
            #expect(try await guest.call("GET", "/voip/turnServer").status == 403)
            #expect(try await guest.call("GET", "/voip/turnServer/guest", token: .some(nil)).errcode == "M_FORBIDDEN")
            let config = try await guest.call("GET", "/voip/config", token: .some(nil))
            #expect(config.json["turn_servers"]?[0]?["username"] == nil && config.json["turn_servers"]?[0]?["uris"] != nil, "\(config.json)")
            let alice = try await MediaTest.user(port, "alice")
            #expect(try await alice.call("GET", "/voip/turnServer").status == 200)
        }
    }

    @Test func configurationSection() throws {
        let c = try ConfigurationLoader.load(yaml: """
            voip:
              turn_uris: ["turn:turn.example.org:3478?transport=udp"]
              turn_shared_secret: abc
              turn_user_lifetime: 2h
              turn_allow_guests: false
              stun_uris: ["stun:stun.example.org"]
            """)
        #expect(c.voip.turnUris == ["turn:turn.example.org:3478?transport=udp"])
        #expect(c.voip.turnSharedSecret == "abc" && c.voip.turnUserLifetimeMs == 7_200_000 && !c.voip.turnAllowGuests)
        #expect(c.voip.stunUris == ["stun:stun.example.org"] && c.voip.isConfigured)
        #expect(try ConfigurationLoader.load(yaml: "voip:\n  turn_user_lifetime: 90000\n").voip.turnUserLifetimeMs == 90_000)
        for bad in ["voip:\n  turn_uris: [\"http://x\"]\n", "voip:\n  turn_user_lifetime: 0\n",
                    "voip:\n  turn_user_lifetime: 99999999999999999999y\n", "voip:\n  turn_secret: x\n"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try ConfigurationLoader.load(yaml: bad) }
        }
        #expect(try ConfigurationLoader.load(yaml: ConfigurationTemplate.render(serverName: "example.org")).voip == Configuration.VoIP())
    }

    // MARK: a real coturn

    /// The first of `names` found in the usual binary directories.
    static func binary(_ name: String) -> String? {
        ["/usr/bin/", "/usr/local/bin/", "/bin/"].map { $0 + name }.first { access($0, X_OK) == 0 }
    }

    /// coturn's `turnserver` on 127.0.0.1 with `use-auth-secret`, UDP/TCP only, on a random
    /// port with its relay ports above it; killed when the value goes.
    struct TURNServer {
        let process: ChildProcess
        let port: Int

        init(secret: String) throws {
            let turnserver = try #require(VoIPTests.binary("turnserver"), "coturn's turnserver is missing: run `make deps` (Debian package coturn)")
            let directory = makeTemporaryDirectory()
            port = Int.random(in: 20_000...50_000)
            process = try ChildProcess(path: turnserver, arguments: [
                "--use-auth-secret", "--static-auth-secret=\(secret)", "--realm=myelin.test",
                "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port=\(port)",
                "--min-port=\(port + 1)", "--max-port=\(port + 400)", "--no-tls", "--no-dtls", "--no-cli",
                "--allow-loopback-peers", "--no-stdout-log", "--log-file=\(directory)/turn.log",
                "--pidfile=\(directory)/turnserver.pid", "--userdb=\(directory)/turndb",
            ])
        }
    }

    /// `turnutils_uclient` allocating relays (client to client, no RTCP, no messages) with
    /// the credentials: whether a relay address came back (`-v` prints it).
    static func allocate(port: Int, username: String, password: String) async throws -> (allocated: Bool, output: String) {
        let uclient = try #require(binary("turnutils_uclient"), "coturn's turnutils_uclient is missing: run `make deps`")
        let arguments = ["-v", "-y", "-c", "-n", "0", "-m", "1", "-p", String(port), "-u", username, "-w", password, "127.0.0.1"]
        let (termination, output) = try await blocking {
            try ChildProcess.run("/usr/bin/timeout", ["60", uclient] + arguments)
        }
        let text = String(decoding: output, as: UTF8.self)
        return (termination == .exited(0) && text.contains("Received relay addr"), text)
    }

    @Test func coturnAllocatesWithHandedOutCredentialsAndRefusesExpiredOnes() async throws {
        let turn = try TURNServer(secret: Self.secret)
        // Fresh credentials (an hour): coturn allocates a relay (polled while coturn starts).
        try await withMyelinServer({ Self.configure(&$0, port: turn.port) }) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let reply = try await alice.call("GET", "/voip/turnServer")
            let username = try #require(reply.json["username"]?.stringValue)
            let password = try #require(reply.json["password"]?.stringValue)
            #expect(reply.json["uris"]?[0]?.stringValue == "turn:127.0.0.1:\(turn.port)?transport=udp")
            var result = (allocated: false, output: "")
            for _ in 0..<40 where !result.allocated {
                result = try await Self.allocate(port: turn.port, username: username, password: password)
                if !result.allocated { try await Task.sleep(for: .milliseconds(250)) }
            }
            #expect(result.allocated, "coturn refused fresh credentials: \(result.output.suffix(1500))")
            // The same username with a password not made from the secret: refused.
            let forged = try await Self.allocate(port: turn.port, username: username, password: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            #expect(!forged.allocated)
        }
        // Credentials living one second, used once they have expired: refused.
        try await withMyelinServer({
            Self.configure(&$0, port: turn.port)
            $0.voip.turnUserLifetimeMs = 1_000
        }) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let reply = try await alice.call("GET", "/voip/turnServer")
            #expect(reply.json["ttl"] == 1)
            let username = try #require(reply.json["username"]?.stringValue)
            let password = try #require(reply.json["password"]?.stringValue)
            let expiry = try #require(Int64(username.prefix { $0 != ":" }))
            while Int64(time(nil)) <= expiry + 1 { try await Task.sleep(for: .milliseconds(200)) }
            let expired = try await Self.allocate(port: turn.port, username: username, password: password)
            #expect(!expired.allocated, "coturn accepted expired credentials: \(expired.output.suffix(1500))")
        }
    }
}
