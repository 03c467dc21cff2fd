import Synchronization
import Testing
@testable import Persistence

@Suite("Stream positions")
struct StreamTrackerTests {
    @Test func visiblePositionWaitsForEveryLowerPosition() {
        let tracker = StreamTracker(name: "events", current: 10)
        #expect(tracker.visiblePosition == 10)
        let a = tracker.allocate(), b = tracker.allocate(), c = tracker.allocate()
        #expect([a.position, b.position, c.position] == [11, 12, 13])
        tracker.commit(c)
        #expect(tracker.visiblePosition == 10)
        tracker.commit(a)
        #expect(tracker.visiblePosition == 11)
        let d = tracker.allocate()
        tracker.abort(b)
        #expect(tracker.visiblePosition == 13)
        tracker.commit(d)
        #expect(tracker.visiblePosition == 14)
        #expect(tracker.lastAllocated == 14)
    }

    /// A writer that committed behind another's in-flight position (another room's batch in
    /// a federation storm) must still wake its readers once its position is visible.
    @Test func whenVisibleRunsOnceThePositionIsVisible() {
        let tracker = StreamTracker(name: "events", current: 0)
        let seen = Mutex<[Int64]>([])
        tracker.whenVisible(0) { v in seen.withLock { $0.append(v) } }
        #expect(seen.withLock { $0 } == [0])
        let other = tracker.allocate(), mine = tracker.allocate()
        tracker.commit(mine)
        tracker.whenVisible(mine.position) { v in seen.withLock { $0.append(v) } }
        #expect(seen.withLock { $0 } == [0])
        let later = tracker.allocate()
        tracker.commit(other)
        #expect(seen.withLock { $0 } == [0, 2])
        tracker.commit(later)
        #expect(seen.withLock { $0 } == [0, 2])
    }

    @Test func advancesAreDeliveredInOrder() async {
        let tracker = StreamTracker(name: "events", current: 0)
        var iterator = tracker.advances().makeAsyncIterator()
        // The current position first.
        #expect(await iterator.next() == 0)
        let allocations = (0..<5).map { _ in tracker.allocate() }
        tracker.commit(allocations[0])
        #expect(await iterator.next() == 1)
        // 5, 4, 3 finish while 2 is in flight: no advance.
        for allocation in allocations[2...].reversed() { tracker.commit(allocation) }
        tracker.abort(allocations[1])
        #expect(await iterator.next() == 5)
        // Slow consumers get only the newest value (positions carry no data).
        let more = (0..<3).map { _ in tracker.allocate() }
        for allocation in more { tracker.commit(allocation) }
        #expect(await iterator.next() == 8)
    }

    /// Many writers finish out of order while a reader polls: whatever position the reader
    /// sees, every position at or below it is already finished.
    @Test func concurrentWritersNeverExposeAGap() async {
        let tracker = StreamTracker(name: "events", current: 0)
        let writers = 32
        let perWriter = 200
        let total = writers * perWriter
        let finished = Shared<Set<Int64>>([])
        let violations = Shared(0)
        let writersDone = Shared(false)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var last: Int64 = 0
                var checks = 0
                while !writersDone.value || checks == 0 {
                    let visible = tracker.visiblePosition
                    let snapshot = finished.value
                    if visible < last || (1...max(visible, 1)).contains(where: { $0 <= visible && !snapshot.contains($0) }) {
                        violations.withLock { $0 += 1 }
                    }
                    last = visible
                    checks += 1
                    await Task.yield()
                }
            }
            await withTaskGroup(of: Void.self) { writersGroup in
                for writer in 0..<writers {
                    writersGroup.addTask {
                        var held: [StreamTracker.Allocation] = []
                        for step in 0..<perWriter {
                            held.append(tracker.allocate())
                            // Finish in a scrambled order, sometimes holding several at once.
                            if (step + writer) % 3 == 0 || step == perWriter - 1 {
                                for allocation in held.shuffled() {
                                    // Recorded before it is finished, so a reader that sees it
                                    // visible also sees it here.
                                    finished.withLock { _ = $0.insert(allocation.position) }
                                    if allocation.position % 7 == 0 { tracker.abort(allocation) } else { tracker.commit(allocation) }
                                }
                                held.removeAll()
                                await Task.yield()
                            }
                        }
                    }
                }
            }
            writersDone.withLock { $0 = true }
        }
        #expect(violations.value == 0)
        #expect(tracker.visiblePosition == Int64(total))
        #expect(finished.value.count == total)
    }

    /// The same property through the database: rows stored at allocated positions by
    /// concurrent write transactions, some failing, while a reader reads up to the visible
    /// position and must never find a committed position missing below it.
    @Test(arguments: Backend.enabled)
    func concurrentStoredWritesNeverExposeAGap(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { try createScratchTable($0, "stream_rows") }
            let tracker = try await StreamTracker.load(name: "stream_rows", from: database,
                                                       maxPositionSQL: "SELECT MAX(id) FROM stream_rows")
            #expect(tracker.visiblePosition == 0)
            let aborted = Shared<Set<Int64>>([])
            let violations = Shared(0)
            let done = Shared(false)
            let writers = 20
            let perWriter = 15
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var checks = 0
                    while !done.value || checks == 0 {
                        let visible = tracker.visiblePosition
                        let stored = try await database.read { db in
                            try Set(db.query("SELECT id FROM stream_rows WHERE id <= ?", .int(visible)).map { try $0.int(0) })
                        }
                        let skipped = aborted.value
                        if visible > 0, (1...visible).contains(where: { !stored.contains($0) && !skipped.contains($0) }) {
                            violations.withLock { $0 += 1 }
                        }
                        checks += 1
                    }
                }
                try await withThrowingTaskGroup(of: Void.self) { writersGroup in
                    for _ in 0..<writers {
                        writersGroup.addTask {
                            for _ in 0..<perWriter {
                                _ = try? await tracker.withNextPosition { position in
                                    try await database.write { db in
                                        try db.execute("INSERT INTO stream_rows (id) VALUES (?)", .int(position))
                                        if position % 5 == 0 {
                                            aborted.withLock { _ = $0.insert(position) }
                                            throw TestFailure()
                                        }
                                    }
                                }
                            }
                        }
                    }
                    try await writersGroup.waitForAll()
                }
                done.withLock { $0 = true }
                try await group.waitForAll()
            }
            let total = Int64(writers * perWriter)
            #expect(violations.value == 0)
            #expect(tracker.visiblePosition == total)
            let stored = try await database.read { try $0.queryFirst("SELECT COUNT(*) FROM stream_rows")!.int(0) }
            #expect(stored == total - total / 5)

            // A tracker loaded later starts after what is stored.
            let reloaded = try await StreamTracker.load(name: "stream_rows", from: database,
                                                        maxPositionSQL: "SELECT MAX(id) FROM stream_rows")
            #expect(reloaded.visiblePosition == total - 1) // the last position (a multiple of 5) was aborted
        }
    }
}
