import Matrix
import Testing
@testable import Persistence

/// A user id of these tests.
func id(_ text: String) throws -> UserID { try UserID(parsing: text) }
/// A device id of these tests.
func device(_ text: String) throws -> DeviceID { try DeviceID(parsing: text) }

@Suite("Account, device and token stores")
struct AccountStoreTests {
    @Test(arguments: Backend.enabled)
    func users(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.accounts
            let alice = UserRecord(userID: "@alice:test", passwordHash: "$2b$12$hash", createdTs: 1_700_000_000_000,
                                   isAdmin: true, displayname: "Alice ✓")
            #expect(try await store.createUser(alice))
            #expect(try await store.user(id: id("@alice:test")) == alice)
            // Taken ids change nothing.
            var impostor = alice
            impostor.passwordHash = "other"
            #expect(try await store.createUser(impostor) == false)
            #expect(try await store.user(id: id("@alice:test")) == alice)

            let guest = UserRecord(userID: "@1234:test", createdTs: 5, isGuest: true)
            #expect(try await store.createUser(guest))
            #expect(try await store.user(id: id("@1234:test")) == guest)
            #expect(try await store.user(id: id("@nobody:test")) == nil)

            var changed = alice
            changed.deactivated = true
            changed.passwordHash = nil
            changed.avatarURL = "mxc://test/abc"
            #expect(try await store.updateUser(changed))
            #expect(try await store.user(id: id("@alice:test")) == changed)
            #expect(try await store.updateUser(UserRecord(userID: "@nobody:test")) == false)
        }
    }

    @Test(arguments: Backend.enabled)
    func devices(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.devices
            let phone = DeviceRecord(userID: "@alice:test", deviceID: "PHONE", displayName: "Phone", createdTs: 10)
            let laptop = DeviceRecord(userID: "@alice:test", deviceID: "LAPTOP", createdTs: 20)
            let bobs = DeviceRecord(userID: "@bob:test", deviceID: "PHONE", createdTs: 30)
            for device in [phone, laptop, bobs] { try await store.upsertDevice(device) }

            #expect(try await store.devices(of: id("@alice:test")) == [laptop, phone])
            #expect(try await store.devices(of: id("@bob:test")) == [bobs])
            #expect(try await store.devices(of: id("@carol:test")) == [])

            // Upsert: last-seen set, display name kept when not given, created_ts never moves.
            try await store.upsertDevice(DeviceRecord(userID: "@alice:test", deviceID: "PHONE", lastSeenTs: 99,
                                                      lastSeenIP: "192.0.2.1", lastSeenUserAgent: "nio", createdTs: 1000))
            let updated = try await store.device(of: id("@alice:test"), id: device("PHONE"))
            #expect(updated == DeviceRecord(userID: "@alice:test", deviceID: "PHONE", displayName: "Phone",
                                            lastSeenTs: 99, lastSeenIP: "192.0.2.1", lastSeenUserAgent: "nio",
                                            createdTs: 10))
            try await store.upsertDevice(DeviceRecord(userID: "@alice:test", deviceID: "PHONE", displayName: "Renamed"))
            #expect(try await store.device(of: id("@alice:test"), id: device("PHONE"))?.displayName == "Renamed")
        }
    }

    @Test(arguments: Backend.enabled)
    func deletingADeviceDeletesItsTokensOnly(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let devices = database.devices, tokens = database.tokens
            for device in ["PHONE", "LAPTOP"] {
                try await devices.upsertDevice(DeviceRecord(userID: "@alice:test", deviceID: device))
                try await tokens.insertAccessToken(AccessTokenRecord(tokenHash: "token-\(device)", userID: "@alice:test",
                                                                    deviceID: device))
            }
            try await devices.upsertDevice(DeviceRecord(userID: "@bob:test", deviceID: "PHONE"))
            try await tokens.insertAccessToken(AccessTokenRecord(tokenHash: "token-bob", userID: "@bob:test", deviceID: "PHONE"))

            #expect(try await devices.deleteDevice(of: id("@alice:test"), id: device("PHONE")))
            #expect(try await devices.deleteDevice(of: id("@alice:test"), id: device("PHONE")) == false)
            #expect(try await devices.devices(of: id("@alice:test")).map(\.deviceID) == ["LAPTOP"])
            #expect(try await tokens.accessToken(hash: "token-PHONE") == nil)
            #expect(try await tokens.accessToken(hash: "token-LAPTOP") != nil)
            #expect(try await tokens.accessToken(hash: "token-bob") != nil)
            #expect(try await devices.devices(of: id("@bob:test")).count == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func accessTokens(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.tokens
            let first = AccessTokenRecord(tokenHash: "h1", userID: "@alice:test", deviceID: "PHONE", createdTs: 1,
                                          expiresTs: 300_000, refreshTokenHash: "r1", refreshExpiresTs: 900_000)
            let second = AccessTokenRecord(tokenHash: "h2", userID: "@alice:test", deviceID: "PHONE", createdTs: 2)
            let third = AccessTokenRecord(tokenHash: "h3", userID: "@alice:test", deviceID: "LAPTOP", createdTs: 3)
            let deviceless = AccessTokenRecord(tokenHash: "h4", userID: "@alice:test", deviceID: nil, createdTs: 4)
            let bobs = AccessTokenRecord(tokenHash: "h5", userID: "@bob:test", deviceID: "PHONE", createdTs: 5)
            for token in [first, second, third, deviceless, bobs] { try await store.insertAccessToken(token) }

            #expect(try await store.accessToken(hash: "h1") == first)
            #expect(try await store.accessToken(hash: "h4") == deviceless)
            #expect(try await store.accessToken(refreshHash: "r1") == first)
            #expect(try await store.accessToken(hash: "missing") == nil)

            let duplicate = await #expect(throws: DatabaseError.self) {
                try await store.insertAccessToken(AccessTokenRecord(tokenHash: "h6", userID: "@x:test", deviceID: nil,
                                                                    refreshTokenHash: "r1"))
            }
            #expect(duplicate?.kind == .uniqueViolation)

            #expect(try await store.deleteAccessTokens(of: id("@alice:test"), device: device("PHONE")) == 2)
            #expect(try await store.accessToken(hash: "h1") == nil)
            #expect(try await store.accessToken(hash: "h3") == third)
            #expect(try await store.deleteAccessToken(hash: "h3"))
            #expect(try await store.deleteAccessToken(hash: "h3") == false)
            #expect(try await store.deleteAccessTokens(of: id("@alice:test"), device: nil) == 1)
            #expect(try await store.accessToken(hash: "h4") == nil)
            #expect(try await store.accessToken(hash: "h5") == bobs)
        }
    }
}
