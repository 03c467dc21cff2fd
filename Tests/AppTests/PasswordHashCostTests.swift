import Testing
import Matrix
import Persistence
import TestSupport
@testable import App

/// `security.password_hash_cost`: new hashes are made at the configured Argon2id cost, and a
/// hash keeps verifying at the cost it records after the setting changes.
@Suite struct PasswordHashCostTests {
    @Test func newHashesUseTheConfiguredCostAndOldOnesStillVerify() async throws {
        let minimum = try #require(Sodium.PasswordHash.hash("pw", cost: .minimum))
        let interactive = try #require(Sodium.PasswordHash.hash("pw"))
        #expect(minimum.hasPrefix("$argon2id$v=19$m=8,t=1,p=1$"), "\(minimum)")
        #expect(interactive.hasPrefix("$argon2id$v=19$m=65536,t=2,p=1$"), "\(interactive)")
        // Verification reads the parameters from the hash, whatever the current setting.
        #expect(Sodium.PasswordHash.verify("pw", hash: minimum))
        #expect(Sodium.PasswordHash.verify("pw", hash: interactive))
        #expect(!Sodium.PasswordHash.verify("other", hash: minimum))
    }

    @Test func aServerHashesRegistrationsAtItsConfiguredCost() async throws {
        try await withMyelinServer({ $0.security.passwordHashCost = .minimum }) { server, port in
            let (alice, reply) = try await MatrixTestClient.registered(port: port, "alice", password: "first password")
            #expect(reply.status == 200)
            let record = try await server.app.database.accounts.user(id: UserID(parsing: "@alice:localhost"))
            #expect(record?.passwordHash?.hasPrefix("$argon2id$v=19$m=8,t=1,p=1$") == true, "\(record?.passwordHash ?? "nil")")
            let login = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "first password"])
            #expect(login.status == 200)
            let wrong = try await alice.call("POST", "/login", ["type": "m.login.password", "user": "alice", "password": "wrong"])
            #expect(wrong.errcode == "M_FORBIDDEN")
        }
        // The default cost on another server: libsodium's interactive limits.
        try await withMyelinServer { server, port in
            _ = try await MatrixTestClient.registered(port: port, "bob")
            let record = try await server.app.database.accounts.user(id: UserID(parsing: "@bob:localhost"))
            #expect(record?.passwordHash?.hasPrefix("$argon2id$v=19$m=65536,t=2,p=1$") == true)
        }
    }
}
