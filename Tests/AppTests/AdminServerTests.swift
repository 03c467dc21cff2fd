import Glibc
import Logging
import Matrix
import Persistence
import Testing
import TestSupport
@testable import App

/// The server administration endpoints (`Admin/AdminServer.swift`), the runtime endpoint
/// and the admin page's file serving, over real sockets on SQLite and PostgreSQL (a schema
/// per server, `MediaTest.withServer`): refusals, counts that follow what clients did,
/// the configuration without its secrets, log lines written by a request, the live actor
/// and long-poll numbers, and the page's headers and refusal of traversal.
@Suite("Admin: server, runtime and the admin page")
struct AdminServerTests {
    static let v1 = "/_synapse/admin/v1"
    static let secret = "shared-Secret-4f9a2c7e"

    static func registerAdmin(port: Int, _ username: String, secret: String = AdminServerTests.secret) async throws -> String {
        let client = try MatrixTestClient(port: port)
        let nonce = try #require(try await client.call("GET", "\(v1)/register").json["nonce"]?.stringValue)
        let mac = HMACSHA1.hex(key: Array(secret.utf8), message: Array("\(nonce)\0\(username)\0pw\0admin".utf8))
        let created = try await client.call("POST", "\(v1)/register", [
            "nonce": .string(nonce), "username": .string(username), "password": "pw", "admin": true, "mac": .string(mac)])
        return try #require(created.json["access_token"]?.stringValue, "\(created.json)")
    }

    struct Fixture {
        let port: Int
        let server: MyelinServer
        let admin: MatrixTestClient
        let alice: MatrixTestClient
    }

    static func withFixture(_ backend: String, _ configure: @escaping (inout Configuration) -> Void = { _ in },
                            _ body: (Fixture) async throws -> Void) async throws {
        try await MediaTest.withServer(backend, {
            $0.registration.sharedSecret = Self.secret
            configure(&$0)
        }) { server, port in
            let token = try await registerAdmin(port: port, "root")
            let admin = try MatrixTestClient(port: port, token: token)
            let alice = try await MatrixTestClient.registered(port: port, "alice").client
            try await body(Fixture(port: port, server: server, admin: admin, alice: alice))
        }
    }

    /// Polls `probe` every 100 ms for up to `seconds` until it is true.
    static func eventually(_ seconds: Int = 30, _ probe: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<(seconds * 10) {
            if try await probe() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await probe()
    }

    // MARK: Refusals

    @Test func adminRoutesRefuseAnonymousAndOrdinaryUsersButHealthIsOpen() async throws {
        try await Self.withFixture("sqlite") { f in
            let routes = ["\(Self.v1)/status", "\(Self.v1)/server_stats", "\(Self.v1)/user_stats", "\(Self.v1)/config",
                          "\(Self.v1)/logs", "\(Self.v1)/media_stats", "/_myelin/admin/api/runtime"]
            for path in routes {
                let anonymous = try await f.alice.call("GET", path, token: .some(nil))
                #expect(anonymous.status == 401, "\(path)")
                #expect(anonymous.errcode == "M_MISSING_TOKEN", "\(path)")
                let user = try await f.alice.call("GET", path)
                #expect(user.status == 403, "\(path)")
                #expect(user.errcode == "M_FORBIDDEN", "\(path)")
                let admin = try await f.admin.call("GET", path)
                #expect(admin.status == 200, "\(path): \(admin.json)")
            }
            let health = try await f.alice.call("GET", "\(Self.v1)/health", token: .some(nil))
            #expect(health.status == 200)
            #expect(health.json["status"]?.stringValue == "ok")
        }
    }

    // MARK: Status and counts

    @Test(arguments: MediaTest.backends)
    func statusAndCountsFollowWhatClientsDid(backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let status = try await f.admin.call("GET", "\(Self.v1)/status")
            #expect(status.status == 200)
            #expect(status.json["status"]?.stringValue == "ok")
            #expect(status.json["database"]?.stringValue == "connected")
            #expect(status.json["database_backend"]?.stringValue == backend)
            #expect(status.json["version"]?.stringValue == MyelinVersion.string)
            #expect((status.json["uptime_seconds"]?.intValue ?? -1) >= 0)

            let room = try #require(try await f.alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            for n in 0..<3 {
                let sent = try await f.alice.call("PUT", "/rooms/\(room)/send/m.room.message/t\(n)",
                                                  ["msgtype": "m.text", "body": .string("hello \(n)")])
                #expect(sent.status == 200)
            }
            let stats = try await f.admin.call("GET", "\(Self.v1)/server_stats")
            #expect(stats.status == 200)
            #expect(stats.json["total_users"]?.intValue == 2)
            #expect(stats.json["total_rooms"]?.intValue == 1)
            #expect(stats.json["total_messages"]?.intValue == 3)
            // Last-seen times are written in batches (every few seconds).
            let active = try await Self.eventually {
                let s = try await f.admin.call("GET", "\(Self.v1)/server_stats").json
                return s["daily_active_users"]?.intValue == 2 && s["monthly_active_users"]?.intValue == 2
            }
            #expect(active, "both users seen today")

            let users = try await f.admin.call("GET", "\(Self.v1)/user_stats")
            #expect(users.json["total_users"]?.intValue == 2)
            #expect(users.json["new_users_today"]?.intValue == 2)
            #expect(users.json["active_users"]?.intValue == 2)
            #expect(users.json["admin_users"]?.intValue == 1)
            #expect(users.json["deactivated_users"]?.intValue == 0)

            let upload = try await f.alice.raw.request("POST", "/_matrix/media/v3/upload?filename=a.txt", body: "twelve bytes",
                                                       headers: ["Authorization": "Bearer \(f.alice.token ?? "")",
                                                                 "Content-Type": "text/plain"])
            #expect(upload.status == 200)
            let media = try await f.admin.call("GET", "\(Self.v1)/media_stats")
            #expect(media.json["total_media"]?.intValue == 1)
            #expect(media.json["total_size_bytes"]?.intValue == 12)
        }
    }

    // MARK: Configuration

    @Test(arguments: MediaTest.backends)
    func configurationIsServedWithEverySecretRedacted(backend: String) async throws {
        let token = "regtoken-Q7w8e9r0t1"
        let pgPassword = "pg-Pass-31415926"
        try await Self.withFixture(backend, { c in
            c.registration.registrationToken = token
            c.registration.enabled = true
            c.media.maxUploadBytes = 12_345_678
            if c.database.backend == .sqlite {
                // Not used on SQLite, but part of the effective configuration all the same.
                c.database.postgresConninfo = "host=db.internal user=myelin password=\(pgPassword) dbname=myelin"
            }
        }) { f in
            let reply = try await f.admin.raw.request("GET", "\(Self.v1)/config",
                                                      headers: ["Authorization": "Bearer \(f.admin.token ?? "")"])
            #expect(reply.status == 200)
            let text = reply.text
            for secret in [Self.secret, token, pgPassword] {
                #expect(!text.contains(secret), "\(secret) leaked")
            }
            let json = try JSON.parse(reply.body)
            #expect(json["server_name"]?.stringValue == "localhost")
            #expect(json["registration"]?["shared_secret"]?.stringValue == AdminServerConfig.redacted)
            #expect(json["registration"]?["registration_token"]?.stringValue == AdminServerConfig.redacted)
            #expect(json["registration"]?["enabled"]?.boolValue == true)
            #expect(json["media"]?["max_upload_bytes"]?.intValue == 12_345_678)
            #expect(json["actors"]?["rooms"]?["max_resident"]?.intValue == 10_000)
            let conninfo = try #require(json["database"]?["postgres_conninfo"]?.stringValue)
            if backend == "sqlite" {
                #expect(conninfo == "host=db.internal user=myelin password=<redacted> dbname=myelin")
            }
            #expect(json["admin_page"]?["enabled"]?.boolValue == false)
        }
    }

    @Test func connectionStringsLoseTheirPasswordsOnly() {
        let (a, foundA) = ConnectionString.redactingPasswords("host=x password='a b\\'c' user=u")
        #expect(a == "host=x password='<redacted>' user=u")
        #expect(foundA == ["a b\\'c"])
        let (b, foundB) = ConnectionString.redactingPasswords("postgresql://me:hunter22@db:5432/m?sslmode=require&password=zz9")
        #expect(b == "postgresql://me:<redacted>@db:5432/m?sslmode=require&password=<redacted>")
        #expect(foundB.sorted() == ["hunter22", "zz9"])
        #expect(ConnectionString.redactingPasswords("host=127.0.0.1 dbname=m").0 == "host=127.0.0.1 dbname=m")
        #expect(AdminServerConfig.isSecretKey("turn_shared_secret"))
        #expect(AdminServerConfig.isSecretKey("macaroon_secret_key"))
        #expect(!AdminServerConfig.isSecretKey("refresh_token_lifetime_ms"))
        #expect(!AdminServerConfig.isSecretKey("signing_key_path"))
    }

    // MARK: Logs

    @Test(arguments: MediaTest.backends)
    func logsShowALineARequestLoggedFilteredByLevel(backend: String) async throws {
        try await Self.withFixture(backend) { f in
            // Reading the configuration logs a notice naming the admin.
            #expect(try await f.admin.call("GET", "\(Self.v1)/config").status == 200)
            let notices = try await f.admin.call("GET", "\(Self.v1)/logs?level=notice&limit=1000")
            #expect(notices.status == 200)
            let lines = notices.json["logs"]?.arrayValue ?? []
            let line = lines.first { $0["message"]?.stringValue?.contains("@root:localhost read the configuration") == true }
            #expect(line != nil, "\(notices.json)")
            #expect(line?["level"]?.stringValue == "NOTICE")
            #expect(line?["timestamp"]?.stringValue?.hasSuffix("Z") == true)
            #expect(lines.allSatisfy { ["NOTICE", "WARNING", "ERROR", "CRITICAL"].contains($0["level"]?.stringValue ?? "") })

            let errors = try await f.admin.call("GET", "\(Self.v1)/logs?level=ERROR")
            #expect(errors.status == 200)
            #expect(!(errors.json["logs"]?.arrayValue ?? []).contains { $0["message"]?.stringValue?.contains("read the configuration") == true })

            for _ in 0..<3 { _ = try await f.admin.call("GET", "\(Self.v1)/config") }
            let one = try await f.admin.call("GET", "\(Self.v1)/logs?limit=1")
            #expect(one.json["logs"]?.arrayValue?.count == 1)
            #expect(try await f.admin.call("GET", "\(Self.v1)/logs?limit=-1").errcode == "M_INVALID_PARAM")
            #expect(try await f.admin.call("GET", "\(Self.v1)/logs?limit=99999999999999999999999").errcode == "M_INVALID_PARAM")
            #expect(try await f.admin.call("GET", "\(Self.v1)/logs?level=loud").status == 400)
            // A huge but valid limit is capped.
            let capped = try await f.admin.call("GET", "\(Self.v1)/logs?limit=1000000")
            #expect(capped.status == 200)
            #expect((capped.json["logs"]?.arrayValue?.count ?? .max) <= AdminServer.maxLogLimit)
        }
    }

    @Test func theLogRingStaysBoundedAndKeepsTheNewestLines() {
        let ring = LogRing(capacity: 8)
        for n in 0..<50 { ring.append(level: n % 2 == 0 ? .info : .error, label: "t", message: "line \(n)") }
        #expect(ring.count == 8)
        let all = ring.recent(limit: 100, minimum: .trace)
        #expect(all.map(\.message) == (42..<50).map { "line \($0)" })
        let errors = ring.recent(limit: 2, minimum: .error)
        #expect(errors.map(\.message) == ["line 47", "line 49"])
        let long = String(repeating: "x", count: LogRing.maxMessageBytes * 3)
        ring.append(level: .info, label: "t", message: long)
        #expect((ring.recent(limit: 1, minimum: .trace).first?.message.utf8.count ?? .max) <= LogRing.maxMessageBytes + 3)

        // A logger attached to a ring writes there at the ring's level, and to its own
        // handler only at its own level.
        var quiet = Logger(label: "quiet") { _ in SwiftLogNoOpLogHandler() }
        quiet.logLevel = .error
        let other = LogRing(capacity: 4)
        let logger = other.attach(to: quiet, level: .info)
        logger.debug("not kept")
        logger.info("kept")
        #expect(other.recent(limit: 10, minimum: .trace).map(\.message) == ["kept"])
        #expect(LogRing.ring(of: logger) === other)
    }

    @Test func timestampsAreRFC3339InUTC() {
        #expect(Timestamp.iso8601(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.iso8601(milliseconds: 1_770_854_400_123) == "2026-02-12T00:00:00.123Z")
        #expect(Timestamp.iso8601(milliseconds: 951_825_599_999) == "2000-02-29T11:59:59.999Z")
    }

    // MARK: Runtime

    @Test(arguments: MediaTest.backends)
    func runtimeShowsPoolsLimitsLongPollsAndLatency(backend: String) async throws {
        try await Self.withFixture(backend, { c in
            c.actors.rooms.maxResident = 77
            c.actors.mediaUploads.idleTimeoutSeconds = 33
            c.metrics.enabled = true
        }) { f in
            let room = try #require(try await f.alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let first = try await f.alice.call("GET", "/sync")
            let since = try #require(first.json["next_batch"]?.stringValue)
            // A long-poll on a connection of its own, woken later by a message.
            let poller = try MatrixTestClient(port: f.port, token: f.alice.token)
            let poll = Task { try await poller.call("GET", "/sync?since=\(since)&timeout=60000") }

            let held = try await Self.eventually {
                let r = try await f.admin.call("GET", "/_myelin/admin/api/runtime").json
                return (r["sync"]?["long_polls_held"]?.intValue ?? 0) >= 1
            }
            #expect(held, "the long-poll is counted")

            let runtime = try await f.admin.call("GET", "/_myelin/admin/api/runtime")
            #expect(runtime.status == 200)
            let json = runtime.json
            let rooms = try #require(json["actors"]?["rooms"])
            #expect(rooms["max_resident"]?.intValue == 77)
            #expect((rooms["resident"]?.intValue ?? 0) >= 1)
            #expect((rooms["activations"]?.intValue ?? 0) >= 1)
            #expect(json["actors"]?["media_uploads"]?["idle_timeout_seconds"]?.intValue == 33)
            for kind in ["sessions", "federation_destinations", "pushers", "notifiers"] {
                #expect(json["actors"]?[kind]?["resident"]?.intValue != nil, "\(kind)")
            }
            #expect((json["actors"]?["sessions"]?["resident"]?.intValue ?? 0) >= 2)
            #expect(json["limits"]?["rooms"]?["max_resident"]?.intValue == 77)
            let transport = try #require(json["transport"])
            #expect((transport["requests_total"]?.intValue ?? 0) >= 4)
            #expect((transport["open_connections"]?.intValue ?? 0) >= 2)
            #expect(transport["p99_ms"]?.doubleValue != nil)
            let counts = transport["latency_bucket_counts"]?.arrayValue ?? []
            #expect(counts.count == Metrics.bucketBounds.count + 1)
            #expect(counts.reduce(0) { $0 + ($1.intValue ?? 0) } >= 4)

            let metrics = try await f.admin.raw.request("GET", "/_myelin/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.text.contains("myelin_actors_max_resident{kind=\"rooms\"} 77"))
            #expect(metrics.text.contains("myelin_sync_long_polls 1"))
            #expect(metrics.text.contains("myelin_http_request_duration_seconds_bucket{le=\"+Inf\"}"))
            // The store's write path (issue 22), on the backend the server runs on.
            let label = "backend=\"\(backend)\""
            #expect(metrics.text.contains("# TYPE myelin_db_commit_seconds histogram"))
            let commits = metrics.text.split(separator: "\n")
                .first { $0.hasPrefix("myelin_db_commit_seconds_count{\(label)}") }
                .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
            #expect(commits >= 3, "registrations and the room's creation committed")
            #expect(metrics.text.contains("myelin_db_write_queue_seconds_bucket{\(label),le=\"+Inf\"}"))
            #expect(metrics.text.contains("myelin_db_transaction_seconds_sum{\(label)}"))
            #expect(metrics.text.contains("myelin_db_checkpoint_seconds_count{\(label)}"))
            #expect(metrics.text.contains("myelin_db_checkpoints_total{\(label),mode=\"passive\"}"))

            let sent = try await f.alice.call("PUT", "/rooms/\(room)/send/m.room.message/wake", ["msgtype": "m.text", "body": "wake"])
            #expect(sent.status == 200)
            let woke = try await poll.value
            #expect(woke.status == 200)
            let released = try await Self.eventually {
                try await f.admin.call("GET", "/_myelin/admin/api/runtime").json["sync"]?["long_polls_held"]?.intValue == 0
            }
            #expect(released)
        }
    }

    @Test func runtimeCountsEvictionsPastTheConfiguredLimit() async throws {
        try await Self.withFixture("sqlite", { $0.actors.rooms.maxResident = 1; $0.metrics.enabled = true }) { f in
            for _ in 0..<3 {
                #expect(try await f.alice.call("POST", "/createRoom", [:]).status == 200)
            }
            let rooms = try #require(try await f.admin.call("GET", "/_myelin/admin/api/runtime").json["actors"]?["rooms"])
            #expect(rooms["max_resident"]?.intValue == 1)
            #expect((rooms["resident"]?.intValue ?? .max) <= 1)
            #expect((rooms["activations"]?.intValue ?? 0) >= 3)
            #expect((rooms["evictions"]?.intValue ?? 0) >= 2)
            // The same counters on the Prometheus page, which `myelin-bench --metrics-url`
            // scrapes without a token for activations/s, evictions/s and resident rooms.
            let page = try await f.admin.raw.request("GET", "/_myelin/metrics").text
            func sample(_ name: String) -> Int? {
                page.split(separator: "\n").first { $0.hasPrefix(name + " ") }
                    .flatMap { Int($0.split(separator: " ").last ?? "") }
            }
            #expect((sample("myelin_actor_activations_total{kind=\"rooms\"}") ?? 0) >= 3)
            #expect((sample("myelin_actor_evictions_total{kind=\"rooms\"}") ?? 0) >= 2)
            #expect((sample("myelin_actors_resident{kind=\"rooms\"}") ?? .max) <= 1)
            #expect(sample("myelin_actor_idle_deactivations_total{kind=\"rooms\"}") != nil)
        }
    }

    @Test func histogramQuantilesUseBucketBounds() {
        #expect(Metrics.bucket(forMicros: 0) == 0)
        #expect(Metrics.bucket(forMicros: 50) == 0)
        #expect(Metrics.bucket(forMicros: 51) == 1)
        #expect(Metrics.bucket(forMicros: Int.max) == Metrics.bucketBounds.count)
        var counts = [Int](repeating: 0, count: Metrics.bucketBounds.count + 1)
        counts[2] = 98   // ≤ 200 µs
        counts[9] = 2    // ≤ 50 ms
        #expect(Metrics.Snapshot.quantile(0.5, of: counts) == 200)
        #expect(Metrics.Snapshot.quantile(0.99, of: counts) == 50_000)
        #expect(Metrics.Snapshot.quantile(0.99, of: [Int](repeating: 0, count: 3)) == nil)
        #expect(StoreHistogram.seconds(micros: 1_500) == "0.0015")
        #expect(StoreHistogram.seconds(micros: 2_000_000) == "2")
    }

    // MARK: The admin page

    /// The repository's `admin-page/`.
    static var pageDirectory: String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/AppTests/AdminServerTests.swift
        return parts.joined(separator: "/") + "/admin-page"
    }

    @Test func theAdminPageSectionIsReadFromTheFile() throws {
        let configuration = try ConfigurationLoader.load(yaml: "admin_page:\n  enabled: true\n  directory: /srv/myelin/admin-page\n")
        #expect(configuration.adminPage.enabled)
        #expect(configuration.adminPage.directory == "/srv/myelin/admin-page")
        #expect(try ConfigurationLoader.load(yaml: "").adminPage == Configuration.AdminPage())
        #expect(Configuration().adminPage.enabled == false)
        #expect(ConfigurationTemplate.render(serverName: "example.org").contains("admin_page:\n  enabled: false\n  directory: admin-page"))
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "admin_page:\n  enabeld: true\n") }
    }

    @Test func thePageIsNotServedUnlessEnabled() async throws {
        try await withMyelin({ $0.adminPage.directory = Self.pageDirectory }) { port, _ in
            let client = try RawClient(port: port)
            for path in ["/_myelin/admin/", "/_myelin/admin/index.html", "/_myelin/admin/app.js", "/_myelin/admin"] {
                let reply = try await client.request("GET", path)
                #expect(reply.status == 404, "\(path)")
            }
        }
    }

    @Test func thePageIsServedWithItsHeadersAndNothingElse() async throws {
        // A directory with the page and things that must never be served.
        let directory = makeTemporaryDirectory()
        for name in ["index.html", "app.js", "style.css"] {
            let bytes = try #require(FileError.read(Self.pageDirectory + "/" + name))
            #expect(Self.write(directory + "/" + name, bytes))
        }
        #expect(Self.write(directory + "/.env", "SECRET_IN_DOTFILE=1"))
        #expect(Self.write(directory + "/notes.txt", "SECRET_IN_TXT=1"))
        mkdir(directory + "/sub", 0o755)
        #expect(Self.write(directory + "/sub/inner.html", "SECRET_IN_SUBDIR=1"))
        #expect(Self.write(directory + "/../myelin-admin-outside.html", "SECRET_OUTSIDE=1"))
        symlink("/etc/hostname", directory + "/host.html")

        try await withMyelin({ $0.adminPage.enabled = true; $0.adminPage.directory = directory }) { port, _ in
            let client = try RawClient(port: port)
            let index = try await client.request("GET", "/_myelin/admin/")
            #expect(index.status == 200)
            #expect(index.header("Content-Type") == "text/html; charset=utf-8")
            #expect(index.header("Content-Security-Policy")?.contains("default-src 'none'") == true)
            #expect(index.header("Content-Security-Policy")?.contains("script-src 'self'") == true)
            #expect(index.header("Cache-Control") == "no-cache")
            #expect(index.header("X-Content-Type-Options") == "nosniff")
            #expect(index.text.contains("<script src=\"app.js\""))
            #expect(try await client.request("GET", "/_myelin/admin/index.html").text == index.text)
            let script = try await client.request("GET", "/_myelin/admin/app.js")
            #expect(script.status == 200)
            #expect(script.header("Content-Type") == "text/javascript; charset=utf-8")
            #expect(!script.text.contains("innerHTML"))
            let style = try await client.request("GET", "/_myelin/admin/style.css")
            #expect(style.header("Content-Type") == "text/css; charset=utf-8")
            let redirect = try await client.request("GET", "/_myelin/admin")
            #expect(redirect.status == 302)
            #expect(redirect.header("Location") == "/_myelin/admin/")

            let refused = [
                "/_myelin/admin/../../Package.swift", "/_myelin/admin/%2e%2e/%2e%2e/Package.swift",
                "/_myelin/admin/%2e%2e%2f%2e%2e%2fPackage.swift", "/_myelin/admin/..%2F..%2FPackage.swift",
                "/_myelin/admin/%2E%2E%5Cmyelin-admin-outside.html", "/_myelin/admin/..%2fmyelin-admin-outside.html",
                "/_myelin/admin/%252e%252e%252fmyelin-admin-outside.html", "/_myelin/admin/.env",
                "/_myelin/admin/%2eenv", "/_myelin/admin/notes.txt", "/_myelin/admin/sub/inner.html",
                "/_myelin/admin/sub%2finner.html", "/_myelin/admin/host.html", "/_myelin/admin/index.html%00.js",
                "/_myelin/admin//etc/hostname", "/_myelin/admin/missing.js",
            ]
            for path in refused {
                let reply = try await RawClient(port: port).request("GET", path)
                #expect(reply.status == 404 || reply.status == 400, "\(path) → \(reply.status)")
                #expect(!reply.text.contains("SECRET_"), "\(path)")
                #expect(!reply.text.contains("swift-tools-version"), "\(path)")
            }
        }
    }

    static func write(_ path: String, _ text: String) -> Bool {
        guard let file = fopen(path, "wb") else { return false }
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        return fwrite(bytes, 1, bytes.count, file) == bytes.count
    }
}
