import Matrix
import Persistence
import Testing
@testable import Actors

struct SessionActorTests {
    static func key(_ user: Int, _ device: Int) -> SessionKey {
        SessionKey(user: testUser("s\(user)"), device: try! DeviceID(parsing: "D\(device)"))
    }

    static func identity(_ key: SessionKey) -> SessionActor.Identity {
        .init(user: key.user, device: key.device, isGuest: false, isAdmin: false)
    }

    /// 10 devices × 100 requests each produce one flush of 10 rows holding the newest
    /// sighting of each device.
    @Test(arguments: Backend.enabled)
    func lastSeenIsBatched(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let keys = (0..<10).map { Self.key($0, $0) }
            for key in keys {
                try await database.devices.upsertDevice(DeviceRecord(userID: key.user.rawValue, deviceID: key.device.rawValue,
                                                                      createdTs: 0))
            }
            let batcher = LastSeenBatcher(store: database.devices)
            let registry = Registry<SessionKey, SessionActor>(limits: RegistryLimits(maxResident: 100, idleTimeout: .seconds(900))) { key in
                SessionActor(identity: Self.identity(key), lastSeen: batcher)
            }
            await withThrowingTaskGroup(of: Void.self) { group in
                for key in keys {
                    group.addTask {
                        for request in 0..<100 {
                            try await registry.get(key).seen(at: Int64(1_000 + request), ip: "10.0.0.\(request / 10)",
                                                             userAgent: request == 99 ? nil : "test")
                        }
                    }
                }
            }
            #expect(batcher.pendingCount == 10)
            // A request without a user agent keeps the previous one.
            #expect(batcher.pending(keys[0]) == .init(timestamp: 1_099, ip: "10.0.0.9", userAgent: "test"))
            try await batcher.flush()
            #expect(batcher.rowsWritten == 10)
            #expect(batcher.pendingCount == 0)
            // The written batch stays visible until the next flush: a reader that read the
            // store before the write committed still sees the sighting.
            #expect(batcher.pending(keys[0])?.timestamp == 1_099)
            try await batcher.flush()
            #expect(batcher.rowsWritten == 10)
            #expect(batcher.pending(keys[0])?.timestamp == 1_099)
            // A newer sighting in `pending` wins over the written one; a deleted device is forgotten in both.
            try await registry.get(keys[0]).seen(at: 2_000, ip: "10.0.0.1", userAgent: nil)
            #expect(batcher.pending(keys[0]) == .init(timestamp: 2_000, ip: "10.0.0.1", userAgent: "test"))
            batcher.forget(keys[1].user, device: keys[1].device)
            #expect(batcher.pending(keys[1]) == nil)
            try await batcher.flush()
            for key in keys.dropFirst() {
                let device = try await database.devices.device(of: key.user, id: key.device)
                #expect(device?.lastSeenTs == 1_099)
                #expect(device?.lastSeenIP == "10.0.0.9")
                #expect(device?.lastSeenUserAgent == "test")
            }
            await registry.deactivateAll()
        }
    }

    @Test func lazyLoadingAndToDeviceAcknowledgement() async throws {
        try await withStore(.sqlite) { database in
            let session = SessionActor(identity: Self.identity(Self.key(1, 1)), lastSeen: LastSeenBatcher(store: database.devices))
            let room = try RoomID(parsing: "!r:example.org")
            let a = testUser("a"), b = testUser("b"), c = testUser("c")
            #expect(await session.membersToSend(in: room, among: [a, b]) == [a, b])
            #expect(await session.membersToSend(in: room, among: [b, c, c]) == [c])
            await session.forgetMembersSent(in: room)
            #expect(await session.membersToSend(in: room, among: [a]) == [a])
            #expect(session.toDeviceAcknowledged == nil)
            session.recordToDeviceAcknowledged(7)
            #expect(session.toDeviceAcknowledged == 7)
        }
    }
}

/// `Sessions`: the token index in front of the session registry.
struct SessionsTests {
    /// A user with one device and one access token (of hash `token`) in the store.
    static func addDevice(_ database: Database, user: String, device: String, token: String,
                          expiresTs: Int64? = nil) async throws {
        _ = try await database.accounts.createUser(UserRecord(userID: user))
        try await database.devices.upsertDevice(DeviceRecord(userID: user, deviceID: device, createdTs: 0))
        try await database.tokens.insertAccessToken(AccessTokenRecord(tokenHash: token, userID: user, deviceID: device,
                                                                      expiresTs: expiresTs))
    }

    static func sessions(_ database: Database, maxResident: Int = 100) -> Sessions {
        Sessions(store: database.tokens, limits: RegistryLimits(maxResident: maxResident, idleTimeout: .seconds(900)),
                 lastSeen: LastSeenBatcher(store: database.devices))
    }

    static func authenticate(_ sessions: Sessions, _ token: String) async throws -> Sessions.Authenticated {
        try await sessions.authenticate(tokenHash: token, now: currentTimeMillis(), ip: "192.0.2.1", userAgent: "t")
    }

    @Test(arguments: Backend.enabled)
    func residentTokensReadNothing(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            try await Self.addDevice(database, user: "@a:example.org", device: "PHONE", token: "h1")
            let sessions = Self.sessions(database)
            let before = database.readCount
            let first = try await Self.authenticate(sessions, "h1")
            #expect(first.user == testUser("a") && first.deviceID == "PHONE")
            #expect(database.readCount == before + 1)
            for _ in 0..<10 { _ = try await Self.authenticate(sessions, "h1") }
            #expect(database.readCount == before + 1)
            #expect(sessions.resident(SessionKey(user: testUser("a"), device: try DeviceID(parsing: "PHONE"))) === first.session)
            await #expect(throws: MatrixError.self) { try await Self.authenticate(sessions, "unknown") }
            await sessions.shutdown()
        }
    }

    @Test func revocationIsImmediate() async throws {
        try await withStore(.sqlite) { database in
            try await Self.addDevice(database, user: "@a:example.org", device: "PHONE", token: "h1")
            try await Self.addDevice(database, user: "@a:example.org", device: "LAPTOP", token: "h2")
            let sessions = Self.sessions(database)
            _ = try await Self.authenticate(sessions, "h1")
            _ = try await Self.authenticate(sessions, "h2")
            // The store deleted PHONE's token; the revocation makes the next use read it.
            _ = try await database.tokens.deleteAccessTokens(of: UserID(parsing: "@a:example.org"), device: DeviceID(parsing: "PHONE"))
            #expect(sessions.isResident(tokenHash: "h1"))
            await sessions.revoke(testUser("a"), device: try DeviceID(parsing: "PHONE"))
            #expect(!sessions.isResident(tokenHash: "h1"))
            #expect(sessions.isResident(tokenHash: "h2"))
            await #expect(throws: MatrixError.self) { try await Self.authenticate(sessions, "h1") }
            // Every device but LAPTOP: nothing else is resident, LAPTOP stays.
            await sessions.revoke(testUser("a"), keeping: try DeviceID(parsing: "LAPTOP"))
            #expect(sessions.isResident(tokenHash: "h2"))
            await sessions.revoke(testUser("a"))
            #expect(!sessions.isResident(tokenHash: "h2"))
            #expect(await sessions.registry.counters.resident == 0)
            await sessions.shutdown()
        }
    }

    @Test func expiredTokensAreSoftLoggedOut() async throws {
        try await withStore(.sqlite) { database in
            try await Self.addDevice(database, user: "@a:example.org", device: "PHONE", token: "h1", expiresTs: 1)
            let sessions = Self.sessions(database)
            for _ in 0..<2 {
                do {
                    _ = try await Self.authenticate(sessions, "h1")
                    Issue.record("an expired token authenticated")
                } catch let error as MatrixError {
                    #expect(error.code == .unknownToken)
                    #expect(error.extra["soft_logout"] == .bool(true))
                }
            }
            await sessions.shutdown()
        }
    }

    /// With room for one session, two devices taking turns evict each other, so every turn
    /// reads the store; with room for two, neither does after its first request.
    @Test func maxResidentBoundsWhatStaysResident() async throws {
        try await withStore(.sqlite) { database in
            try await Self.addDevice(database, user: "@a:example.org", device: "PHONE", token: "h1")
            try await Self.addDevice(database, user: "@a:example.org", device: "LAPTOP", token: "h2")
            for (maxResident, expectedReads) in [(1, 6), (2, 2)] {
                let sessions = Self.sessions(database, maxResident: maxResident)
                let before = database.readCount
                for _ in 0..<3 {
                    _ = try await Self.authenticate(sessions, "h1")
                    _ = try await Self.authenticate(sessions, "h2")
                }
                #expect(database.readCount - before == expectedReads)
                await sessions.shutdown()
            }
        }
    }
}
