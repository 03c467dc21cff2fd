import CSQLite
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Checkpoints the SQLite WAL on a connection and thread of its own, so that no commit waits
/// on a checkpoint (issue 22).
///
/// Without it, SQLite runs its automatic checkpoint inside the `COMMIT` that takes the WAL
/// past 1,000 pages: that commit copies the WAL back into the database file and syncs both
/// while holding the single writer, and every write queued behind it waits (measured at up
/// to 190 ms per send on this machine's disk). `Database` opens the writer with
/// `wal_autocheckpoint = 0` and a WAL hook that calls `committed(walPages:)` after each
/// commit; once `threshold` pages are not yet written back, a `PASSIVE` checkpoint runs here.
/// `PASSIVE` takes neither the writer's lock nor the readers': commits and reads go on while
/// it copies pages and syncs. The next write transaction that finds the whole WAL written
/// back starts it again from the beginning (SQLite's WAL reset), so the file stops growing.
///
/// Bounding the WAL: under back-to-back writes a PASSIVE checkpoint never catches the end of
/// the WAL (new frames arrive while it copies), the writer never finds it all written back,
/// and the WAL would grow without bound (measured: 49 MB for 36 MB written). When the WAL
/// still holds `restartPages` (4 × `threshold`) after a PASSIVE run, one `RESTART`
/// checkpoint is queued on the writer connection itself, between two write transactions
/// (a checkpointer's own RESTART would have to win the writer's lock in a busy loop): it
/// copies the few frames the PASSIVE run left and syncs the database file, and the next
/// writer starts the WAL over. And should the WAL reach `hardPages` (16 × `threshold`) while
/// a PASSIVE run is still syncing (writes far faster than the disk), the writer's hook queues
/// that RESTART at once, which then copies more itself. These are the only checkpoints a
/// commit can wait on, and only once writes have outrun the background checkpoint by
/// 4 × `threshold` pages; the WAL stays within about 16 × `threshold` pages plus the writes
/// queued ahead of the RESTART.
/// `close()` runs a `TRUNCATE` checkpoint after the writer has closed.
///
/// `@unchecked Sendable`: `thread` owns the checkpointer's connection; the rest is atomics
/// and immutable values. `committed(walPages:)` runs on the writer's thread.
final class WALCheckpointer: @unchecked Sendable {
    let threshold: Int
    let restartPages: Int
    let hardPages: Int
    private let metrics: StoreMetrics
    private let thread: ConnectionThread<SQLiteConnection>
    /// A checkpoint is queued or running (at most one at a time).
    private let pending = Atomic<Bool>(false)
    /// WAL frames already written back, as of the last checkpoint (0 after a reset).
    private let checkpointedFrames = Atomic<Int>(0)
    /// A RESTART is queued on the writer (at most one at a time).
    private let restartPending = Atomic<Bool>(false)
    /// Queues a job on the writer connection (set by `Database` once the writer is open).
    private let writerQueue = Mutex<(@Sendable (@escaping @Sendable (SQLiteConnection) -> Void) -> Void)?>(nil)

    /// Opens the checkpointer's connection on a new thread (read-write: a checkpoint writes
    /// the database file) and waits until it is ready.
    static func open(path: String, threshold: Int, synchronous: SQLiteOptions.Synchronous,
                     metrics: StoreMetrics) async throws -> WALCheckpointer {
        let outcome = Mutex<Result<Void, any Error>?>(nil)
        var thread: ConnectionThread<SQLiteConnection>?
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            thread = ConnectionThread(
                connect: {
                    // PASSIVE never waits; RESTART and TRUNCATE wait this long for the
                    // writer and for readers, then return having done what they could.
                    let connection = try SQLiteConnection(path: path, readOnly: false, synchronous: synchronous,
                                                          autocheckpoint: false)
                    try connection.executeScript("PRAGMA busy_timeout = 2000")
                    return connection
                },
                close: { $0.close() },
                ready: { result in
                    outcome.withLock { $0 = result }
                    continuation.resume()
                })
        }
        guard let thread else { throw DatabaseError(.connection, "the checkpointer did not start", backend: .sqlite) }
        if case .failure(let error) = outcome.withLock({ $0 }) ?? .success(()) {
            await withCheckedContinuation { continuation in thread.stop { continuation.resume() } }
            throw error
        }
        return WALCheckpointer(threshold: threshold, metrics: metrics, thread: thread)
    }

    private init(threshold: Int, metrics: StoreMetrics, thread: ConnectionThread<SQLiteConnection>) {
        self.threshold = threshold
        self.restartPages = threshold > Int.max / 4 ? Int.max : threshold * 4
        self.hardPages = threshold > Int.max / 16 ? Int.max : threshold * 16
        self.metrics = metrics
        self.thread = thread
    }

    /// Installs the WAL hook on the writer connection (call on the writer's thread). The
    /// hook holds the checkpointer until `releaseHook` after the writer has closed.
    func installHook(on writer: SQLiteConnection) {
        let context = Unmanaged.passRetained(self).toOpaque()
        writer.setWALHook(context: context) { context, _, _, pages in
            guard let context else { return SQLITE_OK }
            Unmanaged<WALCheckpointer>.fromOpaque(context).takeUnretainedValue().committed(walPages: Int(pages))
            return SQLITE_OK
        }
    }

    /// How to run a job on the writer connection, between its transactions; nil at close.
    func setWriterQueue(_ queue: (@Sendable (@escaping @Sendable (SQLiteConnection) -> Void) -> Void)?) {
        writerQueue.withLock { $0 = queue }
    }

    /// Balances `installHook` once the writer connection is closed (its hook cannot run).
    func releaseHook() {
        Unmanaged.passUnretained(self).release()
    }

    /// After each commit, on the writer's thread: records the WAL's size and queues a
    /// checkpoint when `threshold` frames are not yet written back. Two atomics and, rarely,
    /// a job queued: nothing here waits.
    func committed(walPages pages: Int) {
        metrics.walPages.store(pages, ordering: .relaxed)
        let done = checkpointedFrames.load(ordering: .relaxed)
        // A WAL smaller than what was written back has been reset: all of it is new.
        let behind = pages >= done ? pages - done : pages
        if pages >= hardPages { requestRestart(alreadyWritten: done) }
        guard behind >= threshold else { return }
        guard !pending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let submitted = thread.submit { [self] connection in
            run(on: connection)
            pending.store(false, ordering: .releasing)
        }
        if !submitted { pending.store(false, ordering: .releasing) }
    }

    /// One PASSIVE checkpoint, and a RESTART when the WAL is still past `restartPages`.
    private func run(on connection: SQLiteConnection) {
        let before = checkpointedFrames.load(ordering: .relaxed)
        guard let passive = checkpoint(connection, mode: SQLITE_CHECKPOINT_PASSIVE, name: "passive",
                                       alreadyWritten: before), passive.log >= 0 else { return }
        checkpointedFrames.store(max(0, passive.checkpointed), ordering: .relaxed)
        if passive.log >= restartPages { requestRestart(alreadyWritten: max(0, passive.checkpointed)) }
    }

    /// Queues one RESTART checkpoint on the writer connection, unless one is queued already.
    private func requestRestart(alreadyWritten: Int) {
        guard let queue = writerQueue.withLock({ $0 }),
              !restartPending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue { [self] writer in
            // SQLite refuses a second checkpoint at once (SQLITE_BUSY, no busy handler) while the
            // background PASSIVE run syncs: wait for it here, holding the writer, up to 1 s.
            // Only this bound-keeping path ever makes writes wait.
            for _ in 0..<1_000 {
                guard let result = checkpoint(writer, mode: SQLITE_CHECKPOINT_RESTART, name: "restart",
                                              alreadyWritten: alreadyWritten) else { break }
                if !result.busy {
                    // The next write starts the WAL over: count it as empty.
                    checkpointedFrames.store(0, ordering: .relaxed)
                    break
                }
                // Busy after the busy timeout (a reader held its snapshot for 10 s): give up
                // until the next request. Refused at once (no counts): another checkpoint runs.
                if result.log >= 0 { break }
                usleep(1_000)
            }
            restartPending.store(false, ordering: .releasing)
        }
    }

    /// Runs one checkpoint and records its duration and the pages it wrote back.
    /// A checkpoint SQLite refused at once (another was running) is not counted.
    private func checkpoint(_ connection: SQLiteConnection, mode: Int32, name: String,
                            alreadyWritten: Int) -> (log: Int, checkpointed: Int, busy: Bool)? {
        let start = ContinuousClock.now
        guard let result = try? connection.checkpoint(mode: mode) else { return nil }
        if result.busy && result.log < 0 { return result }
        metrics.checkpoint.record(microseconds(since: start))
        // SQLite reports the frames written back since the WAL last started over.
        let written = result.checkpointed >= alreadyWritten ? result.checkpointed - alreadyWritten
                                                            : max(0, result.checkpointed)
        metrics.checkpointPages.record(written)
        metrics.countCheckpoint(mode: name)
        return result
    }

    /// Runs a final TRUNCATE checkpoint (the WAL file is left empty), closes the connection
    /// and stops the thread. Call after the writer has closed.
    func close() async {
        thread.submit { [self] connection in
            _ = checkpoint(connection, mode: SQLITE_CHECKPOINT_TRUNCATE, name: "truncate", alreadyWritten: 0)
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            thread.stop { continuation.resume() }
        }
    }
}
