import Matrix
import Persistence
import Testing
@testable import App

@Suite("Configuration")
struct ConfigurationTests {
    @Test func emptyFileGivesDefaults() throws {
        #expect(try ConfigurationLoader.load(yaml: "") == Configuration())
        let defaults = Configuration()
        #expect(defaults.serverName == "localhost")
        #expect(defaults.listeners == [.init(host: "127.0.0.1", port: 8008)])
        #expect(defaults.database.backend == .sqlite)
        #expect(defaults.resolvedSQLitePath == "./data/myelin.db")
    }

    @Test func generatedFileLoadsBackToTheDefaults() throws {
        let text = ConfigurationTemplate.render(serverName: "example.org")
        var expected = Configuration()
        expected.serverName = "example.org"
        expected.registration.enabled = false  // generate-config writes registration off
        #expect(try ConfigurationLoader.load(yaml: text) == expected)
        // Every section of the architecture is documented.
        for section in ["server_name", "listeners", "database", "transport", "actors", "registration",
                        "rate_limits", "media", "federation", "logging", "metrics"] {
            #expect(text.contains("\n\(section):"))
        }
    }

    @Test func valuesAreRead() throws {
        let configuration = try ConfigurationLoader.load(yaml: """
            server_name: example.org
            listeners:
              - host: 0.0.0.0
                port: 9000
            database:
              backend: postgres
              postgres:
                conninfo: "host=db dbname=m"
                pool_size: 20
            transport:
              loops: 3
              max_json_body_bytes: 1_048_576
            actors:
              rooms:
                max_resident: 500
                idle_timeout_s: 30
            registration:
              enabled: true
              shared_secret: s3cret
            """)
        #expect(configuration.serverName == "example.org")
        #expect(configuration.listeners == [.init(host: "0.0.0.0", port: 9000)])
        #expect(configuration.database.backend == .postgres)
        #expect(configuration.database.postgresConninfo == "host=db dbname=m")
        #expect(configuration.database.postgresPoolSize == 20)
        #expect(configuration.transport.loops == 3)
        #expect(configuration.transport.maxJSONBodyBytes == 1_048_576)
        #expect(configuration.actors.rooms == .init(maxResident: 500, idleTimeoutSeconds: 30))
        #expect(configuration.registration.enabled)
        #expect(configuration.registration.sharedSecret == "s3cret")
    }

    @Test func sqliteCheckpointAndSynchronousAreRead() throws {
        #expect(Configuration().database.sqliteOptions == SQLiteOptions(checkpointPages: 1_000, synchronous: .normal))
        let configuration = try ConfigurationLoader.load(yaml: """
            database:
              sqlite:
                checkpoint_pages: 4000
                synchronous: full
            """)
        #expect(configuration.database.sqliteOptions == SQLiteOptions(checkpointPages: 4_000, synchronous: .full))
        guard case .sqlite(_, _, let options) = configuration.databaseConfiguration else {
            Issue.record("not SQLite")
            return
        }
        #expect(options.checkpointPages == 4_000)
        let automatic = try ConfigurationLoader.load(yaml: "database:\n  sqlite:\n    checkpoint_pages: 0")
        #expect(automatic.database.sqliteOptions.checkpointPages == 0)
    }

    @Test func transportHandlersAreRead() throws {
        #expect(Configuration().transport.handlers == .loops)
        #expect(try ConfigurationLoader.load(yaml: "transport:\n  handlers: workers").transport.handlers == .workers)
        #expect(try ConfigurationLoader.load(yaml: "transport:\n  handlers: loops").transport.handlers == .loops)
    }

    @Test func passwordHashCostIsRead() throws {
        #expect(Configuration().security.passwordHashCost == .interactive)
        #expect(try ConfigurationLoader.load(yaml: "security:\n  password_hash_cost: minimum").security.passwordHashCost == .minimum)
        #expect(try ConfigurationLoader.load(yaml: "security:\n  password_hash_cost: moderate").security.passwordHashCost == .moderate)
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "security:\n  password_hash_cost: cheap") }
    }

    @Test func registrationKeysAreRead() throws {
        #expect(Configuration().registration.enabled)  // no file: open registration on localhost
        let configuration = try ConfigurationLoader.load(yaml: """
            registration:
              enabled: false
              registration_token: abc
            rate_limits:
              enabled: false
            presence:
              enabled: false
            """)
        #expect(!configuration.registration.enabled)
        #expect(configuration.registration.registrationToken == "abc")
        #expect(!configuration.rateLimits.enabled)
        #expect(!configuration.presence.enabled)
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "registration:\n  require_token: true") }
    }

    @Test(arguments: [
        ("servr_name: x", "servr_name: unknown key"),
        ("transport:\n  loopz: 2", "transport.loopz: unknown key"),
        ("transport:\n  loops: many", "transport.loops: expected an integer, not 'many'"),
        ("transport:\n  loops: -1", "transport.loops: -1 is out of range 0...256"),
        ("transport:\n  handlers: threads", "transport.handlers: expected loops or workers, not 'threads'"),
        ("database:\n  backend: mysql", "database.backend: must be sqlite or postgres, not 'mysql'"),
        ("actors:\n  rooms:\n    max_resident: 0", "actors.rooms.max_resident: 0 is out of range 1...100000000"),
        ("listeners:\n  - host: 127.0.0.1\n    prot: 80", "listeners[0].prot: unknown key"),
        ("registration:\n  enabled: maybe", "registration.enabled: expected true or false, not 'maybe'"),
        ("transport: 5", "transport: expected a mapping of keys to values"),
        ("server_name: 'bad name!'", "server_name: 'bad name!' is not a valid server name"),
        ("database:\n  sqlite:\n    checkpoint_pages: 10",
         "database.sqlite.checkpoint_pages: must be 0 (SQLite's automatic checkpoint) or 64...1000000"),
        ("database:\n  sqlite:\n    checkpoint_pages: 2000000",
         "database.sqlite.checkpoint_pages: 2000000 is out of range 0...1000000"),
        ("database:\n  sqlite:\n    synchronous: extra", "database.sqlite.synchronous: must be normal or full, not 'extra'"),
    ])
    func badValuesNameTheirKeyPath(_ yaml: String, _ message: String) {
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: yaml) }
        do {
            _ = try ConfigurationLoader.load(yaml: yaml)
        } catch {
            #expect("\(error)" == message)
        }
    }

    @Test func commandLineOverridesTheFile() throws {
        let configuration = try Serve.resolve(configFile: nil, listen: "127.0.0.1:9999", dataDir: "/tmp/x")
        #expect(configuration.listeners == [.init(host: "127.0.0.1", port: 9999)])
        #expect(configuration.dataDirectory == "/tmp/x")
        #expect(throws: ConfigurationError.self) { try Serve.resolve(configFile: nil, listen: "nonsense", dataDir: nil) }
        #expect(throws: ConfigurationError.self) { try Serve.resolve(configFile: "/nonexistent/file.yaml", listen: nil, dataDir: nil) }
    }
}

@Suite("Router")
struct RouterTests {
    let router = Router { routes in
        routes.client(.get, "/rooms/{roomId}/state/{eventType}/{stateKey}") { _ in .json(["a": 1]) }
        routes.client(.put, "/rooms/{roomId}/send/{eventType}/{txnId}") { _ in .json(["b": 1]) }
        routes.get("/_matrix/media/v3/download/{serverName}/{mediaId}") { _ in .json(["c": 1]) }
        routes.get("/_matrix/client/v3/admin/{*rest}") { _ in .json(["d": 1]) }
    }

    @Test func parametersArePercentDecodedAndVersionsShareHandlers() {
        for version in ["r0", "v3"] {
            guard case .found(_, let parameters) = router.match(method: .get, path: "/_matrix/client/\(version)/rooms/%21abc%3Aexample.org/state/m.room.member/%40alice%3Ax") else {
                Issue.record("no match for \(version)")
                continue
            }
            #expect(parameters["roomId"] == "!abc:example.org")
            #expect(parameters["eventType"] == "m.room.member")
            #expect(parameters["stateKey"] == "@alice:x")
        }
    }

    @Test func wrongMethodAndNotFound() {
        guard case .wrongMethod = router.match(method: .post, path: "/_matrix/client/v3/rooms/r/send/t/1") else {
            Issue.record("expected wrong method"); return
        }
        guard case .notFound = router.match(method: .get, path: "/_matrix/client/v4/rooms/r/send/t/1") else {
            Issue.record("expected not found"); return
        }
        guard case .notFound = router.match(method: .get, path: "/_matrix/client/v3/rooms/%zz/state/a/b") else {
            Issue.record("bad escapes do not match"); return
        }
    }

    @Test func emptyStateKeyAndRestParameters() {
        guard case .found(_, let parameters) = router.match(method: .get, path: "/_matrix/client/v3/rooms/r/state/m.room.name/") else {
            Issue.record("an empty trailing state key should match"); return
        }
        #expect(parameters["stateKey"] == "")
        guard case .found(_, let rest) = router.match(method: .get, path: "/_matrix/client/v3/admin/a/b%20c") else {
            Issue.record("rest parameter"); return
        }
        #expect(rest["rest"] == "a/b c")
    }
}

@Suite("Request bodies")
struct RequestBodyTests {
    @Test(arguments: [("", "M_NOT_JSON"), ("{not json", "M_NOT_JSON"), ("[1,2]", "M_BAD_JSON"),
                      ("\"text\"", "M_BAD_JSON"), ("{\"a\":1,\"a\":2}", "M_NOT_JSON")])
    func badBodiesAreMatrixErrors(_ body: String, _ code: String) {
        do {
            _ = try RequestContext.jsonObject(from: Array(body.utf8))
            Issue.record("accepted \(body)")
        } catch let error as MatrixError {
            #expect(error.code.rawValue == code)
            #expect(error.status == 400)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func objectBodyParses() throws {
        let object = try RequestContext.jsonObject(from: Array("{\"type\":\"m.login.password\"}".utf8))
        #expect(object["type"] == "m.login.password")
    }
}
