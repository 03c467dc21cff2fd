import Synchronization

/// The positions of one stream (room events, account data, to-device...): writers allocate
/// the next position, persist their row with it and then mark it committed (or aborted if
/// the transaction failed); readers see `visiblePosition`, the highest position such that
/// every position at or below it is done. A position committed while a lower one is still
/// in flight stays invisible until the lower one finishes, so sync never skips a row that
/// commits late (ARCHITECTURE.md, "Streams and sync tokens").
///
/// Allocation is in memory, seeded at start-up from the stream's table (`load`) — the way
/// Synapse's single-writer id generators work. It is correct while one process writes the
/// stream; when several processes share a PostgreSQL database, allocation moves to a
/// sequence (`nextval`) per stream and advances cross processes by LISTEN/NOTIFY. The
/// tracking of in-flight positions below is the same in both cases.
///
/// Owned by the component that writes the stream (e.g. the event persister); the notifier
/// and sync read `visiblePosition` and subscribe to `advances()`.
public final class StreamTracker: Sendable {
    /// A position handed to one writer; finish it exactly once with `commit` or `abort`.
    public struct Allocation: Sendable, Hashable {
        public let position: Int64
    }

    private struct State {
        var lastAllocated: Int64
        var visible: Int64
        /// Allocated and not yet finished, ascending (allocation appends in order).
        var inFlight: [Int64] = []
        var subscribers: [UInt64: AsyncStream<Int64>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0
        /// Actions waiting for their position to become visible (`whenVisible`).
        var pending: [(position: Int64, action: @Sendable (Int64) -> Void)] = []
    }

    public let name: String
    private let state: Mutex<State>

    /// A tracker whose positions start after `current` (which is visible at once).
    public init(name: String, current: Int64) {
        self.name = name
        self.state = Mutex(State(lastAllocated: current, visible: current))
    }

    /// Seeds a tracker from the database: `maxPositionSQL` returns the highest position
    /// already stored (e.g. `SELECT MAX(stream_ordering) FROM events`), NULL meaning 0.
    public static func load(name: String, from database: Database, maxPositionSQL: String) async throws -> StreamTracker {
        let current = try await database.read { db in
            try db.queryFirst(maxPositionSQL, [])?.optionalInt(0) ?? 0
        }
        return StreamTracker(name: name, current: current)
    }

    /// The highest position below which nothing is in flight: what readers may see.
    public var visiblePosition: Int64 { state.withLock { $0.visible } }

    /// The highest position handed out so far.
    public var lastAllocated: Int64 { state.withLock { $0.lastAllocated } }

    /// Hands out the next position. Call just before the write transaction that uses it.
    public func allocate() -> Allocation {
        state.withLock { state in
            state.lastAllocated += 1
            state.inFlight.append(state.lastAllocated)
            return Allocation(position: state.lastAllocated)
        }
    }

    /// The allocation's row is committed.
    public func commit(_ allocation: Allocation) { finish(allocation) }

    /// The allocation's transaction failed: the position is skipped (a gap in the stream
    /// that readers step over), and no longer holds back later positions.
    public func abort(_ allocation: Allocation) { finish(allocation) }

    private func finish(_ allocation: Allocation) {
        let (due, visible) = state.withLock { state -> ([@Sendable (Int64) -> Void], Int64) in
            guard let index = Self.search(state.inFlight, allocation.position) else {
                // A caller bug; ignoring it keeps the stream correct (the position is done).
                assertionFailure("stream \(name): position \(allocation.position) finished twice")
                return ([], state.visible)
            }
            state.inFlight.remove(at: index)
            let visible = state.inFlight.first.map { $0 - 1 } ?? state.lastAllocated
            guard visible > state.visible else { return ([], state.visible) }
            state.visible = visible
            // Under the lock, so that two writers finishing at once cannot deliver their
            // advances out of order. `yield` only buffers or resumes; it never runs the
            // consumer here.
            for subscriber in state.subscribers.values { subscriber.yield(visible) }
            guard !state.pending.isEmpty else { return ([], visible) }
            let due = state.pending.filter { $0.position <= visible }.map(\.action)
            state.pending.removeAll { $0.position <= visible }
            return (due, visible)
        }
        for action in due { action(visible) }
    }

    /// Runs `action` with the visible position once `position` is visible: now if it already
    /// is, else when the last lower position in flight finishes (on that writer's thread,
    /// outside the lock; keep it short). A writer whose position committed behind another
    /// writer's in-flight one (another room's batch) wakes its readers through this, or they
    /// would wait for the stream's next unrelated advance.
    public func whenVisible(_ position: Int64, _ action: @escaping @Sendable (Int64) -> Void) {
        let visibleNow: Int64? = state.withLock { state in
            if state.visible >= position { return state.visible }
            state.pending.append((position, action))
            return nil
        }
        if let visibleNow { action(visibleNow) }
    }

    private static func search(_ sorted: [Int64], _ value: Int64) -> Int? {
        var low = 0
        var high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < sorted.count && sorted[low] == value ? low : nil
    }

    /// Allocates a position, runs `body` with it (typically a `Database.write` storing a row
    /// at that position), then commits the position, or aborts it if `body` throws.
    public func withNextPosition<T: Sendable>(_ body: (Int64) async throws -> T) async throws -> T {
        let allocation = allocate()
        do {
            let result = try await body(allocation.position)
            commit(allocation)
            return result
        } catch {
            abort(allocation)
            throw error
        }
    }

    /// The visible position each time it advances, starting with the current one. Slow
    /// consumers see only the newest value (positions carry no data: a notifier wakes with a
    /// position and reads what it needs). The stream ends when the consumer stops iterating.
    public func advances() -> AsyncStream<Int64> {
        let (stream, continuation) = AsyncStream<Int64>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: UInt64 = state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            // Yielded under the lock so that no advance can slip in before it, out of order.
            continuation.yield(state.visible)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }
}
