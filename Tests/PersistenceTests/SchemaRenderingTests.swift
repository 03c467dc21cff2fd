import Foundation
import Matrix
import Testing
@testable import Persistence

/// Every released migration: its version, its name and the SHA-256 of its SQL on SQLite and
/// on PostgreSQL, as it was first released. The migrations were written twice by hand before
/// `DDL` rendered them from one text; these are the digests of those hand-written texts, so
/// an existing database migrates exactly as before. A new migration adds its row once
/// released; a released one never changes.
private let released: [(version: Int, name: String, sqlite: String, postgres: String)] = [
        (1, "accounts", "e7e73b9233bd6a73af716adc8e848fec1ee4d4f23489b792fe0186c935adb34a",
         "9acb652bce0d0347e4188a8ad9c660a1fc89ecb41b9571b1a9c6fabaef1fd0e9"),
        (50, "client_data", "2ab60cbf6b06c5f6be455b526b64663440af8ca3e34b927c6f48c3c7378d7a4b",
         "f80af7d33b9f6858a75c3af561c86a6110538ab4e5d86108a94bc2ccae6b1993"),
        (51, "profile_fields", "c60212cc46645206593b78758fbe240f76f3445fbd6291556a24f6168dcab7fd",
         "c60212cc46645206593b78758fbe240f76f3445fbd6291556a24f6168dcab7fd"),
        (60, "rooms", "a080e550af1474375eeddfeb000d8377a01f15c4fb852b46cc2d85171215941c",
         "946a73c8d2b84a12464c8fdaf7b6a6d6ca7c6330e88089092e6e86f100b5db85"),
        (61, "rooms_client", "466b62378153383a5d77056202bd882dc84db94c7ab149492210b3383cd3daca",
         "2e34062ae2dc33a916136fc7b9a73c18063098015adcedcd318dc1bed875b063"),
        (63, "to_device", "681b642b9b0f6858d00ed3a7190630dee32dfa20b70276a2ee793ecf0e1abd63",
         "dc2a5c588d3894c720d07b0cc2f9044662acc8a042f6179c8d8e47677e6eb4b3"),
        (64, "event_relations", "e2d07d6d6d18d7c0b59351d99be756581609261a3a881091cb1d89f560e77b5b",
         "1cff7e03792a0444866fa1624c9e4e528d49ee5ee06f57f1188729b00e92b866"),
        (65, "event_search", "e114ac559a4755a43094300ab74aba52c33caefd672409f1f4ec1590d38975ee",
         "21591d8beb0ed22c68165d46042c5f8292575a21c193f030e696cb4b1bec0548"),
        (66, "e2e_keys", "90370c7639228379c8dba84ac3ed2789c8f8de8abeef65fa6f2fa9b8e8e2aec2",
         "ee4ef17af7707d995822eb802eca60a628d8599470e168d3fec4e3edaffbd789"),
        (67, "scoped_transactions", "23144c718255875185f9a0eb6773a282e3b0bc89a47ca44014c33b62eb0c59b5",
         "ad921fc9a7a09014851d2216b431ca44e67827f22ef629dffdf9d0fc772eb0d0"),
        (71, "server_keys", "80c43e0bdb36c020de95aa8665f6163bc195ae758536c613c559b4bcd3be95ca",
         "5a9278eb8fae53da20f4f1df518f976500533804c631b40da13b4188222fc00a"),
]

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

@Suite("Schema rendering")
struct SchemaRenderingTests {
    @Test func releasedMigrationsRenderAsReleased() throws {
        let current = Dictionary(uniqueKeysWithValues: Schema.migrations.map { ($0.version, $0) })
        for migration in released {
            let rendered = try #require(current[migration.version], "migration \(migration.version) is gone")
            #expect(rendered.name == migration.name)
            #expect(hex(sha256(Array(rendered.sql(for: .sqlite).utf8))) == migration.sqlite,
                    "migration \(migration.version) (\(migration.name)) on SQLite")
            #expect(hex(sha256(Array(rendered.sql(for: .postgres).utf8))) == migration.postgres,
                    "migration \(migration.version) (\(migration.name)) on PostgreSQL")
        }
    }

    @Test func termsRenderPerDialect() {
        let ddl: DDL = "a \(.bigint) b \(.bool) DEFAULT \(.false), c \(.bytes), id \(.serial) PRIMARY KEY"
        #expect(ddl.render(for: .sqlite) == "a INTEGER b INTEGER DEFAULT 0, c BLOB, id INTEGER PRIMARY KEY")
        #expect(ddl.render(for: .postgres) == "a BIGINT b BOOLEAN DEFAULT FALSE, c BYTEA, id BIGSERIAL PRIMARY KEY")
        #expect(("x \(.bigint);\n" + "y \(.bytes)" as DDL).render(for: .postgres) == "x BIGINT;\ny BYTEA")
    }

    /// A fresh database has the same tables with the same columns on both backends (the order
    /// differs where PostgreSQL added a column that SQLite rebuilt its table with; full-text
    /// search aside, a virtual table on SQLite).
    @Test func freshDatabasesHaveTheSameColumnsOnBothBackends() async throws {
        guard Backend.enabled.contains(.postgres) else { return }
        var columns: [Backend: [String: [String]]] = [:]
        for backend in [Backend.sqlite, .postgres] {
            columns[backend] = try await withDatabase(backend) { database in
                try await database.read { db in try tableColumns(db) }
            }
        }
        let sqlite = try #require(columns[.sqlite]), postgres = try #require(columns[.postgres])
        #expect(sqlite.count >= 25)
        #expect(Set(sqlite.keys) == Set(postgres.keys))
        for table in sqlite.keys.sorted() {
            #expect(sqlite[table] == postgres[table], "table \(table)")
        }
    }
}

private func tableColumns(_ db: any SQLConnection) throws -> [String: [String]] {
    var tables: [String: [String]] = [:]
    switch db.dialect {
    case .sqlite:
        let names = try db.query("""
            SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'
            AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'event_search%'
            """).map { try $0.text(0) }
        for name in names {
            tables[name] = try db.query("SELECT name FROM pragma_table_info(?)", .text(name)).map { try $0.text(0) }.sorted()
        }
    case .postgres:
        let rows = try db.query("""
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name <> 'event_search'
            ORDER BY table_name, ordinal_position
            """)
        for row in rows { tables[try row.text(0), default: []].append(try row.text(1)) }
        tables = tables.mapValues { $0.sorted() }
    }
    return tables
}
