import Actors
import Matrix
import Persistence
import Synchronization
import Testing
import TestSupport
@testable import App

/// `LoopbackFederation` that counts the requests by path prefix (to show what was answered
/// from the cache and what needed the remote server).
final class CountingFederation: FederationRequesting {
    let inner: LoopbackFederation
    let paths = Mutex<[String]>([])

    init(_ inner: LoopbackFederation) { self.inner = inner }

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        paths.withLock { $0.append(path) }
        return try await inner.request(destination, method: method, path: path, body: body)
    }

    func count(_ prefix: String) -> Int { paths.withLock { $0.filter { $0.hasPrefix(prefix) }.count } }
}

@Suite("Remote device lists over federation (two in-process servers, SQLite)", .serialized)
struct RemoteDeviceListTests {
    static let userDevices = "/_matrix/federation/v1/user/devices/"
    static let keysQuery = "/_matrix/federation/v1/user/keys/query"

    /// Two servers sharing a room: alice on a.test (whose requests are counted), bob on b.test
    /// with device keys uploaded.
    func withSharedRoom(_ body: (_ a: MyelinServer, _ b: MyelinServer, _ aLink: CountingFederation, _ alice: MatrixTestClient,
                                 _ bob: MatrixTestClient, _ aPort: Int, _ room: String, _ bobDevice: String,
                                 _ bPort: Int) async throws -> Void) async throws {
        try await withMyelinServer({ $0.serverName = "a.test"; $0.federation.backoffMaxMs = 2000 }) { a, aPort in
            try await withMyelinServer({ $0.serverName = "b.test"; $0.federation.backoffMaxMs = 2000 }) { b, bPort in
                let ports = [try ServerName(parsing: "a.test"): aPort, try ServerName(parsing: "b.test"): bPort]
                let aLink = CountingFederation(LoopbackFederation(origin: a.app.localServer, key: a.app.signingKey, ports: ports))
                a.app.connectFederation(aLink)
                a.app.roomService.federation.connect(aLink)
                let bLink = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey, ports: ports)
                b.app.connectFederation(bLink)
                b.app.roomService.federation.connect(bLink)

                let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
                let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
                let bobDevice = try #require(try await bob.call("GET", "/account/whoami").json["device_id"]?.stringValue)
                #expect(try await bob.call("POST", "/keys/upload", ["device_keys": KeysTests.deviceKeys("@bob:b.test", bobDevice)]).status == 200)
                let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
                #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
                try await body(a, b, aLink, alice, bob, aPort, room, bobDevice, bPort)
            }
        }
    }

    func cachedDevices(_ a: MyelinServer) async throws -> [String] {
        try await a.app.database.remoteDevices.lists(of: ["@bob:b.test"])["@bob:b.test"]?.devices.map(\.deviceID) ?? []
    }

    /// Polls until `condition` holds (at most ~10 s).
    func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<100 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test("/keys/query fills the cache through user/devices, then answers from it; an update with a known prev_id extends it")
    func cacheFilledThenExtendedByUpdates() async throws {
        try await withSharedRoom { a, b, aLink, alice, bob, _, room, bobDevice, bPort in
            let first = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(first.json["device_keys"]?["@bob:b.test"]?[bobDevice]?["device_id"]?.stringValue == bobDevice)
            #expect(aLink.count(Self.userDevices) == 1)
            #expect(try await cachedDevices(a) == [bobDevice])
            let bStream = try await FederationQueries.lastDeviceListChange(of: try UserID(parsing: "@bob:b.test"), b.app)
            #expect(try await a.app.database.remoteDevices.streamID(of: "@bob:b.test") == bStream)

            // Answered from the cache: no request to b.test.
            let before = aLink.paths.withLock { $0.count }
            let second = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(second.json["device_keys"]?["@bob:b.test"]?[bobDevice] != nil)
            #expect(aLink.paths.withLock { $0.count } == before)

            let since = try #require(try await alice.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            // A second device of bob: b.test sends one m.device_list_update naming its previous
            // change; a.test applies it without a resync and alice's sync says bob changed.
            let login = try await MatrixTestClient(port: bPort).call("POST", "/login", ["type": "m.login.password", "user": "bob",
                                                                                        "password": "correct horse"])
            let second2 = try #require(login.json["device_id"]?.stringValue)
            let bob2 = try MatrixTestClient(port: bPort, token: login.json["access_token"]?.stringValue)
            #expect(try await bob2.call("POST", "/keys/upload", ["device_keys": KeysTests.deviceKeys("@bob:b.test", second2)]).status == 200)
            // The login itself is an update (the device, no keys yet), the upload a second one.
            #expect(try await eventually {
                try await a.app.database.remoteDevices.lists(of: ["@bob:b.test"])["@bob:b.test"]?
                    .devices.first { $0.deviceID == second2 }?.keys != nil
            })
            #expect(aLink.count(Self.userDevices) == 1, "\(aLink.paths.withLock { $0 })")
            let third = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(third.json["device_keys"]?["@bob:b.test"]?[second2]?["device_id"]?.stringValue == second2)
            let changed = try await alice.call("GET", "/sync?timeout=5000&since=\(since)")
            #expect(changed.json["device_lists"]?["changed"]?.arrayValue?.contains("@bob:b.test") == true, "\(changed.json)")

            // bob deletes that device: the update says `deleted`, a.test drops it without a resync.
            let challenge = try await bob.call("DELETE", "/devices/\(second2)")
            let deleted = try await bob.call("DELETE", "/devices/\(second2)", ["auth": [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "bob"],
                "password": "correct horse", "session": challenge.json["session"] ?? .null]])
            #expect(deleted.status == 200, "\(deleted.json)")
            #expect(try await eventually { try await cachedDevices(a) == [bobDevice] })
            #expect(aLink.count(Self.userDevices) == 1, "\(aLink.paths.withLock { $0 })")

            // Cross-signing keys: m.signing_key_update reaches the cache.
            let bobMaster = CrossSigningTests.Ed25519()
            let master = bobMaster.crossSigningKey("@bob:b.test", "master")
            #expect(try await bob.call("POST", "/keys/device_signing/upload", ["master_key": master]).status == 200)
            #expect(try await eventually {
                try await a.app.database.remoteDevices.lists(of: ["@bob:b.test"])["@bob:b.test"]?.masterKey != nil
            })
            let withMaster = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(withMaster.json["master_keys"]?["@bob:b.test"]?["keys"]?[bobMaster.keyID]?.stringValue == bobMaster.publicKey)
            #expect(aLink.count(Self.userDevices) == 1)
            // The cross-signing change is not in the device updates' prev_id chain: the next
            // device update still extends the cache without a resync.
            #expect(try await bob.call("POST", "/keys/upload", ["device_keys": KeysTests.deviceKeys("@bob:b.test", bobDevice,
                                                                                                     curve: "newcurve")]).status == 200)
            #expect(try await eventually {
                let keys = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
                return keys.json["device_keys"]?["@bob:b.test"]?[bobDevice]?["keys"]?["curve25519:\(bobDevice)"]?.stringValue == "newcurve"
            })
            #expect(aLink.count(Self.userDevices) == 1, "\(aLink.paths.withLock { $0 })")

            // bob's device signs his master key (signatures/upload): the m.signing_key_update
            // carries the master key with that signature, and a.test serves it.
            let (_, deviceKey, _) = try await CrossSigningTests.uploadDevice(bob, "@bob:b.test")
            let signedMaster = try deviceKey.sign(master, as: "@bob:b.test", keyID: "ed25519:\(bobDevice)")
            let signed = try await bob.call("POST", "/keys/signatures/upload", ["@bob:b.test": .object([bobMaster.publicKey: signedMaster])])
            #expect(signed.json["failures"] == .object([:]), "\(signed.json)")
            #expect(try await eventually {
                let keys = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
                return keys.json["master_keys"]?["@bob:b.test"]?["signatures"]?["@bob:b.test"]?["ed25519:\(bobDevice)"]
                    == signedMaster["signatures"]?["@bob:b.test"]?["ed25519:\(bobDevice)"]
            })
            _ = room
        }
    }

    @Test("An update whose prev_id the cache does not know triggers one resync through user/devices")
    func gapTriggersResync() async throws {
        try await withSharedRoom { a, b, aLink, alice, _, aPort, _, bobDevice, _ in
            _ = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(aLink.count(Self.userDevices) == 1)
            let cached = try #require(try await a.app.database.remoteDevices.streamID(of: "@bob:b.test"))
            // A stale entry the resync must drop.
            _ = try await a.app.database.write { db in
                try RemoteDeviceStore.apply(db, user: "@bob:b.test", device: .init(deviceID: "STALE", displayName: nil, keys: nil),
                                            deleted: false, streamID: cached)
            }
            #expect(try await cachedDevices(a).contains("STALE"))
            // b.test says a device changed after an update a.test never saw.
            let bLink = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey,
                                           ports: [try ServerName(parsing: "a.test"): aPort])
            let edu: JSON = ["edu_type": "m.device_list_update",
                             "content": ["user_id": "@bob:b.test", "device_id": "GHOST", "stream_id": .int(cached + 10),
                                         "prev_id": [.int(cached + 5)], "keys": KeysTests.deviceKeys("@bob:b.test", "GHOST")]]
            let sent = try await bLink.request(a.app.localServer, method: "PUT", path: "/_matrix/federation/v1/send/gap1",
                                               body: ["origin": "b.test", "origin_server_ts": .int(Clock.nowMilliseconds()),
                                                      "pdus": [], "edus": [edu]])
            #expect(sent.status == 200)
            // The resync read the real list: no GHOST, bob's device, b.test's stream id.
            #expect(try await eventually { aLink.count(Self.userDevices) == 2 })
            #expect(try await eventually { try await cachedDevices(a) == [bobDevice] })
            #expect(try await cachedDevices(a) == [bobDevice])
            #expect(try await a.app.database.remoteDevices.streamID(of: "@bob:b.test") == cached)
            // An update with the cached id as prev_id but forged for another server's user is ignored.
            let forged: JSON = ["edu_type": "m.device_list_update",
                                "content": ["user_id": "@alice:a.test", "device_id": "X", "stream_id": 99, "prev_id": []]]
            _ = try await bLink.request(a.app.localServer, method: "PUT", path: "/_matrix/federation/v1/send/gap2",
                                        body: ["origin": "b.test", "origin_server_ts": .int(Clock.nowMilliseconds()),
                                               "pdus": [], "edus": [forged]])
            #expect(aLink.count(Self.userDevices) == 2)
        }
    }

    @Test("The cache is dropped once no local user shares a room with the remote user")
    func invalidatedWhenNoRoomIsShared() async throws {
        try await withSharedRoom { a, _, _, alice, bob, _, room, bobDevice, _ in
            _ = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(try await cachedDevices(a) == [bobDevice])
            let since = try #require(try await alice.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(room)/leave", [:]).status == 200)
            #expect(try await eventually {
                try await a.app.database.memberships.membership(of: try UserID(parsing: "@bob:b.test"),
                                                                in: try RoomID(parsing: room))?.membership == "leave"
            })
            let left = try await alice.call("GET", "/sync?timeout=0&since=\(since)")
            #expect(left.json["device_lists"]?["left"]?.arrayValue?.contains("@bob:b.test") == true, "\(left.json)")
            await a.app.sweepDeviceLists()
            #expect(try await a.app.database.remoteDevices.streamID(of: "@bob:b.test") == nil)
        }
    }
}

/// What SyTest's mock server sends and expects of remote device lists (50federation/40devicelists).
@Suite("Remote device lists: uncached users, loose keys, leaving, invited peers", .serialized)
struct RemoteDeviceListEdgeTests {
    let base = RemoteDeviceListTests()

    @Test("A device whose keys name no user or device is kept; keys naming another user or device are refused")
    func looseKeysKept() throws {
        let bob = try UserID(parsing: "@bob:b.test")
        let loose = MyelinApp.remoteDevice(["device_id": "D1", "keys": ["device_keys": [:]]], user: bob,
                                           keysField: "keys", nameField: "device_display_name")
        #expect(loose?.deviceID == "D1")
        #expect(loose?.keys != nil)
        #expect(MyelinApp.remoteDevice(["device_id": "D1", "keys": ["user_id": "@eve:b.test", "device_id": "D1"]], user: bob,
                                       keysField: "keys", nameField: "device_display_name") == nil)
        #expect(MyelinApp.remoteDevice(["device_id": "D1", "keys": ["user_id": "@bob:b.test", "device_id": "D2"]], user: bob,
                                       keysField: "keys", nameField: "device_display_name") == nil)
    }

    @Test("An update for a user with no cached list resyncs, whatever keys it carries")
    func uncachedUpdateResyncs() async throws {
        try await base.withSharedRoom { a, b, aLink, _, _, aPort, _, bobDevice, _ in
            #expect(try await a.app.database.remoteDevices.streamID(of: "@bob:b.test") == nil)
            let bLink = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey,
                                           ports: [try ServerName(parsing: "a.test"): aPort])
            let edu: JSON = ["edu_type": "m.device_list_update",
                             "content": ["user_id": "@bob:b.test", "device_id": "random", "stream_id": 1,
                                         "keys": ["device_keys": [:]]]]
            let sent = try await bLink.request(a.app.localServer, method: "PUT", path: "/_matrix/federation/v1/send/loose1",
                                               body: ["origin": "b.test", "origin_server_ts": .int(Clock.nowMilliseconds()),
                                                      "pdus": [], "edus": [edu]])
            #expect(sent.status == 200)
            #expect(try await base.eventually { aLink.count(RemoteDeviceListTests.userDevices) == 1 })
            #expect(try await base.eventually { try await base.cachedDevices(a) == [bobDevice] })
        }
    }

    @Test("Leaving the last shared room forgets the remote user's list at once (a quick rejoin must not read it stale)")
    func leaveForgetsList() async throws {
        try await base.withSharedRoom { a, _, _, alice, _, _, room, bobDevice, _ in
            _ = try await alice.call("POST", "/keys/query", ["device_keys": ["@bob:b.test": []]])
            #expect(try await base.cachedDevices(a) == [bobDevice])
            #expect(try await alice.call("POST", "/rooms/\(room)/leave", [:]).status == 200)
            #expect(try await a.app.database.remoteDevices.streamID(of: "@bob:b.test") == nil)
        }
    }

    @Test("A new login is a device-list change: the user and their room peers see it in device_lists.changed")
    func loginIsADeviceListChange() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/join/\(room)", [:]).status == 200)
            let aliceSince = try #require(try await alice.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            let bobSince = try #require(try await bob.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            let login = try await MatrixTestClient(port: port).call("POST", "/login", ["type": "m.login.password", "user": "bob",
                                                                                     "password": "correct horse"])
            #expect(login.status == 200)
            for (client, since) in [(alice, aliceSince), (bob, bobSince)] {
                let sync = try await client.call("GET", "/sync?timeout=0&since=\(since)")
                #expect(sync.json["device_lists"]?["changed"]?.arrayValue?.contains("@bob:localhost") == true, "\(sync.json)")
            }
        }
    }

    @Test("A user-signing key upload is in the user's own device_lists.changed only, not their peers'")
    func userSigningKeyIsPrivate() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/join/\(room)", [:]).status == 200)
            let identity = CrossSigningTests.Identity(user: "@alice:localhost")
            #expect(try await alice.call("POST", "/keys/device_signing/upload", ["master_key": identity.masterJSON]).status == 200)
            let aliceSince = try #require(try await alice.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            let bobSince = try #require(try await bob.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            let userSigning = try identity.userSigningJSON()
            let challenge = try await alice.call("POST", "/keys/device_signing/upload", ["user_signing_key": userSigning])
            let upload = try await alice.call("POST", "/keys/device_signing/upload", ["user_signing_key": userSigning, "auth": [
                "type": "m.login.password", "identifier": ["type": "m.id.user", "user": "alice"],
                "password": "correct horse", "session": challenge.json["session"] ?? .null]])
            #expect(upload.status == 200, "\(upload.json)")
            let own = try await alice.call("GET", "/sync?timeout=0&since=\(aliceSince)")
            #expect(own.json["device_lists"]?["changed"]?.arrayValue?.contains("@alice:localhost") == true, "\(own.json)")
            let peer = try await bob.call("GET", "/sync?timeout=0&since=\(bobSince)")
            #expect(peer.json["device_lists"]?["changed"]?.arrayValue?.contains("@alice:localhost") != true, "\(peer.json)")
        }
    }

    @Test("An invited peer is in device_lists.changed of the inviter's next sync")
    func invitedPeerChanged() async throws {
        try await withMyelin { port, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            _ = try await MatrixTestClient.registered(port: port, "carol")
            let room = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let since = try #require(try await alice.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            #expect(try await alice.call("POST", "/rooms/\(room)/invite", ["user_id": "@carol:localhost"]).status == 200)
            let sync = try await alice.call("GET", "/sync?timeout=0&since=\(since)")
            #expect(sync.json["device_lists"]?["changed"]?.arrayValue?.contains("@carol:localhost") == true, "\(sync.json)")
            let to = try #require(sync.json["next_batch"]?.stringValue)
            let changes = try await alice.call("GET", "/keys/changes?from=\(since)&to=\(to)")
            #expect(changes.json["changed"]?.arrayValue?.contains("@carol:localhost") == true, "\(changes.json)")
        }
    }
}

@Suite("Presence over federation (two in-process servers, SQLite)")
struct FederationPresenceTests {
    static func sees(_ sync: JSON, _ user: String, _ state: String) -> Bool {
        (sync["presence"]?["events"]?.arrayValue ?? []).contains {
            $0["sender"]?.stringValue == user && $0["content"]?["presence"]?.stringValue == state
        }
    }

    @Test("Each server's user sees the other's presence (m.presence both ways)")
    func presenceBothWays() async throws {
        try await withTwoServers { _, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
            #expect(try await alice.call("PUT", "/presence/@alice:a.test/status", ["presence": "unavailable", "status_msg": "away"]).status == 200)
            #expect(try await syncUntil(bob) { Self.sees($0, "@alice:a.test", "unavailable") })
            #expect(try await bob.call("PUT", "/presence/@bob:b.test/status", ["presence": "unavailable"]).status == 200)
            #expect(try await syncUntil(alice) { Self.sees($0, "@bob:b.test", "unavailable") })
            let status = try await bob.call("GET", "/presence/@alice:a.test/status")
            #expect(status.json["status_msg"]?.stringValue == "away", "\(status.json)")
        }
    }
}
