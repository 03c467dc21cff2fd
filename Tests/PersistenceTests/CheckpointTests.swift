import Foundation
import Testing
@testable import Persistence

/// The write path's histograms and SQLite's background checkpointer (issue 22): checkpoints
/// run on their own connection and bound the WAL, close leaves everything in the main file,
/// and commits are timed on both backends.
@Suite("Checkpoints and commit metrics")
struct CheckpointTests {
    /// A scratch SQLite path with the given options (migrations: only a table of blobs).
    private func withSQLite<T>(_ options: SQLiteOptions,
                               _ body: (String, DatabaseConfiguration) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("myelin-checkpoint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("myelin.db").path
        return try await body(path, .sqlite(path: path, readerCount: 2, options: options))
    }

    private static let blobs = Migration(version: 1, name: "blobs",
                                         "CREATE TABLE blobs (id \(.bigint) PRIMARY KEY NOT NULL, b \(.bytes) NOT NULL)")

    private func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    @Test func checkpointerBoundsTheWALUnderSustainedWrites() async throws {
        try await withSQLite(SQLiteOptions(checkpointPages: 64)) { path, configuration in
            let database = try await Database.open(configuration, migrations: [Self.blobs])
            // 3,000 transactions of 8 KiB: about 9,000 pages (36 MiB) pass through the WAL.
            let writes = 3_000
            let payload = SQLValue.blob((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            var largestWAL = 0
            for id in 0..<writes {
                try await database.write { db in
                    try db.execute("INSERT INTO blobs (id, b) VALUES (?, ?)", [.int(Int64(id)), payload])
                }
                if id % 50 == 0 { largestWAL = max(largestWAL, fileSize(path + "-wal")) }
            }
            largestWAL = max(largestWAL, fileSize(path + "-wal"))
            let checkpoints = database.metrics.checkpoints
            let passive = checkpoints["passive"] ?? 0
            let checkpointed = database.metrics.checkpoint.count
            await database.close()
            // Without checkpoints (the writer's automatic one is off) the WAL would hold all
            // 36 MiB; the checkpointer keeps it to a few times 64 pages.
            #expect(largestWAL > 0)
            #expect(largestWAL < 8 << 20, "the WAL reached \(largestWAL) bytes; checkpoints \(checkpoints)")
            #expect(passive > 0)
            #expect(checkpointed >= passive)
        }
    }

    @Test func closeLeavesACheckpointedDatabase() async throws {
        try await withSQLite(SQLiteOptions()) { path, configuration in
            let database = try await Database.open(configuration, migrations: [Self.blobs])
            for id in 0..<200 {
                try await database.write { db in
                    try db.execute("INSERT INTO blobs (id, b) VALUES (?, ?)", [.int(Int64(id)), .blob([1, 2, 3])])
                }
            }
            // 200 small commits stay below the 1,000-page threshold: only the WAL holds them.
            #expect(fileSize(path + "-wal") > 0)
            await database.close()
            #expect(fileSize(path + "-wal") == 0, "the WAL is empty or gone after close")
            // The main file alone (copied without any WAL) holds every row.
            let copy = path + "-copy.db"
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            let reopened = try await Database.open(.sqlite(path: copy, readerCount: 1), migrations: [])
            let count = try await reopened.read { try $0.queryFirst("SELECT COUNT(*) FROM blobs")?.int(0) }
            await reopened.close()
            #expect(count == 200)
            #expect(database.metrics.checkpoints["truncate"] == 1)
        }
    }

    @Test func optionsReachTheWriterConnection() async throws {
        try await withSQLite(SQLiteOptions(checkpointPages: 500, synchronous: .full)) { _, configuration in
            let database = try await Database.open(configuration, migrations: [])
            let pragmas = try await database.write { db in
                (try db.queryFirst("PRAGMA synchronous")?.int(0), try db.queryFirst("PRAGMA wal_autocheckpoint")?.int(0))
            }
            await database.close()
            #expect(pragmas.0 == 2, "FULL")
            #expect(pragmas.1 == 0, "the writer never checkpoints inside a commit")
        }
        try await withSQLite(SQLiteOptions(checkpointPages: 0)) { _, configuration in
            let database = try await Database.open(configuration, migrations: [])
            let pragmas = try await database.write { db in
                (try db.queryFirst("PRAGMA synchronous")?.int(0), try db.queryFirst("PRAGMA wal_autocheckpoint")?.int(0))
            }
            await database.close()
            #expect(pragmas.0 == 1, "NORMAL")
            #expect(pragmas.1 == 1000, "0 leaves SQLite's automatic checkpoint")
        }
        #expect(SQLiteOptions(checkpointPages: 3).checkpointPages == SQLiteOptions.checkpointPagesRange.lowerBound)
        #expect(SQLiteOptions(checkpointPages: Int.max).checkpointPages == SQLiteOptions.checkpointPagesRange.upperBound)
    }

    @Test(arguments: Backend.enabled)
    func commitsAreTimedOnBothBackends(_ backend: Backend) async throws {
        try await withScratch(backend) { configuration in
            let database = try await Database.open(configuration, migrations: [Self.blobs])
            let before = (database.metrics.commit.count, database.metrics.transaction.count,
                          database.metrics.writeQueue.count)
            for id in 0..<5 {
                try await database.write { db in
                    try db.execute("INSERT INTO blobs (id, b) VALUES (?, ?)", [.int(Int64(id)), .blob([9])])
                }
            }
            // A transaction that rolls back is queued but not committed.
            await #expect(throws: (any Error).self) {
                try await database.write { db in
                    try db.execute("INSERT INTO blobs (id, b) VALUES (?, ?)", [.int(0), .blob([9])])
                }
            }
            let page = database.metrics.prometheus()
            let after = (database.metrics.commit.count, database.metrics.transaction.count,
                         database.metrics.writeQueue.count)
            await database.close()
            #expect(after.0 - before.0 == 5)
            #expect(after.1 - before.1 == 5)
            #expect(after.2 - before.2 == 6)
            let label = "backend=\"\(backend.rawValue)\""
            #expect(page.contains("# TYPE myelin_db_commit_seconds histogram"))
            #expect(page.contains("myelin_db_commit_seconds_bucket{\(label),le=\"+Inf\"} \(after.0)\n"))
            #expect(page.contains("myelin_db_commit_seconds_count{\(label)} \(after.0)\n"))
            #expect(page.contains("myelin_db_write_queue_seconds_bucket{\(label),le=\"0.001\"}"))
            #expect(page.contains("myelin_db_checkpoint_seconds_count{\(label)}"))
        }
    }

    @Test func histogramBucketsAndRendering() {
        let histogram = StoreHistogram(bounds: [10, 100])
        for value in [0, 10, 11, 100, 101, -5] { histogram.record(value) }
        let (counts, sum) = histogram.snapshot()
        #expect(counts == [3, 2, 1])
        #expect(sum == 222)
        var out = ""
        histogram.render(into: &out, name: "x_seconds", labels: "a=\"b\"", seconds: true, help: "h")
        #expect(out.contains("x_seconds_bucket{a=\"b\",le=\"0.00001\"} 3\n"))
        #expect(out.contains("x_seconds_bucket{a=\"b\",le=\"0.0001\"} 5\n"))
        #expect(out.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 6\n"))
        #expect(out.contains("x_seconds_sum{a=\"b\"} 0.000222\n"))
    }
}
