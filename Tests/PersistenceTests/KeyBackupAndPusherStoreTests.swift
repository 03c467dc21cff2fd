import Matrix
import Testing
@testable import Persistence

@Suite("Key backup and pusher stores")
struct KeyBackupAndPusherStoreTests {
    static func key(_ session: String, index: Int64, forwarded: Int64 = 0, verified: Bool = false) -> KeyBackupStore.Key {
        KeyBackupStore.Key(roomID: "!r:t", sessionID: session, firstMessageIndex: index, forwardedCount: forwarded,
                           isVerified: verified, json: #"{"i":\#(index)}"#)
    }

    @Test(arguments: Backend.enabled)
    func versionsAndBetterKeysWin(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.keyBackups
            let alice = try UserID(parsing: "@a:t")
            #expect(try await store.version(user: alice, nil) == nil)
            #expect(try await store.putKeys(user: alice, 1, [Self.key("s", index: 5)]) == .unknownVersion)
            #expect(try await store.createVersion(user: alice, algorithm: "m.megolm_backup.v1", authData: "{}") == 1)
            #expect(try await store.createVersion(user: alice, algorithm: "m.megolm_backup.v1", authData: "{}") == 2)
            #expect(try await store.version(user: alice, nil)?.version == 2)
            #expect(try await store.versions(user: alice).map(\.version) == [2, 1])
            // Keys go to the current version only.
            #expect(try await store.putKeys(user: alice, 1, [Self.key("s", index: 5)]) == .notCurrent(current: 2))
            #expect(try await store.putKeys(user: alice, 9, [Self.key("s", index: 5)]) == .unknownVersion)
            #expect(try await store.deleteVersion(user: alice, 2))
            // Deleting a deleted version again succeeds; one that never existed does not.
            #expect(try await store.deleteVersion(user: alice, 2))
            #expect(try await store.deleteVersion(user: alice, 9) == false)
            #expect(try await store.version(user: alice, nil)?.version == 1)
            #expect(try await store.version(user: alice, 2) == nil)
            // A deleted number is never reused.
            #expect(try await store.createVersion(user: alice, algorithm: "m.megolm_backup.v1", authData: "{}") == 3)

            var result = try await store.putKeys(user: alice, 3, [Self.key("s", index: 5)])
            #expect(result == .stored(etag: 1, count: 1))
            // Worse (higher index): kept out, the etag does not move.
            result = try await store.putKeys(user: alice, 3, [Self.key("s", index: 7)])
            #expect(result == .stored(etag: 1, count: 1))
            #expect(try await store.keys(user: alice, 3, room: nil, session: nil).map(\.firstMessageIndex) == [5])
            // Verified beats a lower index.
            _ = try await store.putKeys(user: alice, 3, [Self.key("s", index: 9, verified: true)])
            #expect(try await store.keys(user: alice, 3, room: "!r:t", session: "s").map(\.firstMessageIndex) == [9])
            // Equal verification and index: fewer forwards win.
            _ = try await store.putKeys(user: alice, 3, [Self.key("s", index: 9, forwarded: 0, verified: true)])
            _ = try await store.putKeys(user: alice, 3, [Self.key("s", index: 9, forwarded: 1, verified: true)])
            #expect(try await store.keys(user: alice, 3, room: nil, session: nil).map(\.forwardedCount) == [0])
            #expect(try await store.version(user: alice, 3)?.etag == 2)
            #expect(try await store.keys(user: alice, 3, room: "!other:t", session: nil).isEmpty)
            let deleted = try await store.deleteKeys(user: alice, 3, room: "!r:t", session: nil)
            #expect(deleted.count == 0 && deleted.etag == 3)
            #expect(try await store.updateVersion(user: alice, 3, authData: #"{"x":1}"#))
            #expect(try await store.version(user: alice, 3)?.authData == #"{"x":1}"#)
            // Deleting a version deletes its keys.
            _ = try await store.putKeys(user: alice, 3, [Self.key("s", index: 1)])
            #expect(try await store.deleteVersion(user: alice, 3))
            #expect(try await store.keys(user: alice, 3, room: nil, session: nil).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func pushersByDevice(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.pushers
            let (alice, bob) = (try UserID(parsing: "@a:t"), try UserID(parsing: "@b:t"))
            try await store.setPusher(user: alice, appID: "app", pushkey: "k1", device: "D1", json: "1", append: false, now: 1)
            try await store.setPusher(user: alice, appID: "app", pushkey: "k2", device: "D2", json: "2", append: false, now: 2)
            try await store.setPusher(user: bob, appID: "app", pushkey: "k1", device: "B", json: "3", append: true, now: 3)
            #expect(try await store.pushers(of: alice) == ["1", "2"])
            #expect(try await store.pushers(of: bob) == ["3"])
            // Without append the same key of other users goes.
            try await store.setPusher(user: alice, appID: "app", pushkey: "k1", device: "D1", json: "1b", append: false, now: 4)
            #expect(try await store.pushers(of: bob).isEmpty)
            try await store.deletePushers(of: alice, except: "D1")
            #expect(try await store.pushers(of: alice) == ["1b"])
            try await store.deletePusher(user: alice, appID: "app", pushkey: "k1")
            #expect(try await store.pushers(of: alice).isEmpty)
        }
    }
}
