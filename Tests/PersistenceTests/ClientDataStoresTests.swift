import Matrix
import Testing
@testable import Persistence

@Suite("Account data, presence, filter, profile-field and OpenID stores, and account-store additions")
struct ClientDataStoresTests {
    @Test(arguments: Backend.enabled)
    func accountDataPresenceFiltersOpenID(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, b, r) = (try UserID(parsing: "@a:t"), try UserID(parsing: "@b:t"), try RoomID(parsing: "!r:t"))
            try await database.accountData.putAccountData(userID: a, roomID: nil, type: "x", content: #"{"v":1}"#, position: 1)
            try await database.accountData.putAccountData(userID: a, roomID: r, type: "x", content: #"{"v":2}"#, position: 2)
            try await database.accountData.putAccountData(userID: a, roomID: nil, type: "x", content: #"{"v":3}"#, position: 3)
            #expect(try await database.accountData.accountData(userID: a, roomID: nil, type: "x") == #"{"v":3}"#)
            #expect(try await database.accountData.accountData(userID: a, roomID: r, type: "x") == #"{"v":2}"#)
            #expect(try await database.accountData.accountData(userID: b, roomID: nil, type: "x") == nil)
            try await database.accountData.updateAccountData(userID: a, roomID: r, type: "m.tag", position: 4) { current in
                #expect(current == nil)
                return #"{"tags":{}}"#
            }
            let changes = try await database.accountData.accountDataChanges(userID: a, since: 1)
            #expect(changes.map(\.type) == ["x", "x", "m.tag"])
            #expect(changes.map(\.roomID) == ["!r:t", nil, "!r:t"])
            let tracker = try await StreamTracker.load(name: "account_data", from: database,
                                                       maxPositionSQL: AccountDataStore.maxPositionSQL)
            #expect(tracker.visiblePosition == 4)

            #expect(try await database.presence.presence(userID: a) == nil)
            let online = PresenceStore.Presence(state: "online", statusMessage: "hi", lastActiveTs: 10)
            try await database.presence.setPresence(userID: a, online, position: 1)
            try await database.presence.setPresence(userID: a, .init(state: "offline", statusMessage: nil, lastActiveTs: 20), position: 2)
            #expect(try await database.presence.presence(userID: a) == .init(state: "offline", statusMessage: nil, lastActiveTs: 20))

            #expect(try await database.filters.addFilter(userID: a, json: "{}") == 0)
            #expect(try await database.filters.addFilter(userID: a, json: #"{"x":1}"#) == 1)
            #expect(try await database.filters.addFilter(userID: b, json: "{}") == 0)
            #expect(try await database.filters.filter(userID: a, filterID: 1) == #"{"x":1}"#)
            #expect(try await database.filters.filter(userID: a, filterID: 2) == nil)

            #expect(try await database.profileFields.setProfileField(of: id("@a:t"), key: "m.tz", value: #""UTC""#, maxTotalBytes: 20))
            #expect(try await database.profileFields.setProfileField(of: id("@a:t"), key: "m.tz", value: #""Europe/Paris""#, maxTotalBytes: 20))
            #expect(try await database.profileFields.setProfileField(of: id("@a:t"), key: "x", value: "[1,2,3,4,5,6]", maxTotalBytes: 20) == false)
            #expect(try await database.profileFields.profileFields(of: id("@a:t")).map(\.value) == [#""Europe/Paris""#])
            #expect(try await database.profileFields.setProfileField(of: id("@a:t"), key: "m.tz", value: nil, maxTotalBytes: 20))
            #expect(try await database.profileFields.profileFields(of: id("@a:t")).isEmpty)

            try await database.openIDTokens.addOpenIDToken(hash: "h", userID: a, expiresTs: 1_000)
            #expect(try await database.openIDTokens.openIDUser(hash: "h", now: 999) == "@a:t")
            #expect(try await database.openIDTokens.openIDUser(hash: "h", now: 1_001) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func presenceInBulk(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, b, c) = (try id("@a:t"), try id("@b:t"), try id("@c:t"))
            let online = PresenceStore.Presence(state: "online", statusMessage: nil, lastActiveTs: 5)
            let away = PresenceStore.Presence(state: "unavailable", statusMessage: "lunch", lastActiveTs: 6)
            try await database.presence.setPresences([(a, online), (b, away)], position: 1)
            #expect(try await database.presence.presences(of: [a, b, c]) == [a: online, b: away])
            try await database.presence.setPresences([(b, online)], position: 2)
            #expect(try await database.presence.presences(of: [b]) == [b: online])
            #expect(try await database.presence.presences(of: []).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func accountStoreAdditions(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.accounts, devices = database.devices, tokens = database.tokens
            #expect(try await store.createUser(UserRecord(userID: "@alice:t", passwordHash: "old", displayname: "Alice")))
            #expect(try await store.createUser(UserRecord(userID: "@albert:t", displayname: "50% off_")))
            #expect(try await store.createUser(UserRecord(userID: "@zed:t", isGuest: true)))
            for device in ["A", "B", "C"] {
                try await devices.upsertDevice(DeviceRecord(userID: "@alice:t", deviceID: device))
                try await tokens.insertAccessToken(AccessTokenRecord(tokenHash: "tok" + device, userID: "@alice:t", deviceID: device,
                                                                    refreshTokenHash: "ref" + device))
            }
            try await devices.recordLastSeen([("@alice:t", "A", 77, "10.0.0.1", "ua"), ("@alice:t", "GONE", 1, "x", nil)])
            #expect(try await devices.device(of: id("@alice:t"), id: device("A"))?.lastSeenTs == 77)
            #expect(try await devices.device(of: id("@alice:t"), id: device("GONE")) == nil)

            try await devices.deleteDevices(of: id("@alice:t"), ids: [device("C")])
            #expect(try await tokens.accessToken(hash: "tokC") == nil)
            let oldB = try #require(try await tokens.accessToken(refreshHash: "refB"))
            #expect(try await tokens.rotateRefreshToken(old: oldB,
                                                        new: AccessTokenRecord(tokenHash: "tokB2", userID: "@alice:t", deviceID: "B",
                                                                              refreshTokenHash: "refB2")))
            // Until the new tokens are used, the old ones stay (a lost response can be retried)
            // and a repeated refresh replaces the unused successor.
            #expect(try await tokens.accessToken(hash: "tokB") != nil)
            #expect(try await tokens.rotateRefreshToken(old: oldB,
                                                        new: AccessTokenRecord(tokenHash: "tokB3", userID: "@alice:t", deviceID: "B",
                                                                              refreshTokenHash: "refB3")))
            #expect(try await tokens.accessToken(hash: "tokB2") == nil)
            #expect(try await tokens.accessToken(hash: "tokB3")?.replacesTokenHash == "tokB")
            try await tokens.completeRotation(tokenHash: "tokB3", replaced: "tokB")
            #expect(try await tokens.accessToken(hash: "tokB") == nil)
            #expect(try await tokens.accessToken(hash: "tokB3")?.replacesTokenHash == nil)
            #expect(try await tokens.rotateRefreshToken(old: oldB,
                                                        new: AccessTokenRecord(tokenHash: "tokB4", userID: "@alice:t", deviceID: "B")) == false)
            #expect(try await tokens.accessToken(hash: "tokB3") != nil)

            try await store.setPassword(of: id("@alice:t"), hash: "new", logoutExcept: .some("A"))
            #expect(try await store.user(id: id("@alice:t"))?.passwordHash == "new")
            #expect(try await devices.devices(of: id("@alice:t")).map(\.deviceID) == ["A"])
            #expect(try await tokens.accessToken(hash: "tokA") != nil)
            #expect(try await tokens.accessToken(hash: "tokB3") == nil)

            #expect(try await store.setProfileField(of: id("@alice:t"), field: .avatarURL, value: "mxc://t/a"))
            #expect(try await store.setProfileField(of: id("@nobody:t"), field: .displayname, value: "x") == false)

            // Localparts and display names match; the server name, guests and LIKE wildcards do not.
            #expect(try await store.searchUsers(term: "AL", serverName: "t", limit: 10).map(\.userID) == ["@albert:t", "@alice:t"])
            #expect(try await store.searchUsers(term: "t", serverName: "t", limit: 10).map(\.userID) == ["@albert:t"])
            #expect(try await store.searchUsers(term: "%", serverName: "t", limit: 10).map(\.userID) == ["@albert:t"])
            #expect(try await store.searchUsers(term: "f_", serverName: "t", limit: 10).map(\.userID) == ["@albert:t"])
            #expect(try await store.searchUsers(term: "e_", serverName: "t", limit: 10).isEmpty)
            #expect(try await store.searchUsers(term: "zed", serverName: "t", limit: 10).isEmpty)

            try await store.deactivate(id("@alice:t"), erase: true)
            let alice = try await store.user(id: id("@alice:t"))
            #expect(alice?.deactivated == true)
            #expect(alice?.passwordHash == nil)
            #expect(alice?.displayname == nil)
            #expect(try await devices.devices(of: id("@alice:t")).isEmpty)
            #expect(try await tokens.accessToken(hash: "tokA") == nil)
            #expect(try await store.searchUsers(term: "alice", serverName: "t", limit: 10).isEmpty)
        }
    }
}
