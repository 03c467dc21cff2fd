import Glibc
import Matrix
import Testing
import TestSupport
@testable import Actors
@testable import App

/// The media administration API over a running server (real sockets, SQLite; the store's
/// queries run on both backends in `MediaAdminStoreTests`): every route's 401 and 403,
/// quarantine answering 404, deletion removing the content file with its last reference,
/// deletion by age and size, the user listing's paging and order, statistics, a room's media,
/// and account erasure.
@Suite("Media administration")
struct MediaAdminTests {
    static let admin = "/_synapse/admin/v1"

    struct Fixture {
        let port: Int
        let server: MyelinServer
        let admin: MatrixTestClient
        let alice: MatrixTestClient
    }

    static func withFixture(_ body: (Fixture) async throws -> Void) async throws {
        try await withMyelinServer({ $0.registration.sharedSecret = "s3cret" }) { server, port in
            let token = try await RequestContextAuthTests.registerAdmin(port: port, "root")
            let admin = try MatrixTestClient(port: port, token: token)
            let alice = try await MatrixTestClient.registered(port: port, "alice").client
            try await body(Fixture(port: port, server: server, admin: admin, alice: alice))
        }
    }

    /// Uploads `text` as `client`; the media id.
    static func upload(_ client: MatrixTestClient, _ text: String, name: String = "f.txt") async throws -> String {
        let response = try await client.raw.request("POST", "/_matrix/media/v3/upload?filename=\(name)", body: text,
                                                    headers: ["Authorization": "Bearer \(client.token ?? "")",
                                                              "Content-Type": "text/plain"])
        #expect(response.status == 200, "\(response.text)")
        let uri = try #require(try JSON.parse(response.body)["content_uri"]?.stringValue)
        return String(try #require(uri.split(separator: "/").last))
    }

    static func download(_ client: MatrixTestClient, _ mediaID: String) async throws -> Int {
        let response = try await client.raw.request("GET", "/_matrix/client/v1/media/download/localhost/\(mediaID)",
                                                    headers: ["Authorization": "Bearer \(client.token ?? "")"])
        return response.status
    }

    static func sha256(_ fixture: Fixture, _ mediaID: String) async throws -> String {
        let info = try await fixture.admin.call("GET", "\(admin)/media/localhost/\(mediaID)")
        return try #require(info.json["media_info"]?["sha256"]?.stringValue)
    }

    static func contentExists(_ fixture: Fixture, sha256: String) -> Bool {
        let store = MediaFileStore(root: fixture.server.app.configuration.resolvedMediaPath)
        return access(store.contentPath(sha256: sha256), F_OK) == 0
    }

    @Test func everyRouteAnswers401WithoutTokenAnd403ToOthers() async throws {
        try await Self.withFixture { f in
            let routes: [(String, String)] = [
                ("POST", "/media/quarantine/localhost/abc"), ("POST", "/media/unquarantine/localhost/abc"),
                ("POST", "/room/!r:localhost/media/quarantine"), ("POST", "/quarantine_media/!r:localhost"),
                ("POST", "/user/@alice:localhost/media/quarantine"), ("POST", "/media/protect/abc"),
                ("POST", "/media/unprotect/abc"), ("GET", "/room/!r:localhost/media"),
                ("GET", "/media/localhost/abc"), ("DELETE", "/media/localhost/abc"),
                ("POST", "/media/delete?before_ts=40000000000"), ("POST", "/media/localhost/delete?before_ts=40000000000"),
                ("GET", "/users/@alice:localhost/media"), ("DELETE", "/users/@alice:localhost/media"),
                ("GET", "/media_stats"), ("GET", "/statistics/users/media"),
            ]
            for (method, path) in routes {
                let body: JSON? = method == "POST" ? .object([:]) : nil
                let anonymous = try await f.alice.call(method, Self.admin + path, body, token: .some(nil))
                #expect(anonymous.status == 401, "\(method) \(path)")
                #expect(anonymous.errcode == "M_MISSING_TOKEN", "\(method) \(path)")
                let user = try await f.alice.call(method, Self.admin + path, body)
                #expect(user.status == 403, "\(method) \(path)")
                #expect(user.errcode == "M_FORBIDDEN", "\(method) \(path)")
            }
        }
    }

    @Test func quarantinedMediaAnswers404UntilLiftedAndProtectionWins() async throws {
        try await Self.withFixture { f in
            let id = try await Self.upload(f.alice, "quarantine me")
            let twin = try await Self.upload(f.admin, "quarantine me")  // same content, other id
            let kept = try await Self.upload(f.alice, "a sticker everyone uses")
            #expect(try await Self.download(f.alice, id) == 200)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/quarantine/localhost/\(id)", [:]).status == 200)
            #expect(try await Self.download(f.alice, id) == 404)
            #expect(try await Self.download(f.alice, twin) == 404)  // quarantine follows the content
            let legacy = try await f.alice.raw.request("GET", "/_matrix/media/v3/download/localhost/\(id)")
            #expect(legacy.status == 404)
            let info = try await f.admin.call("GET", "\(Self.admin)/media/localhost/\(id)")
            #expect(info.json["media_info"]?["quarantined_by"]?.stringValue == "@root:localhost")

            #expect(try await f.admin.call("POST", "\(Self.admin)/media/unquarantine/localhost/\(id)", [:]).status == 200)
            #expect(try await Self.download(f.alice, id) == 200)
            #expect(try await Self.download(f.alice, twin) == 200)

            #expect(try await f.admin.call("POST", "\(Self.admin)/media/protect/\(kept)", [:]).status == 200)
            let all = try await f.admin.call("POST", "\(Self.admin)/user/@alice:localhost/media/quarantine", [:])
            #expect(all.json["num_quarantined"]?.intValue == 1)  // `id`; `kept` is protected
            #expect(try await Self.download(f.alice, kept) == 200)
            #expect(try await Self.download(f.alice, id) == 404)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/unprotect/\(kept)", [:]).status == 200)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/quarantine/localhost/\(kept)", [:]).status == 200)
            #expect(try await Self.download(f.alice, kept) == 404)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/protect/nosuchmedia", [:]).status == 404)
        }
    }

    @Test func deletingTheLastReferenceRemovesTheFile() async throws {
        try await Self.withFixture { f in
            let first = try await Self.upload(f.alice, "shared bytes")
            let second = try await Self.upload(f.admin, "shared bytes")
            let sha = try await Self.sha256(f, first)
            #expect(Self.contentExists(f, sha256: sha))

            let deleted = try await f.admin.call("DELETE", "\(Self.admin)/media/localhost/\(first)")
            #expect(deleted.status == 200)
            #expect(deleted.json["deleted_media"] == [.string(first)])
            #expect(deleted.json["total"]?.intValue == 1)
            #expect(Self.contentExists(f, sha256: sha))  // `second` still references it
            #expect(try await Self.download(f.alice, first) == 404)
            #expect(try await Self.download(f.alice, second) == 200)

            #expect(try await f.admin.call("DELETE", "\(Self.admin)/media/localhost/\(second)").status == 200)
            #expect(!Self.contentExists(f, sha256: sha))
            #expect(try await f.admin.call("DELETE", "\(Self.admin)/media/localhost/\(second)").status == 404)
            #expect(try await f.admin.call("DELETE", "\(Self.admin)/media/other.example/\(second)").status == 400)
        }
    }

    @Test func deleteByAgeAndSizeKeepsSmallRecentAndProfileMedia() async throws {
        try await Self.withFixture { f in
            let small = try await Self.upload(f.alice, "tiny")
            let large = try await Self.upload(f.alice, String(repeating: "L", count: 5_000))
            let avatar = try await Self.upload(f.alice, String(repeating: "A", count: 5_000))
            #expect(try await f.alice.call("PUT", "/profile/@alice:localhost/avatar_url",
                                          ["avatar_url": .string("mxc://localhost/\(avatar)")]).status == 200)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/delete", [:]).status == 400)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/delete?before_ts=1000", [:]).status == 400)
            #expect(try await f.admin.call("POST", "\(Self.admin)/media/delete?before_ts=-5", [:]).status == 400)

            // Nothing was accessed before 2001.
            let old = try await f.admin.call("POST", "\(Self.admin)/media/delete?before_ts=1000000000000", [:])
            #expect(old.json["total"]?.intValue == 0)
            let future = Clock.nowMilliseconds() + 60_000
            let big = try await f.admin.call("POST", "\(Self.admin)/media/delete?before_ts=\(future)&size_gt=100", [:])
            #expect(big.json["deleted_media"] == [.string(large)])
            #expect(try await Self.download(f.alice, large) == 404)
            #expect(try await Self.download(f.alice, small) == 200)
            #expect(try await Self.download(f.alice, avatar) == 200)

            let all = try await f.admin.call("POST", "\(Self.admin)/media/localhost/delete?before_ts=\(future)&keep_profiles=false", [:])
            #expect(Set(all.json["deleted_media"]?.arrayValue?.compactMap(\.stringValue) ?? []) == [small, avatar])
        }
    }

    @Test func userMediaListingPagesOrdersAndDeletes() async throws {
        try await Self.withFixture { f in
            var ids: [String] = []
            for (i, size) in [30, 10, 50, 20, 40].enumerated() {
                ids.append(try await Self.upload(f.alice, String(repeating: "x", count: size) + "\(i)", name: "n\(i).txt"))
                try await Task.sleep(for: .milliseconds(3))  // distinct created_ts: "newest first" is defined
            }
            let path = "\(Self.admin)/users/@alice:localhost/media"
            let first = try await f.admin.call("GET", "\(path)?limit=2")
            #expect(first.json["total"]?.intValue == 5)
            #expect(first.json["next_token"]?.intValue == 2)
            let page = first.json["media"]?.arrayValue ?? []
            #expect(page.count == 2)
            #expect(page.first?["upload_name"]?.stringValue == "n4.txt")  // newest first by default
            #expect(page.first?["media_length"]?.intValue == 41)
            #expect(page.first?["safe_from_quarantine"] == .bool(false))
            let last = try await f.admin.call("GET", "\(path)?limit=2&from=4")
            #expect(last.json["media"]?.arrayValue?.count == 1)
            #expect(last.json["next_token"] == nil)

            let bySize = try await f.admin.call("GET", "\(path)?order_by=media_length&dir=f")
            #expect(bySize.json["media"]?.arrayValue?.compactMap { $0["media_length"]?.intValue } == [11, 21, 31, 41, 51])
            let byName = try await f.admin.call("GET", "\(path)?order_by=upload_name&dir=b")
            #expect(byName.json["media"]?.arrayValue?.compactMap { $0["upload_name"]?.stringValue }
                    == ["n4.txt", "n3.txt", "n2.txt", "n1.txt", "n0.txt"])
            #expect(try await f.admin.call("GET", "\(path)?order_by=size").status == 400)
            #expect(try await f.admin.call("GET", "\(path)?dir=x").status == 400)
            #expect(try await f.admin.call("GET", "\(path)?limit=-1").status == 400)
            #expect(try await f.admin.call("GET", "\(Self.admin)/users/@bob:elsewhere/media").status == 400)
            #expect(try await f.admin.call("GET", "\(Self.admin)/users/@nobody:localhost/media").status == 404)

            let deleted = try await f.admin.call("DELETE", "\(path)?order_by=media_length&dir=b&limit=2")
            #expect(Set(deleted.json["deleted_media"]?.arrayValue?.compactMap(\.stringValue) ?? []) == [ids[2], ids[4]])
            #expect(try await f.admin.call("GET", path).json["total"]?.intValue == 3)
        }
    }

    @Test func statisticsCountMediaAndBytes() async throws {
        try await Self.withFixture { f in
            let empty = try await f.admin.call("GET", "\(Self.admin)/media_stats")
            #expect(empty.json == ["total_media": 0, "total_size_bytes": 0])
            _ = try await Self.upload(f.alice, String(repeating: "a", count: 100))
            _ = try await Self.upload(f.alice, String(repeating: "b", count: 50))
            _ = try await Self.upload(f.admin, String(repeating: "c", count: 7))
            let stats = try await f.admin.call("GET", "\(Self.admin)/media_stats")
            #expect(stats.json == ["total_media": 3, "total_size_bytes": 157])

            let users = try await f.admin.call("GET", "\(Self.admin)/statistics/users/media?order_by=media_length&dir=b")
            #expect(users.json["total"]?.intValue == 2)
            let rows = users.json["users"]?.arrayValue ?? []
            #expect(rows.first?["user_id"]?.stringValue == "@alice:localhost")
            #expect(rows.first?["media_count"]?.intValue == 2)
            #expect(rows.first?["media_length"]?.intValue == 150)
            #expect(rows.last?["media_length"]?.intValue == 7)
            let searched = try await f.admin.call("GET", "\(Self.admin)/statistics/users/media?search_term=roo")
            #expect(searched.json["users"]?.arrayValue?.compactMap { $0["user_id"]?.stringValue } == ["@root:localhost"])
            #expect(try await f.admin.call("GET", "\(Self.admin)/statistics/users/media?order_by=x").status == 400)
        }
    }

    @Test func roomMediaIsListedAndQuarantinedTogether() async throws {
        try await Self.withFixture { f in
            let image = try await Self.upload(f.alice, "pixels")
            let other = try await Self.upload(f.alice, "not in the room")
            let room = try #require(try await f.alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let content: JSON = ["msgtype": "m.image", "body": "cat.png", "url": .string("mxc://localhost/\(image)"),
                                 "info": ["thumbnail_url": "mxc://remote.example/thumb_1"]]
            #expect(try await f.alice.call("PUT", "/rooms/\(room)/send/m.room.message/t1", content).status == 200)
            let listed = try await f.admin.call("GET", "\(Self.admin)/room/\(room)/media")
            #expect(listed.json["local"] == [.string("mxc://localhost/\(image)")])
            #expect(listed.json["remote"] == ["mxc://remote.example/thumb_1"])
            #expect(try await f.admin.call("GET", "\(Self.admin)/room/!unknown:localhost/media").status == 404)

            let quarantined = try await f.admin.call("POST", "\(Self.admin)/room/\(room)/media/quarantine", [:])
            #expect(quarantined.json["num_quarantined"]?.intValue == 1)  // the remote one is not held here
            #expect(try await Self.download(f.alice, image) == 404)
            #expect(try await Self.download(f.alice, other) == 200)
        }
    }

    @Test func erasureRemovesTheUsersMedia() async throws {
        try await Self.withFixture { f in
            let bob = try await MatrixTestClient.registered(port: f.port, "bob", password: "bob's password").client
            let id = try await Self.upload(bob, "bob's holiday photo")
            let sha = try await Self.sha256(f, id)
            let kept = try await Self.upload(f.alice, "alice keeps hers")
            let deactivated = try await bob.call("POST", "/account/deactivate", [
                "erase": true,
                "auth": ["type": "m.login.password", "password": "bob's password",
                         "identifier": ["type": "m.id.user", "user": "bob"]],
            ])
            #expect(deactivated.status == 200, "\(deactivated.json)")
            #expect(!Self.contentExists(f, sha256: sha))
            #expect(try await Self.download(f.alice, id) == 404)
            #expect(try await Self.download(f.alice, kept) == 200)
            #expect(try await f.admin.call("GET", "\(Self.admin)/media_stats").json["total_media"]?.intValue == 1)
        }
    }

    @Test func mxcScanFindsWellFormedURIsOnly() {
        let json = Array(#"{"url":"mxc://a.example:8448/Ab_-9","x":"mxc://[::1]/id","bad":"mxc://nohost","e":"mxc:///x","q":"mxc://h/\u0041"}"#.utf8)
        #expect(MXC.scan(json).map(\.uri) == ["mxc://a.example:8448/Ab_-9", "mxc://[::1]/id"])
        #expect(MXC.scan(Array("mxc://".utf8)).isEmpty)
        #expect(MXC.scan([]).isEmpty)
    }
}
