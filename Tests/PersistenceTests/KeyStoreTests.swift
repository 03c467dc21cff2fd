import Matrix
import Testing
@testable import Persistence

/// End-to-end encryption key tables on both backends: device keys, one-time and fallback
/// keys (claiming), cross-signing keys, signatures and the device-list stream queries.
@Suite("Key store on SQLite and PostgreSQL")
struct KeyStoreTests {
    static func key(_ algorithm: String, _ id: String, _ body: String) -> KeyStore.UploadedKey {
        KeyStore.UploadedKey(algorithm: algorithm, keyID: id, json: Array(body.utf8))
    }

    @Test(arguments: Backend.enabled)
    func oneTimeAndFallbackKeysAreClaimedOnce(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { db throws in
                #expect(try KeyStore.setDeviceKeys(db, userID: "@a:t", deviceID: "D", json: Array("{\"k\":1}".utf8)))
                #expect(try !KeyStore.setDeviceKeys(db, userID: "@a:t", deviceID: "D", json: Array("{\"k\":1}".utf8)))
                #expect(try KeyStore.setDeviceKeys(db, userID: "@a:t", deviceID: "D", json: Array("{\"k\":2}".utf8)))
                let keys = [Self.key("signed_curve25519", "AAAB", "{\"key\":\"b\"}"), Self.key("signed_curve25519", "AAAA", "{\"key\":\"a\"}")]
                #expect(try KeyStore.addOneTimeKeys(db, userID: "@a:t", deviceID: "D", keys: keys) == nil)
                // A retried upload is fine; other material under a used id is a conflict.
                #expect(try KeyStore.addOneTimeKeys(db, userID: "@a:t", deviceID: "D", keys: keys) == nil)
                let conflict = [Self.key("signed_curve25519", "AAAA", "{\"key\":\"other\"}")]
                #expect(try KeyStore.addOneTimeKeys(db, userID: "@a:t", deviceID: "D", keys: conflict)?.keyID == "AAAA")
                try KeyStore.setFallbackKey(db, userID: "@a:t", deviceID: "D", key: Self.key("signed_curve25519", "FB1", "{\"key\":\"f\"}"))
            }
            try await database.read { db throws in
                #expect(try KeyStore.oneTimeKeyCounts(db, userID: "@a:t", deviceID: "D") == ["signed_curve25519": 2])
                #expect(try KeyStore.unusedFallbackKeyTypes(db, userID: "@a:t", deviceID: "D") == ["signed_curve25519"])
            }
            let claimed = try await database.write { db throws in
                try (0..<4).map { _ in try KeyStore.claim(db, userID: "@a:t", deviceID: "D", algorithm: "signed_curve25519")?.0 }
            }
            // Both one-time keys once, then the fallback key (kept, marked used).
            #expect(claimed == ["AAAA", "AAAB", "FB1", "FB1"])
            try await database.read { db throws in
                #expect(try KeyStore.oneTimeKeyCounts(db, userID: "@a:t", deviceID: "D").isEmpty)
                #expect(try KeyStore.unusedFallbackKeyTypes(db, userID: "@a:t", deviceID: "D").isEmpty)
            }
            try await database.write { db throws in
                #expect(try KeyStore.claim(db, userID: "@a:t", deviceID: "D", algorithm: "other") == nil)
                // The same fallback key again stays used; a new one is unused.
                try KeyStore.setFallbackKey(db, userID: "@a:t", deviceID: "D", key: Self.key("signed_curve25519", "FB1", "{\"key\":\"f\"}"))
                #expect(try KeyStore.unusedFallbackKeyTypes(db, userID: "@a:t", deviceID: "D").isEmpty)
                try KeyStore.setFallbackKey(db, userID: "@a:t", deviceID: "D", key: Self.key("signed_curve25519", "FB2", "{\"key\":\"g\"}"))
                #expect(try KeyStore.unusedFallbackKeyTypes(db, userID: "@a:t", deviceID: "D") == ["signed_curve25519"])
                try KeyStore.deleteDevice(db, userID: "@a:t", deviceID: "D")
            }
            try await database.read { db throws in
                #expect(try KeyStore.deviceKeys(db, users: ["@a:t"]).isEmpty)
                #expect(try KeyStore.unusedFallbackKeyTypes(db, userID: "@a:t", deviceID: "D").isEmpty)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func keysReadAndClaimedThroughTheDatabase(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, b) = (try UserID(parsing: "@a:t"), try UserID(parsing: "@b:t"))
            try await database.write { db throws in
                _ = try KeyStore.setDeviceKeys(db, userID: "@a:t", deviceID: "D", json: Array("{\"k\":1}".utf8))
                _ = try KeyStore.setCrossSigningKey(db, userID: "@a:t", type: "master", json: Array("{\"m\":1}".utf8))
                _ = try KeyStore.addOneTimeKeys(db, userID: "@a:t", deviceID: "D", keys: [Self.key("signed_curve25519", "K1", "{}")])
                try KeyStore.setFallbackKey(db, userID: "@a:t", deviceID: "D", key: Self.key("signed_curve25519", "FB", "{}"))
            }
            let counts = try await database.keys.counts(of: a, device: "D")
            #expect(counts.oneTimeKeys == ["signed_curve25519": 1])
            #expect(counts.unusedFallbackTypes == ["signed_curve25519"])
            let stored = try await database.keys.keys(of: ["@a:t", "@b:t"])
            #expect(stored.devices.map(\.1) == ["D"])
            #expect(stored.crossSigning.map(\.1) == ["master"])
            #expect(try await database.keys.crossSigningKeys(of: a).count == 1)
            #expect(try await database.keys.crossSigningKeys(of: b).isEmpty)
            let claimed = try await database.keys.claim([(a, "D", "signed_curve25519"), (a, "D", "signed_curve25519"),
                                                         (b, "E", "signed_curve25519")])
            #expect(claimed.map { $0?.0 } == ["K1", "FB", nil])
            #expect(try await database.keys.counts(of: a, device: "D").unusedFallbackTypes.isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func crossSigningSignaturesAndDeviceListQueries(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { db throws in
                #expect(try KeyStore.setCrossSigningKey(db, userID: "@a:t", type: "master", json: Array("{\"m\":1}".utf8)))
                #expect(try !KeyStore.setCrossSigningKey(db, userID: "@a:t", type: "master", json: Array("{\"m\":1}".utf8)))
                try KeyStore.addSignature(db, .init(signerUserID: "@b:t", signerKeyID: "ed25519:B", targetUserID: "@a:t",
                                                    targetKey: "PUB", signature: "s1"))
                try KeyStore.addSignature(db, .init(signerUserID: "@b:t", signerKeyID: "ed25519:B", targetUserID: "@a:t",
                                                    targetKey: "PUB", signature: "s2"))
                // @a and @b share !r; @c left !r at 5; @d is in another room.
                for (room, user, membership, ordering) in [("!r:t", "@a:t", "join", 1), ("!r:t", "@b:t", "join", 2),
                                                           ("!r:t", "@c:t", "leave", 5), ("!s:t", "@d:t", "join", 3)] {
                    try MembershipStore.setMembership(db, .init(roomID: room, userID: user, membership: membership,
                                                                eventID: "$\(user)", streamOrdering: Int64(ordering)))
                }
                for (position, user) in [(1, "@b:t"), (2, "@d:t"), (3, "@a:t"), (4, "@b:t")] {
                    try DeviceListStore.noteDeviceListChange(db, position: Int64(position), userID: user)
                }
            }
            try await database.read { db throws in
                #expect(try KeyStore.crossSigningKeys(db, users: ["@a:t", "@z:t"]).map(\.1) == ["master"])
                #expect(try KeyStore.signatures(db, targets: ["@a:t"]).map(\.signature) == ["s2"])
                #expect(try Set(DeviceListStore.deviceListChanges(db, userID: "@a:t", after: 0, upTo: 4)) == ["@a:t", "@b:t"])
                #expect(try DeviceListStore.deviceListChanges(db, userID: "@a:t", after: 3, upTo: 4) == ["@b:t"])
                let moves = try MembershipStore.membershipChanges(db, userID: "@a:t", after: 1, upTo: 5)
                #expect(Set(moves.map(\.1)) == ["@b:t", "@c:t"])
                #expect(try MembershipStore.sharingARoom(db, with: "@a:t", among: ["@b:t", "@c:t", "@d:t"]) == ["@b:t"])
                #expect(try Set(MembershipStore.joinedMembers(db, rooms: ["!r:t"])) == ["@a:t", "@b:t"])
            }
        }
    }
}
