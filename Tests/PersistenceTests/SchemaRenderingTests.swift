import Foundation
import Testing
@testable import Persistence

/// The SQL of each released migration as it was first released, per dialect
/// (`Tests/Fixtures/schema-<dialect>.sql`: `-- migration <version> <name>` then its SQL).
/// The migrations were written twice by hand before `DDL` rendered them from one text; the
/// fixture holds what the hand-written texts said, so an existing database migrates exactly
/// as before.
private func releasedMigrations(_ dialect: SQLDialect) throws -> [Int: (name: String, sql: String)] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/schema-\(dialect).sql")
    let text = try String(contentsOf: url, encoding: .utf8)
    var released: [Int: (name: String, sql: String)] = [:]
    var current: (version: Int, name: String, lines: [Substring])?
    func finish() {
        if let current { released[current.version] = (current.name, current.lines.joined(separator: "\n")) }
    }
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("-- migration ") {
            finish()
            let words = line.split(separator: " ")
            current = (Int(words[2])!, String(words[3]), [])
        } else if current != nil {
            current!.lines.append(line)
        }
    }
    if var last = current {
        // The file ends with the newline after the last migration's SQL.
        if last.lines.last == "" { last.lines.removeLast() }
        current = last
    }
    finish()
    return released
}

@Suite("Schema rendering")
struct SchemaRenderingTests {
    @Test(arguments: [SQLDialect.sqlite, .postgres])
    func releasedMigrationsRenderAsReleased(_ dialect: SQLDialect) throws {
        let released = try releasedMigrations(dialect)
        #expect(released.count >= 10)
        let current = Dictionary(uniqueKeysWithValues: Schema.migrations.map { ($0.version, $0) })
        for (version, migration) in released.sorted(by: { $0.key < $1.key }) {
            let rendered = try #require(current[version], "migration \(version) is gone")
            #expect(rendered.name == migration.name)
            #expect(rendered.sql(for: dialect) == migration.sql, "migration \(version) (\(migration.name)) on \(dialect)")
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
