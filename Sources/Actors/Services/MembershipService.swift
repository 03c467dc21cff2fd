import Matrix
import Persistence
import Synchronization

/// Each cached user's memberships by room (the `state_cache` service): loaded from the
/// store on a user's first use, then kept current by the room actors, which apply every
/// durable batch's membership changes before its positions become visible (so a reader of a
/// visible position never finds a stale membership). Users unused for a while are dropped
/// by `evictIdle`. Called by `RoomActor` (apply) and by the App's handlers and sync (read).
public final class MembershipService: Sendable {
    public typealias Membership = MembershipStore.Membership

    private struct State {
        var memberships: [UserID: [String: Membership]] = [:]
        var used: [UserID: Int64] = [:]
        /// Changes for users not cached when they were applied, kept until the next load
        /// merges them (a load reading the store just before such a commit would miss it).
        var uncachedChanges: [UserID: [String: Membership]] = [:]
    }
    private let state = Mutex(State())
    private let database: Database?
    private let origin = ContinuousClock.now

    /// - Parameter database: where memberships of uncached users are read; nil for a
    ///   service that only records (tests of the room actor).
    public init(database: Database?) { self.database = database }

    /// The user's memberships by room id (cached; loaded from the store on first use).
    public func memberships(of user: UserID) async throws -> [String: Membership] {
        if let cached = cached(user) { return cached }
        guard let database else { return [:] }
        let rows = try await database.memberships.rooms(of: user)
        return load(user, rows)
    }

    /// The cached memberships of `user`, without reading the store.
    public func cached(_ user: UserID) -> [String: Membership]? {
        let now = seconds()
        return state.withLock { state in
            guard let found = state.memberships[user] else { return nil }
            if state.used[user] != now { state.used[user] = now }
            return found
        }
    }

    /// Caches rows read from the store; a change that raced the read wins.
    func load(_ user: UserID, _ rows: [Membership]) -> [String: Membership] {
        let now = seconds()
        return state.withLock { state in
            var loaded: [String: Membership] = [:]
            for row in rows { loaded[row.roomID] = row }
            var newer = state.memberships[user] ?? [:]
            for (room, row) in state.uncachedChanges.removeValue(forKey: user) ?? [:]
            where (newer[room]?.streamOrdering ?? -1) < row.streamOrdering {
                newer[room] = row
            }
            for (room, row) in newer where (loaded[room]?.streamOrdering ?? -1) < row.streamOrdering { loaded[room] = row }
            state.memberships[user] = loaded
            state.used[user] = now
            return loaded
        }
    }

    /// Drops the user's cached memberships (read again from the store on next use).
    public func forget(_ user: UserID) {
        state.withLock { state in
            state.memberships[user] = nil
            state.used[user] = nil
        }
    }

    /// Called by a room actor with a durable batch's membership changes.
    public func apply(_ changes: [Membership]) {
        guard !changes.isEmpty else { return }
        let parsed = changes.compactMap { change in (try? UserID(parsing: change.userID)).map { ($0, change) } }
        state.withLock { state in
            for (user, membership) in parsed {
                if state.memberships[user] != nil {
                    state.memberships[user]![membership.roomID] = membership
                } else {
                    if state.uncachedChanges.count > 50_000 { state.uncachedChanges.removeAll() }
                    state.uncachedChanges[user, default: [:]][membership.roomID] = membership
                }
            }
        }
    }

    /// Drops users not used for `idleSeconds` (read back from the store on their next use);
    /// returns how many. Called by the App's maintenance loop.
    @discardableResult
    public func evictIdle(idleSeconds: Int64) -> Int {
        let cutoff = seconds() - idleSeconds
        return state.withLock { state in
            let users = state.used.filter { $0.value < cutoff }.map(\.key)
            for user in users {
                state.memberships[user] = nil
                state.used[user] = nil
            }
            return users.count
        }
    }

    private func seconds() -> Int64 { (ContinuousClock.now - origin).components.seconds }
}
