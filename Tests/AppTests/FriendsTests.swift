import Matrix
import Persistence
import Testing
import TestSupport
@testable import App

/// The seed's friend system over a running server (real sockets), on SQLite and, when the
/// environment provides one, PostgreSQL: requests and their state machine, acceptance with a
/// shared direct room marked in `m.direct`, blocks, categories, `m.friends` account data,
/// and every `ext:friends` path of the seed answering a well-formed request.
@Suite("Friends")
struct FriendsTests {
    static let client = "/_matrix/client/v1/friends"
    static let enhanced = "/_synapse/enhanced/friends"

    struct Fixture {
        let port: Int
        let server: MyelinServer
        let alice: MatrixTestClient
        let bob: MatrixTestClient
        let carol: MatrixTestClient
    }

    static func withFixture(_ backend: String, _ body: (Fixture) async throws -> Void) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MatrixTestClient.registered(port: port, "alice").client
            let bob = try await MatrixTestClient.registered(port: port, "bob").client
            let carol = try await MatrixTestClient.registered(port: port, "carol").client
            try await body(Fixture(port: port, server: server, alice: alice, bob: bob, carol: carol))
        }
    }

    static func p(_ text: String) -> String { HostileInputTests.path(text) }
    static let alice = "@alice:localhost", bob = "@bob:localhost", carol = "@carol:localhost"

    static func ids(_ reply: MatrixTestClient.Reply, _ key: String, field: String = "user_id") -> [String] {
        (reply.json[key]?.arrayValue ?? []).compactMap { $0[field]?.stringValue }
    }

    static func accountData(_ client: MatrixTestClient, _ user: String, _ type: String) async throws -> JSON {
        let reply = try await client.call("GET", "/user/\(p(user))/account_data/\(type)")
        #expect(reply.status == 200, "\(type): \(reply.json)")
        return reply.json
    }

    @Test(arguments: MediaTest.backends)
    func requestListedAcceptedSharesADirectRoom(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let sent = try await f.alice.call("POST", "\(Self.client)/request", ["user_id": .string(Self.bob), "message": "Hi!"])
            #expect(sent.status == 200, "\(sent.json)")
            #expect(sent.json["status"]?.stringValue == "pending")

            let outgoing = try await f.alice.call("GET", "\(Self.client)/requests/outgoing")
            #expect(outgoing.status == 200)
            #expect(Self.ids(outgoing, "requests") == [Self.bob])
            let incoming = try await f.bob.call("GET", "\(Self.client)/requests/incoming")
            #expect(Self.ids(incoming, "requests") == [Self.alice])
            #expect(incoming.json["requests"]?.arrayValue?.first?["message"]?.stringValue == "Hi!")
            #expect(incoming.json["requests"]?.arrayValue?.first?["status"]?.stringValue == "pending")

            // A second request while one is pending: 409.
            let again = try await f.alice.call("POST", "\(Self.client)/request", ["user_id": .string(Self.bob)])
            #expect(again.status == 409, "\(again.json)")
            // Only the target accepts.
            #expect(try await f.alice.call("POST", "\(Self.client)/request/\(Self.p(Self.bob))/accept").status == 404)

            let accepted = try await f.bob.call("POST", "\(Self.client)/request/\(Self.p(Self.alice))/accept")
            #expect(accepted.status == 200, "\(accepted.json)")
            #expect(accepted.json["status"]?.stringValue == "accepted")
            let room = try #require(accepted.json["room_id"]?.stringValue)

            // Both list each other; no request pending any more.
            #expect(Self.ids(try await f.alice.call("GET", Self.client), "friends") == [Self.bob])
            #expect(Self.ids(try await f.bob.call("GET", Self.client), "friends") == [Self.alice])
            #expect(try await f.alice.call("GET", Self.client).json["total"]?.intValue == 1)
            #expect(Self.ids(try await f.bob.call("GET", "\(Self.client)/requests/incoming"), "requests").isEmpty)
            #expect(Self.ids(try await f.alice.call("GET", "\(Self.client)/requests/outgoing"), "requests").isEmpty)
            let info = try await f.alice.call("GET", "\(Self.client)/\(Self.p(Self.bob))/info")
            #expect(info.json["dm_room_id"]?.stringValue == room)
            #expect(info.json["status"]?.stringValue == "normal")

            // Both are joined to the room, a direct room in both users' m.direct.
            for client in [f.alice, f.bob] {
                let joined = try await client.call("GET", "/joined_rooms")
                #expect(joined.json["joined_rooms"]?.arrayValue?.compactMap(\.stringValue) == [room])
            }
            let aliceDirect = try await Self.accountData(f.alice, Self.alice, "m.direct")
            #expect(aliceDirect[Self.bob]?.arrayValue?.compactMap(\.stringValue) == [room])
            let bobDirect = try await Self.accountData(f.bob, Self.bob, "m.direct")
            #expect(bobDirect[Self.alice]?.arrayValue?.compactMap(\.stringValue) == [room])
            let joinRule = try await f.bob.call("GET", "/rooms/\(Self.p(room))/state/m.room.join_rules/")
            #expect(joinRule.json["join_rule"]?.stringValue == "invite")

            // The other devices learn through m.friends.
            let friends = try await Self.accountData(f.bob, Self.bob, "m.friends")
            #expect(friends["friends"]?[Self.alice]?["room_id"]?.stringValue == room)

            // Note and status, then removal; a new friendship reuses the direct room.
            #expect(try await f.alice.call("PUT", "\(Self.client)/\(Self.p(Self.bob))/note", ["note": "Met at conference"]).status == 200)
            #expect(try await f.alice.call("PUT", "\(Self.client)/\(Self.p(Self.bob))/status", ["status": "favorite"]).status == 200)
            #expect(try await f.alice.call("PUT", "\(Self.client)/\(Self.p(Self.bob))/status", ["status": "best"]).status == 400)
            let noted = try await f.alice.call("GET", "\(Self.client)/\(Self.p(Self.bob))/info")
            #expect(noted.json["note"]?.stringValue == "Met at conference")
            #expect(noted.json["status"]?.stringValue == "favorite")
            let tooLong = String(repeating: "x", count: 1001)
            #expect(try await f.alice.call("PUT", "\(Self.client)/\(Self.p(Self.bob))/note", ["note": .string(tooLong)]).status == 400)

            #expect(try await f.bob.call("DELETE", "\(Self.client)/\(Self.p(Self.alice))").status == 200)
            #expect(try await f.bob.call("DELETE", "\(Self.client)/\(Self.p(Self.alice))").status == 404)
            #expect(Self.ids(try await f.alice.call("GET", Self.client), "friends").isEmpty)
            #expect(try await f.bob.call("POST", "\(Self.client)/request", ["user_id": .string(Self.alice)]).status == 200)
            let again2 = try await f.alice.call("POST", "\(Self.client)/request/\(Self.p(Self.bob))/accept")
            #expect(again2.json["room_id"]?.stringValue == room, "\(again2.json)")

            // Reject and cancel end a request; an unknown user is 404, oneself 400.
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(Self.alice)]).status == 200)
            let rejected = try await f.alice.call("POST", "\(Self.client)/request/\(Self.p(Self.carol))/reject")
            #expect(rejected.json["status"]?.stringValue == "rejected")
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(Self.bob)]).status == 200)
            let cancelled = try await f.carol.call("POST", "\(Self.client)/request/\(Self.p(Self.bob))/cancel")
            #expect(cancelled.json["status"]?.stringValue == "cancelled")
            #expect(Self.ids(try await f.bob.call("GET", "\(Self.client)/requests/incoming"), "requests").isEmpty)
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": "@nobody:localhost"]).status == 404)
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(Self.carol)]).status == 400)
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": "not a user"]).status == 400)
            #expect(try await f.carol.call("GET", Self.client, token: .some(nil)).status == 401)
            // Hostile sizes: a user id past 255 bytes, a message past 1000 characters, a wrong type.
            let longID = "@" + String(repeating: "a", count: 300) + ":localhost"
            #expect(try await f.carol.call("GET", "\(Self.client)/\(Self.p(longID))/info").status == 400)
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(longID)]).status == 400)
            #expect(try await f.carol.call("POST", "\(Self.client)/request",
                                           ["user_id": .string(Self.bob), "message": .string(tooLong)]).status == 400)
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": 5]).status == 400)
            #expect(try await f.carol.call("POST", "\(Self.enhanced)/categories", ["name": .string(String(repeating: "c", count: 101))]).status == 400)
        }
    }

    @Test(arguments: MediaTest.backends)
    func aBlockedUsersRequestIsRefused(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            // carol's pending request is hidden once bob blocks her.
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(Self.bob)]).status == 200)
            let blocked = try await f.bob.call("POST", "\(Self.enhanced)/block", ["user_id": .string(Self.carol), "reason": "spam"])
            #expect(blocked.status == 200, "\(blocked.json)")
            #expect(Self.ids(try await f.bob.call("GET", "\(Self.client)/requests/incoming"), "requests").isEmpty)

            let refused = try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(Self.bob)])
            #expect(refused.status == 403, "\(refused.json)")
            #expect(refused.errcode == "M_FORBIDDEN")
            let refusedEnhanced = try await f.carol.call("POST", "\(Self.enhanced)/request", ["user_id": .string(Self.bob)])
            #expect(refusedEnhanced.status == 403)
            #expect(try await f.bob.call("POST", "\(Self.client)/request", ["user_id": .string(Self.carol)]).status == 403)

            let list = try await f.bob.call("GET", "\(Self.enhanced)/blocked")
            #expect(Self.ids(list, "blocked") == [Self.carol])
            #expect(list.json["blocked"]?.arrayValue?.first?["reason"]?.stringValue == "spam")
            let summary = try await Self.accountData(f.bob, Self.bob, "m.friends")
            #expect(summary["blocked"]?.arrayValue?.compactMap(\.stringValue) == [Self.carol])

            // Nor may she invite him to a room, by createRoom or /invite; he may invite her.
            let byCreate = try await f.carol.call("POST", "/createRoom", ["invite": .array([.string(Self.bob)]), "is_direct": true])
            #expect(byCreate.status == 403, "\(byCreate.json)")
            #expect(byCreate.errcode == "M_FORBIDDEN")
            let carolRoom = try await HostileInputTests.createRoom(f.carol)
            let byInvite = try await f.carol.call("POST", "/rooms/\(Self.p(carolRoom))/invite", ["user_id": .string(Self.bob)])
            #expect(byInvite.status == 403, "\(byInvite.json)")
            let bobRoom = try await HostileInputTests.createRoom(f.bob)
            #expect(try await f.bob.call("POST", "/rooms/\(Self.p(bobRoom))/invite", ["user_id": .string(Self.carol)]).status == 200)

            #expect(try await f.bob.call("DELETE", "\(Self.enhanced)/block/\(Self.p(Self.carol))").status == 200)
            #expect(try await f.carol.call("POST", "/rooms/\(Self.p(carolRoom))/invite", ["user_id": .string(Self.bob)]).status == 200)
            #expect(try await f.bob.call("DELETE", "\(Self.enhanced)/block/\(Self.p(Self.carol))").status == 404)
            #expect(try await f.carol.call("POST", "\(Self.client)/request", ["user_id": .string(Self.bob)]).status == 200)
        }
    }

    /// Every `ext:friends` client and enhanced path of the seed, in an order that makes each
    /// a well-formed request with something to act on: each answers 200.
    @Test(arguments: MediaTest.backends)
    func everyClientAndEnhancedPathAnswers(_ backend: String) async throws {
        try await Self.withFixture(backend) { f in
            let (c, e, a, b, ca) = (Self.client, Self.enhanced, Self.p(Self.alice), Self.p(Self.bob), Self.p(Self.carol))
            var covered = Set<String>()
            func call(_ who: MatrixTestClient, _ method: String, _ path: String, _ pattern: String,
                      _ body: JSON? = nil) async throws -> MatrixTestClient.Reply {
                let reply = try await who.call(method, path, body ?? (method == "GET" || method == "DELETE" ? nil : .object([:])))
                #expect(reply.status == 200, "\(method) \(path): \(reply.status) \(reply.json)")
                covered.insert("\(method) \(pattern)")
                return reply
            }
            _ = try await call(f.alice, "POST", "\(c)/request", "\(c)/request", ["user_id": .string(Self.bob)])
            _ = try await call(f.alice, "GET", "\(c)/requests/outgoing", "\(c)/requests/outgoing")
            _ = try await call(f.bob, "GET", "\(c)/requests/incoming", "\(c)/requests/incoming")
            _ = try await call(f.bob, "POST", "\(c)/request/\(a)/accept", "\(c)/request/{user_id}/accept")
            _ = try await call(f.alice, "GET", c, c)
            _ = try await call(f.alice, "GET", "\(c)/\(b)/info", "\(c)/{user_id}/info")
            _ = try await call(f.alice, "PUT", "\(c)/\(b)/note", "\(c)/{user_id}/note", ["note": "n"])
            _ = try await call(f.alice, "PUT", "\(c)/\(b)/status", "\(c)/{user_id}/status", ["status": "favorite"])
            _ = try await call(f.alice, "POST", "\(c)/request", "\(c)/request", ["user_id": .string(Self.carol)])
            _ = try await call(f.alice, "POST", "\(c)/request/\(ca)/cancel", "\(c)/request/{user_id}/cancel")
            _ = try await call(f.carol, "POST", "\(c)/request", "\(c)/request", ["user_id": .string(Self.alice)])
            _ = try await call(f.alice, "POST", "\(c)/request/\(ca)/reject", "\(c)/request/{user_id}/reject")
            _ = try await call(f.alice, "DELETE", "\(c)/\(b)", "\(c)/{user_id}")

            _ = try await call(f.alice, "POST", "\(e)/request", "\(e)/request", ["user_id": .string(Self.bob)])
            let pending = try await call(f.bob, "GET", "\(e)/requests", "\(e)/requests")
            #expect(Self.ids(pending, "incoming") == [Self.alice])
            _ = try await call(f.bob, "POST", "\(e)/accept", "\(e)/accept", ["user_id": .string(Self.alice)])
            let friends = try await call(f.alice, "GET", e, e)
            #expect(Self.ids(friends, "friends") == [Self.bob])
            _ = try await call(f.carol, "POST", "\(e)/request", "\(e)/request", ["user_id": .string(Self.alice)])
            let requestID = try #require(try await f.alice.call("GET", "\(e)/requests").json["incoming"]?.arrayValue?.first?["request_id"]?.stringValue)
            _ = try await call(f.alice, "POST", "\(e)/reject", "\(e)/reject", ["request_id": .string(requestID)])
            let category = try await call(f.alice, "POST", "\(e)/categories", "\(e)/categories", ["name": "Work", "color": "#00f"])
            let categoryID = try #require(category.json["category_id"]?.stringValue)
            #expect(try await f.alice.call("POST", "\(e)/categories", ["name": "Work"]).status == 409)
            _ = try await call(f.alice, "PUT", "\(e)/categories/\(categoryID)", "\(e)/categories/{id}", ["name": "Colleagues"])
            _ = try await call(f.alice, "PUT", "\(e)/\(b)/category", "\(e)/{friend_id}/category", ["category_id": .string(categoryID)])
            let categories = try await call(f.alice, "GET", "\(e)/categories", "\(e)/categories")
            #expect(categories.json["categories"]?.arrayValue?.first?["name"]?.stringValue == "Colleagues")
            #expect(categories.json["categories"]?.arrayValue?.first?["friend_count"]?.intValue == 1)
            #expect(try await f.bob.call("PUT", "\(e)/categories/\(categoryID)", ["name": "Mine"]).status == 404)
            _ = try await call(f.alice, "DELETE", "\(e)/categories/\(categoryID)", "\(e)/categories/{id}")
            #expect(try await f.alice.call("GET", "\(c)/\(b)/info").json["category_id"] == nil)
            _ = try await call(f.alice, "POST", "\(e)/block", "\(e)/block", ["user_id": .string(Self.carol)])
            _ = try await call(f.alice, "GET", "\(e)/blocked", "\(e)/blocked")
            _ = try await call(f.alice, "DELETE", "\(e)/block/\(ca)", "\(e)/block/{user_id}")
            _ = try await call(f.alice, "DELETE", "\(e)/\(b)", "\(e)/{friend_id}")

            // 11 client paths and 14 enhanced ones: with the 3 federation paths, the 28 of the seed.
            #expect(covered.count == 25, "\(covered.sorted())")
        }
    }

    /// The federation paths, X-Matrix signed between two servers: a remote user's request
    /// delivered, listed, accepted (the acceptor's server makes the direct room and tells the
    /// requester's, whose user joins it), then queried; unsigned and forged requests refused.
    @Test func federationPathsAnswerSignedRequestsOnly() async throws {
        try await withTwoServers { a, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let f = "/_matrix/federation/v1/friends"
            let (aName, bName) = (try ServerName(parsing: "a.test"), try ServerName(parsing: "b.test"))
            let ports = [aName: aPort, bName: bPort]
            let fromA = LoopbackFederation(origin: aName, key: a.app.signingKey, ports: ports)
            let fromB = LoopbackFederation(origin: bName, key: b.app.signingKey, ports: ports)

            // Unsigned: 401.
            let unsigned = try await RawClient(port: aPort).request("GET", "\(f)/query/\(Self.p("@alice:a.test"))")
            #expect(unsigned.status == 401)

            // bob@b asks alice@a through the client API: b forwards it, signed.
            let sent = try await bob.call("POST", "\(Self.client)/request", ["user_id": "@alice:a.test", "message": "hello"])
            #expect(sent.status == 200, "\(sent.json)")
            let incoming = try await alice.call("GET", "\(Self.client)/requests/incoming")
            #expect(Self.ids(incoming, "requests") == ["@bob:b.test"])
            #expect(incoming.json["requests"]?.arrayValue?.first?["message"]?.stringValue == "hello")
            #expect(Self.ids(try await bob.call("GET", "\(Self.client)/requests/outgoing"), "requests") == ["@alice:a.test"])

            // A server speaks only for its own users.
            let forged = try await fromA.request(bName, method: "POST", path: "\(f)/request",
                                                 body: ["requester": "@eve:c.test", "target": "@bob:b.test"])
            #expect(forged.status == 403)

            let accepted = try await alice.call("POST", "\(Self.client)/request/\(Self.p("@bob:b.test"))/accept")
            #expect(accepted.status == 200, "\(accepted.json)")
            let room = try #require(accepted.json["room_id"]?.stringValue)
            let direct = try await Self.accountData(alice, "@alice:a.test", "m.direct")
            #expect(direct["@bob:b.test"]?.arrayValue?.compactMap(\.stringValue) == [room])
            // b was told (a request the other way, naming the room): bob is a friend there too,
            // joined to the room over federation, with it in his m.direct.
            #expect(Self.ids(try await bob.call("GET", Self.client), "friends") == ["@alice:a.test"])
            #expect(Self.ids(try await bob.call("GET", "\(Self.client)/requests/outgoing"), "requests").isEmpty)
            #expect(try await bob.call("GET", "/joined_rooms").json["joined_rooms"]?.arrayValue?.compactMap(\.stringValue) == [room])
            let bobDirect = try await Self.accountData(bob, "@bob:b.test", "m.direct")
            #expect(bobDirect["@alice:a.test"]?.arrayValue?.compactMap(\.stringValue) == [room])
            let members = try await alice.call("GET", "/rooms/\(Self.p(room))/joined_members")
            #expect(members.json["joined"]?["@bob:b.test"] != nil, "\(members.json)")

            let query = try await fromB.request(aName, method: "GET", path: "\(f)/query/\(Self.p("@alice:a.test"))", body: nil)
            #expect(query.status == 200)
            #expect(query.json?["friends"]?.arrayValue?.compactMap(\.stringValue) == ["@bob:b.test"])
            let relationship = try await fromB.request(aName, method: "GET",
                path: "\(f)/relationship/\(Self.p("@alice:a.test"))/\(Self.p("@bob:b.test"))", body: nil)
            #expect(relationship.status == 200)
            #expect(relationship.json?["are_friends"]?.boolValue == true)
            #expect(relationship.json?["since"]?.intValue != nil)
            let stranger = try await fromB.request(aName, method: "GET",
                path: "\(f)/relationship/\(Self.p("@alice:a.test"))/\(Self.p("@carol:b.test"))", body: nil)
            #expect(stranger.json?["are_friends"]?.boolValue == false)
        }
    }
}
