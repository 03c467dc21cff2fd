import Matrix
import Testing
import TestSupport
@testable import App
import Persistence
import Transport

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
            // Every order runs on both backends, ties broken by the id.
            for order in AdminUserStore.Order.allCases {
                for dir in ["f", "b"] {
                    let page = try await f.admin.call("GET", "\(Self.v2)/users?order_by=\(order.rawValue)&dir=\(dir)")
                    #expect(page.status == 200, "\(order.rawValue) \(dir): \(page.json)")
                    #expect(Set(Self.names(page)).count == 4, "\(order.rawValue) \(dir)")
                }
            }
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?order_by=creation_ts&limit=1")) == ["@root:localhost"])
            #expect(try await f.admin.call("GET", "\(Self.v2)/users?guests=false").json["total"] == 4)
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

    static func whoami(_ client: MatrixTestClient) async throws -> MatrixTestClient.Reply {
        try await client.call("GET", "/account/whoami")
    }

    static func loggedIn(_ port: Int, _ name: String, _ password: String) async throws -> MatrixTestClient {
        let reply = try await login(port, name, password)
        #expect(reply.status == 200, "\(reply.json)")
        return try MatrixTestClient(port: port, token: try #require(reply.json["access_token"]?.stringValue))
    }

    @Test(arguments: MediaTest.backends)
    func createLoginResetPasswordDeactivate(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let path = "\(Self.v2)/users/@newbie:localhost"
            let created = try await f.admin.call("PUT", path, ["password": "first pw", "displayname": "New Bie",
                                                                "threepids": [], "external_ids": []])
            #expect(created.status == 201, "\(created.json)")
            #expect(created.json["name"] == "@newbie:localhost")
            #expect(created.json["displayname"] == "New Bie")
            #expect(created.json["admin"] == false)
            let first = try await Self.loggedIn(f.port, "newbie", "first pw")
            #expect(try await Self.whoami(first).json["user_id"] == "@newbie:localhost")

            // Modify: 200; the seed's GET shows the change.
            let modified = try await f.admin.call("PUT", path, ["displayname": "Newer", "avatar_url": "mxc://localhost/abc"])
            #expect(modified.status == 200, "\(modified.json)")
            let seedGet = try await f.admin.call("GET", "\(Self.v1)/users/@newbie:localhost")
            #expect(seedGet.json["user_id"] == "@newbie:localhost")
            #expect(seedGet.json["displayname"] == "Newer")
            #expect(seedGet.json["avatar_url"] == "mxc://localhost/abc")
            #expect((seedGet.json["last_seen_ts"]?.intValue ?? 0) > 0)
            #expect(try await f.admin.call("PUT", path, ["avatar_url": "http://x"]).status == 400)
            #expect(try await f.admin.call("PUT", path, ["admin": "yes"]).status == 400)
            #expect(try await f.admin.call("GET", "\(Self.v2)/users/@ghost:localhost").status == 404)
            #expect(try await f.admin.call("GET", "\(Self.v2)/users/@x:elsewhere.example").status == 400)

            // Synapse's reset: devices logged out by default, the old token stops working.
            let reset = try await f.admin.call("POST", "\(Self.v1)/reset_password/@newbie:localhost", ["new_password": "second pw"])
            #expect(reset.status == 200, "\(reset.json)")
            let old = try await Self.whoami(first)
            #expect(old.status == 401)
            #expect(old.errcode == "M_UNKNOWN_TOKEN")
            #expect(try await Self.login(f.port, "newbie", "first pw").status == 403)
            let second = try await Self.loggedIn(f.port, "newbie", "second pw")
            // The seed's path, keeping the devices.
            let kept = try await f.admin.call("POST", "\(Self.v1)/users/@newbie:localhost/password",
                                              ["new_password": "third pw", "logout_devices": false])
            #expect(kept.status == 200)
            #expect(try await Self.whoami(second).status == 200)
            _ = try await Self.loggedIn(f.port, "newbie", "third pw")
            #expect(try await f.admin.call("POST", "\(Self.v1)/reset_password/@newbie:localhost", [:]).status == 400)

            // Deactivated through PUT: the token stops working, login is refused.
            #expect(try await f.admin.call("PUT", path, ["deactivated": true]).status == 200)
            #expect(try await Self.whoami(second).status == 401)
            #expect(try await Self.login(f.port, "newbie", "third pw").errcode == "M_USER_DEACTIVATED")
            #expect(try await f.admin.call("GET", path).json["deactivated"] == true)
            // Reactivation needs a password (as Synapse).
            #expect(try await f.admin.call("PUT", path, ["deactivated": false]).status == 400)
            #expect(try await f.admin.call("PUT", path, ["deactivated": false, "password": "fourth pw"]).status == 200)
            _ = try await Self.loggedIn(f.port, "newbie", "fourth pw")

            // The seed's DELETE: deactivated and erased.
            let deleted = try await f.admin.call("DELETE", "\(Self.v1)/users/@newbie:localhost")
            #expect(deleted.json["deleted"] == true)
            let after = try await f.admin.call("GET", path)
            #expect(after.json["deactivated"] == true)
            #expect(after.json["erased"] == true)
            #expect(after.json["displayname"] == .null)
            #expect(try await Self.login(f.port, "newbie", "fourth pw").status == 403)
        }
    }

    @Test(arguments: MediaTest.backends)
    func adminFlagTakesEffectOnTheNextRequest(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let alice = try await Self.user(f, "alice")
            #expect(try await alice.call("GET", "\(Self.v2)/users").status == 403)
            #expect(try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/admin").json["admin"] == false)
            #expect(try await f.admin.call("PUT", "\(Self.v1)/users/@alice:localhost/admin", ["admin": true]).status == 200)
            // The same token, no new login: the session re-read the flag.
            #expect(try await alice.call("GET", "\(Self.v2)/users").status == 200)
            #expect(try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/admin").json["admin"] == true)
            #expect(try await f.admin.call("PUT", "\(Self.v1)/users/@alice:localhost/admin", ["admin": false]).status == 200)
            #expect(try await alice.call("GET", "\(Self.v2)/users").status == 403)
            // Through PUT v2 too.
            #expect(try await f.admin.call("PUT", "\(Self.v2)/users/@alice:localhost", ["admin": true]).status == 200)
            #expect(try await alice.call("GET", "\(Self.v2)/users").status == 200)
            let capabilities = try await alice.call("GET", "/capabilities")
            #expect(capabilities.json["capabilities"]?["m.account_moderation"]?["lock"] == true)
            // No one demotes themselves.
            let demote = try await f.admin.call("PUT", "\(Self.v1)/users/@root:localhost/admin", ["admin": false])
            #expect(demote.status == 400)
            #expect(try await f.admin.call("PUT", "\(Self.v1)/users/@alice:localhost/admin", [:]).status == 400)
        }
    }

    @Test(arguments: MediaTest.backends)
    func devicesWhoisAndRooms(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let alice = try await Self.user(f, "alice")
            let phone = try await Self.loggedIn(f.port, "alice", "correct horse")
            let phoneDevice = try #require(try await Self.whoami(phone).json["device_id"]?.stringValue)
            let laptop = try await Self.loggedIn(f.port, "alice", "correct horse")
            let laptopDevice = try #require(try await Self.whoami(laptop).json["device_id"]?.stringValue)
            let base = "\(Self.v2)/users/@alice:localhost/devices"

            let list = try await f.admin.call("GET", base)
            #expect(list.json["total"] == 3)
            let ids = Set(list.json["devices"]?.arrayValue?.compactMap { $0["device_id"]?.stringValue } ?? [])
            #expect(ids.contains(phoneDevice) && ids.contains(laptopDevice))
            #expect(list.json["devices"]?[0]?["user_id"] == "@alice:localhost")

            #expect(try await f.admin.call("PUT", "\(base)/\(phoneDevice)", ["display_name": "Phone"]).status == 200)
            #expect(try await f.admin.call("GET", "\(base)/\(phoneDevice)").json["display_name"] == "Phone")
            #expect(try await f.admin.call("GET", "\(base)/NOSUCH").status == 404)

            // Whois, the admin API's and the client API's: a session per device, with its connection.
            for path in ["\(Self.v1)/whois/@alice:localhost", "/_matrix/client/v3/admin/whois/@alice:localhost"] {
                let whois = try await f.admin.call("GET", path)
                #expect(whois.status == 200, "\(path)")
                #expect(whois.json["user_id"] == "@alice:localhost")
                let connection = whois.json["devices"]?[phoneDevice]?["sessions"]?[0]?["connections"]?[0]
                #expect(connection?["ip"] == "127.0.0.1", "\(path): \(whois.json)")
                #expect((connection?["last_seen"]?.intValue ?? 0) > 0)
            }

            #expect(try await f.admin.call("DELETE", "\(base)/\(phoneDevice)").status == 200)
            #expect(try await Self.whoami(phone).status == 401)
            #expect(try await Self.whoami(laptop).status == 200)
            let many = try await f.admin.call("POST", "\(Self.v2)/users/@alice:localhost/delete_devices",
                                              ["devices": [.string(laptopDevice)]])
            #expect(many.status == 200)
            #expect(try await Self.whoami(laptop).status == 401)
            #expect(try await f.admin.call("GET", base).json["total"] == 1)
            #expect(try await f.admin.call("POST", base, ["device_id": "BRIDGE"]).status == 201)
            #expect(try await f.admin.call("GET", "\(base)/BRIDGE").json["device_id"] == "BRIDGE")
            #expect(try await f.admin.call("POST", base, [:]).status == 400)

            #expect(try await alice.call("PUT", "/user/@alice:localhost/account_data/org.example.note", ["a": 1]).status == 200)
            let data = try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/accountdata")
            #expect(data.json["account_data"]?["global"]?["org.example.note"]?["a"] == 1)

            // The user's rooms: Synapse's joined_rooms and the seed's rooms.
            let created = try await alice.call("POST", "/createRoom", ["name": "Garden"])
            let roomID = try #require(created.json["room_id"]?.stringValue)
            let joined = try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/joined_rooms")
            #expect(joined.json["joined_rooms"] == [.string(roomID)])
            #expect(joined.json["total"] == 1)
            let rooms = try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/rooms")
            #expect(rooms.json["total"] == 1)
            #expect(rooms.json["rooms"]?[0]?["room_id"] == .string(roomID))
            #expect(rooms.json["rooms"]?[0]?["name"] == "Garden")
            #expect(rooms.json["rooms"]?[0]?["joined_members"] == 1)
            #expect(rooms.json["rooms"]?[0]?["joined_local_members"] == 1)
            let memberships = try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/memberships")
            #expect(memberships.json["memberships"]?[roomID] == "join")
            #expect(try await f.admin.call("GET", "\(Self.v1)/users/@alice:localhost/pushers").json["total"] == 0)
            #expect(try await f.admin.call("GET", "\(Self.v1)/username_available?username=alice").errcode == "M_USER_IN_USE")
            #expect(try await f.admin.call("GET", "\(Self.v1)/username_available?username=zed").json["available"] == true)
            #expect(try await f.admin.call("GET", "\(Self.v1)/username_available?username=Zed").errcode == "M_INVALID_USERNAME")
        }
    }

    @Test(arguments: MediaTest.backends)
    func lockAndSuspend(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let bob = try await Self.user(f, "bob")
            let carol = try await Self.user(f, "carol")
            let roomID = try #require(try await bob.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await carol.call("POST", "/rooms/\(roomID)/join", [:]).status == 200)
            let carols = try #require(try await carol.call("PUT", "/rooms/\(roomID)/send/m.room.message/c1",
                                                           ["msgtype": "m.text", "body": "mine"]).json["event_id"]?.stringValue)
            let bobs = try #require(try await bob.call("PUT", "/rooms/\(roomID)/send/m.room.message/b1",
                                                        ["msgtype": "m.text", "body": "mine"]).json["event_id"]?.stringValue)
            let lock = "/_matrix/client/v1/admin/lock/@bob:localhost"
            let suspend = "/_matrix/client/v1/admin/suspend/@bob:localhost"

            // Locked: every request but logout answers 401 M_USER_LOCKED, soft logout; the
            // token survives the lock.
            #expect(try await f.admin.call("GET", lock).json["locked"] == false)
            let locked = try await f.admin.call("PUT", lock, ["locked": true])
            #expect(locked.status == 200)
            #expect(locked.json["locked"] == true)
            let refused = try await Self.whoami(bob)
            #expect(refused.status == 401)
            #expect(refused.errcode == "M_USER_LOCKED")
            #expect(refused.json["soft_logout"] == true)
            #expect(try await bob.call("GET", "/sync?timeout=0").errcode == "M_USER_LOCKED")
            #expect(try await Self.login(f.port, "bob", "correct horse").errcode == "M_USER_LOCKED")
            #expect(try await f.admin.call("GET", lock).json["locked"] == true)
            // Locked users leave the default listing (Synapse), `locked=true` shows them.
            #expect(!Self.names(try await f.admin.call("GET", "\(Self.v2)/users")).contains("@bob:localhost"))
            #expect(Self.names(try await f.admin.call("GET", "\(Self.v2)/users?locked=true")).contains("@bob:localhost"))
            #expect(try await f.admin.call("PUT", lock, ["locked": false]).status == 200)
            #expect(try await Self.whoami(bob).status == 200)

            // Suspended: reads work, actions answer 403 M_USER_SUSPENDED.
            #expect(try await f.admin.call("PUT", suspend, ["suspended": true]).json["suspended"] == true)
            #expect(try await f.admin.call("GET", suspend).json["suspended"] == true)
            #expect(try await f.admin.call("GET", "\(Self.v2)/users/@bob:localhost").json["suspended"] == true)
            let send = try await bob.call("PUT", "/rooms/\(roomID)/send/m.room.message/t1", ["msgtype": "m.text", "body": "hi"])
            #expect(send.status == 403)
            #expect(send.errcode == "M_USER_SUSPENDED")
            #expect(try await bob.call("POST", "/createRoom", [:]).errcode == "M_USER_SUSPENDED")
            #expect(try await bob.call("PUT", "/profile/@bob:localhost/displayname", ["displayname": "B"]).errcode == "M_USER_SUSPENDED")
            #expect(try await bob.call("GET", "/rooms/\(roomID)/messages?dir=b").status == 200)
            #expect(try await bob.call("GET", "/sync?timeout=0").status == 200)
            #expect(try await Self.whoami(bob).status == 200)
            // Redactions: their own events only.
            #expect(try await bob.call("PUT", "/rooms/\(roomID)/redact/\(carols)/r1", [:]).errcode == "M_USER_SUSPENDED")
            #expect(try await bob.call("PUT", "/rooms/\(roomID)/redact/\(bobs)/r2", [:]).status == 200)
            // Synapse's path lifts it.
            let lifted = try await f.admin.call("PUT", "\(Self.v1)/suspend/@bob:localhost", ["suspend": false])
            #expect(lifted.json["user_@bob:localhost_suspended"] == false)
            #expect(try await bob.call("PUT", "/rooms/\(roomID)/send/m.room.message/t2", ["msgtype": "m.text", "body": "hi"]).status == 200)

            // Not oneself, not another admin; not another server's user; not an unknown one.
            #expect(try await f.admin.call("PUT", "/_matrix/client/v1/admin/suspend/@root:localhost", ["suspended": true]).status == 403)
            #expect(try await f.admin.call("PUT", "/_matrix/client/v1/admin/lock/@x:elsewhere.example", ["locked": true]).errcode == "M_INVALID_PARAM")
            #expect(try await f.admin.call("GET", "/_matrix/client/v1/admin/lock/@ghost:localhost").errcode == "M_NOT_FOUND")
            #expect(try await f.admin.call("PUT", lock, ["locked": "yes"]).status == 400)

            // A locked user may still log out (spec), and that token is gone then.
            #expect(try await f.admin.call("PUT", lock, ["locked": true]).status == 200)
            #expect(try await bob.call("POST", "/logout", [:]).status == 200)
            #expect(try await f.admin.call("PUT", lock, ["locked": false]).status == 200)
            #expect(try await Self.whoami(bob).errcode == "M_UNKNOWN_TOKEN")
        }
    }

    @Test func moderationRulesByPath() {
        #expect(AccountModeration.isLogout("/_matrix/client/v3/logout"))
        #expect(AccountModeration.isLogout("/_matrix/client/r0/logout/all"))
        #expect(!AccountModeration.isLogout("/_matrix/client/v3/logout/other"))
        #expect(!AccountModeration.isLogout("/_synapse/admin/v1/logout"))
        let forbidden: [(HTTPMethod, Substring)] = [
            (.post, "/_matrix/client/v3/createRoom"), (.post, "/_matrix/client/v3/join/%23a:b"),
            (.post, "/_matrix/client/v3/knock/!r:b"), (.post, "/_matrix/client/v3/rooms/!r:b/invite"),
            (.post, "/_matrix/client/r0/rooms/!r:b/join"), (.post, "/_matrix/client/v3/rooms/!r:b/ban"),
            (.put, "/_matrix/client/v3/rooms/!r:b/send/m.room.message/t"), (.post, "/_matrix/client/r0/rooms/!r:b/send/m.room.message"),
            (.put, "/_matrix/client/v3/rooms/!r:b/state/m.room.topic/"), (.put, "/_matrix/client/v3/profile/@u:b/displayname"),
            (.put, "/_matrix/client/v3/directory/room/%23a:b"),
        ]
        for (method, path) in forbidden { #expect(AccountModeration.suspensionForbids(method, path), "\(method) \(path)") }
        let allowed: [(HTTPMethod, Substring)] = [
            (.get, "/_matrix/client/v3/sync"), (.post, "/_matrix/client/v3/rooms/!r:b/leave"),
            (.put, "/_matrix/client/v3/rooms/!r:b/send/m.room.redaction/t"), (.put, "/_matrix/client/v3/rooms/!r:b/typing/@u:b"),
            (.post, "/_matrix/client/v3/keys/upload"), (.put, "/_matrix/client/v3/directory/list/room/!r:b"),
            (.post, "/_matrix/client/v3/logout"), (.get, "/_matrix/client/v3/profile/@u:b"),
            (.post, "/_matrix/media/v3/upload"),
        ]
        for (method, path) in allowed { #expect(!AccountModeration.suspensionForbids(method, path), "\(method) \(path)") }
    }
}
