import Matrix
import Persistence
import Synchronization
import Testing
@testable import Actors

/// An in-process `FederationRequesting`: each server name maps to a function answering
/// requests; every request is counted. No network: the ring's logic alone.
final class FakeFederation: FederationRequesting {
    typealias Answer = @Sendable (String, String, JSON?) async -> FederationReply?
    let servers: [String: Answer]
    let log = Mutex<[String]>([])

    init(_ servers: [String: Answer]) { self.servers = servers }

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        log.withLock { $0.append("\(method) \(destination)\(path)") }
        guard let answer = servers[destination.rawValue], let reply = await answer(method, path, body) else {
            throw FederationRequestError(.unreachable, "no route to \(destination)")
        }
        return reply
    }

    var requests: [String] { log.withLock { $0 } }
}

/// A settable clock.
final class TestClock: Sendable {
    let value = Mutex<Int64>(1_000_000)
    func now() -> Int64 { value.withLock { $0 } }
    func advance(_ ms: Int64) { value.withLock { $0 += ms } }
}

@Suite("Server key ring")
struct ServerKeyRingTests {
    static let local = try! ServerName(parsing: "local.test")
    static let remote = try! ServerName(parsing: "remote.test")
    static let notary = try! ServerName(parsing: "notary.test")
    let remoteKey = SigningKey.generate(version: "r1")
    let notaryKey = SigningKey.generate(version: "n1")

    func keyServer(_ key: SigningKey, _ name: ServerName, validUntil: @escaping @Sendable () -> Int64) -> FakeFederation.Answer {
        { method, path, _ in
            guard method == "GET", path == "/_matrix/key/v2/server" else { return FederationReply(status: 404, json: nil) }
            return FederationReply(status: 200, json: key.serverKeysResponse(serverName: name.rawValue, validUntilTS: validUntil()))
        }
    }

    func ring(_ fake: FakeFederation, clock: TestClock, store: ServerKeyStore? = nil, notaries: [ServerName] = []) -> ServerKeyRing {
        let ring = ServerKeyRing(serverName: Self.local, signingKey: SigningKey.generate(), store: store, notaries: notaries,
                                 now: { clock.now() })
        ring.use(fake)
        return ring
    }

    @Test func fetchesOnceForConcurrentLookupsAndCaches() async throws {
        let clock = TestClock()
        let fake = FakeFederation([Self.remote.rawValue: keyServer(remoteKey, Self.remote) { clock.now() + 3_600_000 }])
        let ring = ring(fake, clock: clock)
        let keyID = remoteKey.keyID
        let keys = try await withThrowingTaskGroup(of: VerifyKey.self) { group in
            for _ in 0..<20 { group.addTask { try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: clock.now()) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(keys.count == 20 && keys.allSatisfy { $0 == remoteKey.verifyKey })
        #expect(fake.requests == ["GET remote.test/_matrix/key/v2/server"])
        _ = try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: clock.now())
        #expect(fake.requests.count == 1)
    }

    @Test func unknownKeysAreRefusedAndNotRefetchedAtOnce() async throws {
        let clock = TestClock()
        let fake = FakeFederation([Self.remote.rawValue: keyServer(remoteKey, Self.remote) { clock.now() + 3_600_000 }])
        let ring = ring(fake, clock: clock)
        for _ in 0..<3 {
            await #expect(throws: MatrixError.self) { try await ring.verifyKey(server: Self.remote, keyID: "ed25519:other", validAt: nil) }
        }
        #expect(fake.requests.count == 1)
        clock.advance(ServerKeyRing.refetchIntervalMS + 1)
        await #expect(throws: MatrixError.self) { try await ring.verifyKey(server: Self.remote, keyID: "ed25519:other", validAt: nil) }
        #expect(fake.requests.count == 2)
        // An unreachable server is an unknown key, not a crash.
        await #expect(throws: MatrixError.self) {
            try await ring.verifyKey(server: try ServerName(parsing: "gone.test"), keyID: "ed25519:x", validAt: nil)
        }
    }

    @Test func validUntilIsHonouredAndCappedAtSevenDays() async throws {
        let clock = TestClock()
        let until = Mutex<Int64>(0)
        until.withLock { $0 = clock.now() + 10_000 }
        let fake = FakeFederation([Self.remote.rawValue: keyServer(remoteKey, Self.remote) { until.withLock { $0 } }])
        let ring = ring(fake, clock: clock)
        let keyID = remoteKey.keyID
        _ = try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: clock.now())
        // Past valid_until_ts: refused for that time (after one refetch that did not help)...
        clock.advance(ServerKeyRing.refetchIntervalMS + 20_000)
        await #expect(throws: MatrixError.self) { try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: clock.now()) }
        #expect(fake.requests.count == 2)
        // ...still usable for something signed before it, and where validity is not enforced.
        _ = try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: until.withLock { $0 } - 1)
        _ = try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: nil)
        // A year of validity counts for seven days.
        until.withLock { $0 = clock.now() + 365 * 24 * 3_600_000 }
        clock.advance(ServerKeyRing.refetchIntervalMS + 1)
        _ = try await ring.verifyKey(server: Self.remote, keyID: keyID, validAt: clock.now())
        #expect(ring.cachedKeys(of: Self.remote)[keyID]?.validUntilTS == clock.now() + ServerKeyRing.maxValidityMS)
    }

    @Test func responsesForAnotherServerOrBadlySignedAreRejected() async throws {
        let clock = TestClock()
        let impostor = SigningKey.generate(version: "r1")
        let fake = FakeFederation([
            // Claims to be other.test.
            Self.remote.rawValue: { _, _, _ in FederationReply(status: 200, json: self.remoteKey.serverKeysResponse(serverName: "other.test", validUntilTS: clock.now() + 3_600_000)) },
            // Lists one key but is signed by another with the same ID.
            "forged.test": { _, _, _ in
                var body = impostor.serverKeysResponse(serverName: "forged.test", validUntilTS: clock.now() + 3_600_000)
                body["verify_keys"] = [impostor.keyID: ["key": .string(self.remoteKey.verifyKey.base64)]]
                return FederationReply(status: 200, json: body)
            },
        ])
        let ring = ring(fake, clock: clock)
        await #expect(throws: MatrixError.self) { try await ring.verifyKey(server: Self.remote, keyID: remoteKey.keyID, validAt: nil) }
        await #expect(throws: MatrixError.self) {
            try await ring.verifyKey(server: try ServerName(parsing: "forged.test"), keyID: impostor.keyID, validAt: nil)
        }
    }

    /// A notary answers for a server that does not answer itself; its signature is checked
    /// with the key it publishes; a notary answer it did not sign is refused.
    @Test(arguments: [true, false])
    func notaryIsUsedWhenTheServerIsUnreachable(_ signedByNotary: Bool) async throws {
        let clock = TestClock()
        let remoteKey = self.remoteKey, notaryKey = self.notaryKey
        let notaryAnswer: FakeFederation.Answer = { method, path, body in
            if method == "GET" && path == "/_matrix/key/v2/server" {
                return FederationReply(status: 200, json: notaryKey.serverKeysResponse(serverName: Self.notary.rawValue, validUntilTS: clock.now() + 3_600_000))
            }
            guard method == "POST", path == "/_matrix/key/v2/query",
                  body?["server_keys"]?[Self.remote.rawValue]?[remoteKey.keyID]?["minimum_valid_until_ts"]?.intValue != nil else {
                return FederationReply(status: 400, json: nil)
            }
            var entry = remoteKey.serverKeysResponse(serverName: Self.remote.rawValue, validUntilTS: clock.now() + 3_600_000)
            if signedByNotary { entry = try! notaryKey.sign(json: entry, entity: Self.notary.rawValue) }
            return FederationReply(status: 200, json: ["server_keys": [entry]])
        }
        let fake = FakeFederation([Self.notary.rawValue: notaryAnswer])
        let ring = ring(fake, clock: clock, notaries: [Self.notary])
        if signedByNotary {
            #expect(try await ring.verifyKey(server: Self.remote, keyID: remoteKey.keyID, validAt: clock.now()) == remoteKey.verifyKey)
        } else {
            await #expect(throws: MatrixError.self) { try await ring.verifyKey(server: Self.remote, keyID: remoteKey.keyID, validAt: clock.now()) }
        }
        #expect(fake.requests.first == "GET remote.test/_matrix/key/v2/server")
        #expect(fake.requests.contains("POST notary.test/_matrix/key/v2/query"))
    }

    @Test(arguments: Backend.enabled)
    func storedKeysSurviveTheRingAndFeedTheNotary(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let clock = TestClock()
            let store = ServerKeyStore(database: database)
            let fake = FakeFederation([Self.remote.rawValue: keyServer(remoteKey, Self.remote) { clock.now() + 3_600_000 }])
            let first = ring(fake, clock: clock, store: store)
            _ = try await first.verifyKey(server: Self.remote, keyID: remoteKey.keyID, validAt: clock.now())
            #expect(try await store.keys(of: "remote.test").map(\.keyID) == [remoteKey.keyID])
            // A new ring (a restart) finds the key in the store without fetching.
            let silent = FakeFederation([:])
            let second = ring(silent, clock: clock, store: store)
            #expect(try await second.verifyKey(server: Self.remote, keyID: remoteKey.keyID, validAt: clock.now()) == remoteKey.verifyKey)
            #expect(silent.requests.isEmpty)
            // The notary serves the response as received: still verifiable as the server's own.
            let served = try #require(await second.keyResponse(for: Self.remote, minimumValidUntil: clock.now()))
            let keys = try ServerKeys(response: served, expectedServerName: "remote.test")
            #expect(keys.verifyKeys[remoteKey.keyID] == remoteKey.verifyKey)
            #expect(silent.requests.isEmpty)
            // Asking for a validity beyond the stored one refetches (and returns the stale copy when that fails).
            #expect(await second.keyResponse(for: Self.remote, minimumValidUntil: clock.now() + 7_200_000) != nil)
            #expect(silent.requests == ["GET remote.test/_matrix/key/v2/server"])
        }
    }

    /// What a fake origin answers to `GET /_matrix/key/v2/server`: a key and its validity, or 400.
    final class KeyOrigin: Sendable {
        let current = Mutex<(SigningKey, Int64)?>(nil)
        func set(_ value: (SigningKey, Int64)?) { current.withLock { $0 = value } }
        var answer: FakeFederation.Answer {
            { [self] _, _, _ in
                guard let (key, until) = current.withLock({ $0 }) else { return FederationReply(status: 400, json: nil) }
                return FederationReply(status: 200, json: key.serverKeysResponse(serverName: "remote.test", validUntilTS: until))
            }
        }
    }

    /// SyTest 01keys: "Key notary server should return an expired key if it can't find any
    /// others" and "... must not overwrite a valid key with a spurious result from the origin".
    @Test(arguments: Backend.enabled)
    func notaryServesEachNamedKeyFromTheLatestResponseListingIt(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let clock = TestClock()
            let origin = KeyOrigin()
            let fake = FakeFederation([Self.remote.rawValue: origin.answer])
            let ring = ring(fake, clock: clock, store: ServerKeyStore(database: database))
            let key1 = SigningKey.generate(version: "k1"), key2 = SigningKey.generate(version: "k2")
            let expired = clock.now() - 86_400_000
            func listed(_ served: [JSON]) -> [String: Int64] {
                var found: [String: Int64] = [:]
                for json in served {
                    guard let keys = try? ServerKeys(response: json, expectedServerName: "remote.test") else { continue }
                    for id in keys.verifyKeys.keys { found[id] = keys.validUntilTS }
                }
                return found
            }
            // An unknown key is fetched, and served though expired.
            origin.set((key1, expired))
            #expect(listed(await ring.keyResponses(for: Self.remote, minimumValidUntil: [key1.keyID: 0])) == [key1.keyID: expired])
            // A later minimum fetches again at once (not held back by the refetch interval);
            // the origin failing, the expired key is still served.
            origin.set(nil)
            #expect(listed(await ring.keyResponses(for: Self.remote, minimumValidUntil: [key1.keyID: expired + 1])) == [key1.keyID: expired])
            #expect(fake.requests.count == 2)
            // The origin now lists only key2: asked for key1, that answer does not replace key1's.
            origin.set((key2, expired + 1_000))
            _ = await ring.keyResponses(for: Self.remote, minimumValidUntil: [key1.keyID: clock.now()])
            #expect(fake.requests.count == 3)
            #expect(listed(await ring.keyResponses(for: Self.remote, minimumValidUntil: [key1.keyID: expired])) == [key1.keyID: expired])
            #expect(fake.requests.count == 3)
            #expect(listed(await ring.keyResponses(for: Self.remote, minimumValidUntil: [key2.keyID: 0])) == [key2.keyID: expired + 1_000])
        }
    }

    @Test func pduSignaturesAreVerifiedWithTheRing() async throws {
        let clock = TestClock()
        let fake = FakeFederation([Self.remote.rawValue: keyServer(remoteKey, Self.remote) { clock.now() + 3_600_000 }])
        let ring = ring(fake, clock: clock)
        let v10 = RoomVersion.all.first { $0.id == "10" }!
        let event: JSON = [
            "type": "m.room.message", "sender": "@a:remote.test", "room_id": "!r:remote.test",
            "content": ["body": "hi", "msgtype": "m.text"], "origin_server_ts": .int(clock.now()), "depth": 2,
            "prev_events": [], "auth_events": [],
        ]
        let signed = try remoteKey.sign(event: event, roomVersion: v10, serverName: "remote.test")
        let ok = try await ring.verify(pdu: signed, roomVersion: v10)
        #expect(!ok.redacted && ok.pdu.sender.rawValue == "@a:remote.test")
        // Content changed after signing: the signature still holds (it covers the redacted
        // event), the hash does not: redacted.
        var edited = signed
        edited["content"] = ["body": "edited", "msgtype": "m.text"]
        #expect(try await ring.verify(pdu: edited, roomVersion: v10).redacted)
        // A signature by someone else under the sender's server name: refused.
        let forged = try SigningKey.generate(version: "r1").sign(event: event, roomVersion: v10, serverName: "remote.test")
        await #expect(throws: MatrixError.self) { try await ring.verify(pdu: forged, roomVersion: v10) }
        // A changed essential field (type) breaks the signature.
        var retyped = signed
        retyped["type"] = "m.room.other"
        await #expect(throws: MatrixError.self) { try await ring.verify(pdu: retyped, roomVersion: v10) }
        // Signed at a time the key is not valid for (v5+ enforce validity): refused.
        var late = event
        late["origin_server_ts"] = .int(clock.now() + 30 * 24 * 3_600_000)
        let lateSigned = try remoteKey.sign(event: late, roomVersion: v10, serverName: "remote.test")
        await #expect(throws: MatrixError.self) { try await ring.verify(pdu: lateSigned, roomVersion: v10) }
    }
}
