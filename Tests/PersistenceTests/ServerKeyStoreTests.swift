import Testing
@testable import Persistence

/// Other servers' signing keys and their key responses on both backends.
@Suite("Server key store on SQLite and PostgreSQL")
struct ServerKeyStoreTests {
    static func key(_ server: String, _ id: String, _ b64: String, until: Int64, expired: Int64? = nil, at: Int64) -> ServerKeyStore.Key {
        ServerKeyStore.Key(serverName: server, keyID: id, verifyKey: b64, validUntilTS: until, expiredTS: expired, fetchedTS: at)
    }

    @Test(arguments: Backend.enabled)
    func keysAndResponsesAreKeptAndReplaced(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = ServerKeyStore(database: database)
            #expect(try await store.keys(of: "a.example").isEmpty)
            #expect(try await store.response(of: "a.example") == nil)

            let first = ServerKeyStore.Response(serverName: "a.example", validUntilTS: 5_000, fetchedTS: 1_000, json: Array(#"{"v":1}"#.utf8))
            try await store.save(first, keys: [Self.key("a.example", "ed25519:k1", "AAAA", until: 5_000, at: 1_000)])
            // Another server's rows do not mix with these.
            try await store.save(ServerKeyStore.Response(serverName: "b.example", validUntilTS: 9, fetchedTS: 9, json: [0x7B, 0x7D]),
                                 keys: [Self.key("b.example", "ed25519:k1", "BBBB", until: 9, at: 9)])
            #expect(try await store.keys(of: "a.example") == [Self.key("a.example", "ed25519:k1", "AAAA", until: 5_000, at: 1_000)])
            #expect(try await store.response(of: "a.example") == first)

            // Rotation: k1 becomes an old key, k2 is current; the response is replaced.
            let second = ServerKeyStore.Response(serverName: "a.example", validUntilTS: 9_000, fetchedTS: 2_000, json: Array(#"{"v":2}"#.utf8))
            try await store.save(second, keys: [Self.key("a.example", "ed25519:k1", "AAAA", until: 1_500, expired: 1_500, at: 2_000),
                                                Self.key("a.example", "ed25519:k2", "CCCC", until: 9_000, at: 2_000)])
            #expect(try await store.keys(of: "a.example") == [
                Self.key("a.example", "ed25519:k1", "AAAA", until: 1_500, expired: 1_500, at: 2_000),
                Self.key("a.example", "ed25519:k2", "CCCC", until: 9_000, at: 2_000),
            ])
            #expect(try await store.response(of: "a.example") == second)

            // A later response that omits k1 keeps it (old events may still need it).
            try await store.save(ServerKeyStore.Response(serverName: "a.example", validUntilTS: 10_000, fetchedTS: 3_000, json: [0x7B, 0x7D]),
                                 keys: [Self.key("a.example", "ed25519:k2", "CCCC", until: 10_000, at: 3_000)])
            let keys = try await store.keys(of: "a.example")
            #expect(keys.map(\.keyID) == ["ed25519:k1", "ed25519:k2"])
            #expect(keys.last?.validUntilTS == 10_000)
            #expect(try await store.keys(of: "b.example").map(\.verifyKey) == ["BBBB"])
        }
    }
}
