import Matrix
import Testing
import TestSupport
@testable import App

/// The users part of the admin API over a running server (real sockets) on SQLite and, when
/// the environment provides one, PostgreSQL: the listing's paging, filters and order,
/// deactivation (the user can no longer log in, their token stops working).
@Suite("Admin API: users")
struct AdminUsersTests {
    static let v1 = "/_synapse/admin/v1"
    static let v2 = "/_synapse/admin/v2"

    struct Fixture {
        let port: Int
        let server: MyelinServer
        let admin: MatrixTestClient
    }

    /// A server with shared-secret registration on `backend`, and an admin `root` made by it.
    static func withFixture(_ backend: String, _ body: (Fixture) async throws -> Void) async throws {
        try await MediaTest.withServer(backend, { $0.registration.sharedSecret = "s3cret" }) { server, port in
            let token = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            try await body(Fixture(port: port, server: server, admin: try MatrixTestClient(port: port, token: token)))
        }
    }

    static func user(_ f: Fixture, _ name: String, password: String = "correct horse") async throws -> MatrixTestClient {
        let (client, reply) = try await MatrixTestClient.registered(port: f.port, name, password: password)
        #expect(reply.status == 200, "\(reply.json)")
        return client
    }

    static func login(_ port: Int, _ name: String, _ password: String) async throws -> MatrixTestClient.Reply {
        try await MatrixTestClient(port: port).call("POST", "/login", [
            "type": "m.login.password", "identifier": ["type": "m.id.user", "user": .string(name)],
            "password": .string(password)])
    }

    static func names(_ reply: MatrixTestClient.Reply) -> [String] {
        reply.json["users"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
    }

    @Test(arguments: MediaTest.backends)
    func listingPagesFiltersAndOrders(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let alice = try await Self.user(f, "alice")
            _ = try await Self.user(f, "bob")
            _ = try await Self.user(f, "carol")
            #expect(try await alice.call("PUT", "/profile/@alice:localhost/displayname", ["displayname": "Wonderland"]).status == 200)

            let first = try await f.admin.call("GET", "\(Self.v2)/users?limit=2")
            #expect(first.status == 200)
            #expect(Self.names(first) == ["@alice:localhost", "@bob:localhost"])
            #expect(first.json["total"] == 4)
            #expect(first.json["next_token"] == "2")
            let second = try await f.admin.call("GET", "\(Self.v2)/users?limit=2&from=2")
            #expect(Self.names(second) == ["@carol:localhost", "@root:localhost"])
            #expect(second.json["next_token"] == nil)

            // The user object: Synapse's fields and the seed's.
            let aliceObject = try #require(first.json["users"]?[0])
            #expect(aliceObject["user_id"] == "@alice:localhost")
            #expect(aliceObject["displayname"] == "Wonderland")
            #expect(aliceObject["admin"] == false)
            #expect(aliceObject["deactivated"] == false)
            #expect(aliceObject["is_guest"] == false)
            #expect(aliceObject["locked"] == false)
            #expect((aliceObject["creation_ts"]?.intValue ?? 0) > 1_600_000_000_000)
            #expect((aliceObject["last_seen_ts"]?.intValue ?? 0) > 0)

            // `name` matches the localpart or the display name, case-insensitively.
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?name=wONDER")) == ["@alice:localhost"])
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?name=car")) == ["@carol:localhost"])
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?name=localhost")) == [])
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?user_id=bo")) == ["@bob:localhost"])
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?admins=true")) == ["@root:localhost"])
            #expect(try await f.admin.call("GET", "\(Self.v2)/users?admins=false").json["total"] == 3)
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?dir=b&limit=1")) == ["@root:localhost"])
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?order_by=displayname&dir=b&limit=1"))
                        == ["@alice:localhost"])
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?order_by=admin&dir=b&limit=1"))
                        == ["@root:localhost"])
            // The seed's nonce path (no token: the MAC authorizes shared-secret registration).
            #expect(try await MatrixTestClient(port: f.port).call("GET", "\(Self.v1)/register/nonce").json["nonce"]?.stringValue != nil)
            // The seed's path answers the same listing.
            let seed = try await f.admin.call("GET", "\(Self.v1)/users?limit=10")
            #expect(seed.json["total"] == 4)

            for bad in ["limit=-1", "from=x", "order_by=height", "dir=up", "guests=maybe", "limit=99999999999999999999"] {
                let reply = try await f.admin.call("GET", "\(Self.v2)/users?\(bad)")
                #expect(reply.status == 400, "\(bad)")
                #expect(reply.errcode == "M_INVALID_PARAM", "\(bad)")
            }
        }
    }

    @Test(arguments: MediaTest.backends)
    func deactivationEndsTheSessionAndRefusesLogin(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let carol = try await Self.user(f, "carol")
            let dave = try await Self.user(f, "dave")
            #expect(try await carol.call("GET", "/account/whoami").status == 200)

            let done = try await f.admin.call("POST", "\(Self.v1)/deactivate/@carol:localhost", ["erase": true])
            #expect(done.status == 200, "\(done.json)")
            #expect(done.json["id_server_unbind_result"] == "success")
            #expect(try await carol.call("GET", "/account/whoami").status == 401)
            let login = try await Self.login(f.port, "carol", "correct horse")
            #expect(login.status == 403)
            #expect(login.errcode == "M_USER_DEACTIVATED")

            // The seed's path, with an empty body.
            let seed = try await f.admin.call("POST", "\(Self.v1)/users/@dave:localhost/deactivate")
            #expect(seed.status == 200, "\(seed.json)")
            #expect(try await dave.call("GET", "/account/whoami").status == 401)

            // Deactivated users leave the default listing; `deactivated=true` brings them back
            // (v2), and v3 filters on it.
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users")) == ["@root:localhost"])
            let all = try await f.admin.call("GET", "\(Self.v2)/users?deactivated=true")
            #expect(Self.names(all) == ["@carol:localhost", "@dave:localhost", "@root:localhost"])
            #expect(all.json["users"]?[0]?["deactivated"] == true)
            #expect(all.json["users"]?[0]?["erased"] == true)
            #expect(all.json["users"]?[1]?["erased"] == false)
            #expect(Self.names(try await f.admin.call("GET", "/_synapse/admin/v3/users?deactivated=true"))
                        == ["@carol:localhost", "@dave:localhost"])

            let remote = try await f.admin.call("POST", "\(Self.v1)/deactivate/@x:elsewhere.example", [:])
            #expect(remote.status == 400)
            let missing = try await f.admin.call("POST", "\(Self.v1)/deactivate/@nobody:localhost", [:])
            #expect(missing.status == 404)
            let badErase = try await f.admin.call("POST", "\(Self.v1)/deactivate/@root:localhost", ["erase": "yes"])
            #expect(badErase.status == 400)
            #expect(try await f.admin.call("GET", "/account/whoami").status == 200)
        }
    }
}
