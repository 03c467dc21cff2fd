import Foundation
import Glibc
import Testing
import StorageTestSupport
import TestSupport
@testable import App

/// The real binary does not map libpq (nor gnutls, krb5, ldap... which only it needs) on
/// SQLite, the default; on PostgreSQL it opens it with its first connection and serves as
/// before (see Sources/CPostgres/include/CPostgres.h). A child process, so that no other
/// test of this process can have loaded it first.
@Suite("libpq is loaded on first use (myelin binary)", .serialized)
struct LazyLibpqServerTests {
    /// `myelin serve` with `database` as its configuration's database section (see
    /// `ServerProcess.withServer`).
    static func withServer(database: String, _ body: (pid_t) async throws -> Void) async throws {
        try await ServerProcess.withServer(configuration: "server_name: localhost\n\(database)") { pid, _ in try await body(pid) }
    }

    @Test func serverOnSQLiteDoesNotMapLibpq() async throws {
        try await Self.withServer(database: "") { pid in
            let maps = LazyLibvipsTests.maps(pid)
            // The map was read (the binary itself is in it), and libpq and its own
            // dependencies are not.
            #expect(maps.contains("libswiftCore"))
            #expect(maps.contains("libsqlite3"))
            for library in ["libpq.so", "libgnutls", "libkrb5", "libldap", "libsasl2"] {
                #expect(!maps.contains(library), "\(library) is mapped")
            }
        }
    }

    @Test(.enabled(if: Environment.postgres != nil, "MYELIN_TEST_POSTGRES is not set"))
    func serverOnPostgresLoadsLibpq() async throws {
        try await withPostgresSchema { conninfo in
            try await Self.withServer(database: "database:\n  backend: postgres\n  postgres:\n    conninfo: \"\(conninfo)\"\n    pool_size: 2\n") { pid in
                #expect(LazyLibvipsTests.maps(pid).contains("libpq.so.5"))
            }
        }
    }
}
