import Glibc
import Matrix
import Persistence
import TestSupport
import Testing
@testable import App

@Suite("Myelin endpoints over real sockets")
struct EndpointTests {
    @Test func versionsListsSupportedVersions() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let response = try await client.request("GET", "/_matrix/client/versions")
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "application/json")
            let json = try JSON.parse(response.body)
            let versions = json["versions"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(versions.contains("v1.11"))
            #expect(versions.contains("r0.6.1"))
            #expect(json["unstable_features"]?.objectValue != nil)
        }
    }

    @Test func unknownEndpointIsM_UNRECOGNIZED() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let response = try await client.request("GET", "/_matrix/client/v3/nonexistent/thing")
            #expect(response.status == 404)
            let json = try JSON.parse(response.body)
            #expect(json["errcode"] == "M_UNRECOGNIZED")
            #expect(json["error"]?.stringValue != nil)
        }
    }

    @Test func wrongMethodIs405() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let response = try await client.request("DELETE", "/_matrix/client/versions")
            #expect(response.status == 405)
            #expect(try JSON.parse(response.body)["errcode"] == "M_UNRECOGNIZED")
        }
    }

    @Test func tenMebibyteJSONBodyIs413() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            client.send("POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(10 << 20)\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 413)
            #expect(try JSON.parse(response.body)["errcode"] == "M_TOO_LARGE")
        }
    }

    @Test func twentyKibibytesOfHeadersIs431() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let response = try await client.request("GET", "/_matrix/client/versions",
                                                    headers: ["X-Padding": String(repeating: "p", count: 20 * 1024)])
            #expect(response.status == 431)
        }
    }

    @Test func garbageIs400AndOthersAreServed() async throws {
        try await withMyelin { port, _ in
            let bad = try RawClient(port: port)
            bad.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a])
            #expect(try await bad.read().status == 400)
            let good = try RawClient(port: port)
            #expect(try await good.request("GET", "/_matrix/client/versions").status == 200)
        }
    }

    @Test func corsOnEveryResponseAndPreflightOnEveryPath() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let preflight = try await client.request("OPTIONS", "/_matrix/client/v3/rooms/%21a%3Ab/send/m.room.message/1",
                                                     headers: ["Origin": "https://app.element.io",
                                                               "Access-Control-Request-Method": "PUT"])
            #expect(preflight.status == 200)
            #expect(preflight.header("Access-Control-Allow-Origin") == "*")
            #expect(preflight.header("Access-Control-Allow-Methods")?.contains("PUT") == true)
            #expect(preflight.header("Access-Control-Allow-Headers")?.contains("Authorization") == true)
            let missing = try await client.request("GET", "/nope")
            #expect(missing.header("Access-Control-Allow-Origin") == "*")
        }
    }

    @Test func healthWellKnownAndWelcome() async throws {
        try await withMyelin({
            $0.wellKnown.clientBaseURL = "https://matrix.example.org"
            $0.wellKnown.server = "matrix.example.org:443"
        }) { port, _ in
            let client = try RawClient(port: port)
            let health = try await client.request("GET", "/health")
            #expect(health.status == 200 && health.text == "OK")
            let wellKnownClient = try JSON.parse(try await client.request("GET", "/.well-known/matrix/client").body)
            #expect(wellKnownClient["m.homeserver"]?["base_url"] == "https://matrix.example.org")
            let wellKnownServer = try JSON.parse(try await client.request("GET", "/.well-known/matrix/server").body)
            #expect(wellKnownServer["m.server"] == "matrix.example.org:443")
            let welcome = try await client.request("GET", "/")
            #expect(welcome.status == 200)
            #expect(welcome.header("Content-Type")?.hasPrefix("text/html") == true)
            #expect(welcome.text.contains("Myelin"))
            let version = try JSON.parse(try await client.request("GET", "/_synapse/admin/v1/server_version").body)
            #expect(version["server_version"]?.stringValue?.contains(MyelinVersion.string) == true)
        }
    }

    @Test func metricsWhenEnabled() async throws {
        try await withMyelin({ $0.metrics.enabled = true }) { port, _ in
            let client = try RawClient(port: port)
            _ = try await client.request("GET", "/_matrix/client/versions")
            _ = try await client.request("GET", "/nope")
            let page = try await client.request("GET", "/_myelin/metrics").text
            #expect(page.contains("myelin_http_responses_total{class=\"2xx\"} 1"))
            #expect(page.contains("myelin_http_responses_total{class=\"4xx\"} 1"))
            #expect(page.contains("myelin_http_open_connections 1"))
        }
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            #expect(try await client.request("GET", "/_myelin/metrics").status == 404)
        }
    }

    @Test func wellKnownNotConfiguredIs404() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let response = try await client.request("GET", "/.well-known/matrix/client")
            #expect(response.status == 404)
            #expect(try JSON.parse(response.body)["errcode"] == "M_NOT_FOUND")
        }
    }

    @Test func headIsServedByGetHandlers() async throws {
        try await withMyelin { port, _ in
            let client = try RawClient(port: port)
            let response = try await client.request("HEAD", "/_matrix/client/versions")
            #expect(response.status == 200)
            #expect(Int(response.header("Content-Length") ?? "") ?? 0 > 0)
            #expect(try await client.request("GET", "/health").text == "OK")
        }
    }

    @Test func keyServerResponseVerifiesAndKeyPersists() async throws {
        let directory = makeTemporaryDirectory()
        var firstKey: String?
        for _ in 0..<2 {
            try await withMyelin({ $0.dataDirectory = directory; $0.serverName = "example.test" }) { port, _ in
                let client = try RawClient(port: port)
                let response = try await client.request("GET", "/_matrix/key/v2/server")
                #expect(response.status == 200)
                let json = try JSON.parse(response.body)
                #expect(json["server_name"] == "example.test")
                let keys = json["verify_keys"]?.objectValue ?? [:]
                #expect(keys.count == 1)
                let (keyID, entry) = try #require(keys.first)
                let verifyKey = try VerifyKey(base64: try #require(entry["key"]?.stringValue))
                try JSONSignatures.verify(json, entity: "example.test", keyID: keyID, key: verifyKey)
                if let firstKey { #expect(firstKey == keyID) } else { firstKey = keyID }
                #expect((json["valid_until_ts"]?.intValue ?? 0) > Clock.nowMilliseconds())
            }
        }
    }
}

@Suite("Start-up")
struct StartupTests {
    @Test func startsOnSQLiteWithMigrationsApplied() async throws {
        let directory = makeTemporaryDirectory()
        try await withMyelin({ $0.dataDirectory = directory }) { port, configuration in
            let client = try RawClient(port: port)
            #expect(try await client.request("GET", "/health").status == 200)
        }
        let database = try await Database.open(.sqlite(path: directory + "/myelin.db", readerCount: 1))
        let versions = try await database.read { try $0.query("SELECT version FROM schema_migrations", []).count }
        #expect(versions == Schema.migrations.count)
        await database.close()
    }

    @Test(.enabled(if: Environment.postgres != nil))
    func startsOnPostgreSQL() async throws {
        try await withMyelin({
            $0.database.backend = .postgres
            $0.database.postgresConninfo = Environment.postgres!
            $0.database.postgresPoolSize = 2
        }) { port, _ in
            let client = try RawClient(port: port)
            #expect(try await client.request("GET", "/_matrix/client/versions").status == 200)
        }
    }

    @Test func unreachableDatabaseFailsStartUp() async throws {
        var configuration = Configuration()
        configuration.dataDirectory = makeTemporaryDirectory()
        configuration.database.backend = .postgres
        configuration.database.postgresConninfo = "host=127.0.0.1 port=1 dbname=none connect_timeout=2"
        await #expect(throws: (any Error).self) {
            _ = try await MyelinServer(configuration: configuration, logger: .init(label: "t"), handlesSignals: false)
        }
    }
}

enum Environment {
    static var postgres: String? {
        guard let value = getenv("MYELIN_TEST_POSTGRES") else { return nil }
        return String(cString: value)
    }
}
