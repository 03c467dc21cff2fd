#if canImport(Glibc)
import Glibc
#endif
import CPostgres
import StorageTestSupport
import Testing
@testable import Persistence

/// libpq is not linked: it is opened with dlopen (RTLD_LOCAL) on the first PostgreSQL
/// connection, and SQLite never opens it (see Sources/CPostgres/include/CPostgres.h).
/// AppTests' LazyLibpqTests check the same on the real `myelin` binary.
@Suite("libpq is loaded on first use")
struct LazyLibpqTests {
    /// This process's memory map.
    static func maps() -> String { processMaps() }

    /// Whether a libpq function is in the process's global symbol scope: only if libpq is
    /// linked (a DT_NEEDED of the binary), since the lazy load keeps its symbols local.
    static var libpqLinked: Bool { dlsym(nil, "PQconnectdb") != nil }

    @Test func libpqIsNotLinked() {
        #expect(!Self.libpqLinked)
    }

    /// Other tests of this process open PostgreSQL when `MYELIN_TEST_POSTGRES` is set, so
    /// whether libpq is mapped is only checked without it.
    @Test func sqliteDoesNotLoadLibpq() async throws {
        try await withDatabase(.sqlite) { database in
            try await database.write { db in
                try createScratchTable(db)
                try db.execute("INSERT INTO scratch (id, t) VALUES (?, ?)", [1, "sqlite"])
            }
            let text = try await database.read { db in try db.queryFirst("SELECT t FROM scratch")?.text("t") }
            #expect(text == "sqlite")
        }
        #expect(!Self.libpqLinked)
        if Backend.postgresConninfo == nil {
            #expect(myelin_pq_loaded() == 0)
            #expect(myelin_pq_load_error() == nil)
            #expect(Self.maps().contains("libsqlite3"))
            #expect(!Self.maps().contains("libpq.so"))
        }
    }

    @Test(.enabled(if: Backend.postgresConninfo != nil, "MYELIN_TEST_POSTGRES is not set"))
    func postgresLoadsLibpqOnFirstConnection() async throws {
        try await withDatabase(.postgres) { database in
            let one = try await database.read { db in try db.queryFirst("SELECT 1 AS one")?.int("one") }
            #expect(one == 1)
        }
        #expect(myelin_pq_loaded() == 1)
        #expect(myelin_pq_load() == 0)
        #expect(myelin_pq_load_error() == nil)
        #expect(Self.maps().contains("libpq.so.5"))
        // Loaded with RTLD_LOCAL: its symbols interpose nothing in the process.
        #expect(!Self.libpqLinked)
    }
}
