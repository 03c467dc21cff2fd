import Actors
import Matrix
import Persistence
import Synchronization

/// Presence driven by syncing (`/sync?set_presence=`), as Synapse does it: a client that
/// syncs brings its offline user `online` (or `unavailable` when it asks so, which also
/// steps an online user down); once none of the user's syncs has run for `offlineAfterMs`
/// the user goes `offline`.
///
/// A user syncing all day costs one lookup in memory per sync. Changes are written in
/// batches (`batchDelayMs` apart): one presence-stream position, one transaction and one
/// wake-up of the union of the changed users' room peers per batch, so that a room of
/// thousands whose members come online together costs a few batches, not one write and one
/// wake-up of every member per member.
final class SyncPresence: Sendable {
    static let offlineAfterMs: Int64 = 30_000
    static let batchDelayMs = 50
    static let settable: Set<String> = ["online", "offline", "unavailable"]

    struct Entry {
        /// The stored state as last written or read; nil until read.
        var state: String?
        var syncing = 0
        var lastSync: Int64 = 0
    }

    struct State {
        var entries: [String: Entry] = [:]
        /// Users whose state may change, with the state their sync asks for (`offline` from
        /// the sweep).
        var pending: [String: String] = [:]
        var flushScheduled = false
        /// Syncs waiting for the batch that holds their change.
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// A sync of `user` begins, asking for `wanted` (`online` or `unavailable`). When that
    /// may change the user's state, returns once the batch holding the change is stored, so
    /// that the sync's token covers it (the user's next long-poll is not woken by its own
    /// presence).
    func syncStarted(_ app: MyelinApp, _ user: UserID, wanted: String) async {
        let key = user.rawValue
        let now = Clock.nowMilliseconds()
        let changing = state.withLock { s -> Bool in
            s.entries[key, default: Entry()].syncing += 1
            s.entries[key]!.lastSync = now
            if let known = s.entries[key]!.state, Self.transition(from: known, wanted: wanted) == nil { return false }
            return true
        }
        guard changing else { return }
        await withCheckedContinuation { continuation in
            let schedule = state.withLock { s -> Bool in
                s.pending[key] = wanted
                s.waiters.append(continuation)
                return Self.claimFlush(&s)
            }
            if schedule { scheduleFlush(app) }
        }
    }

    /// A sync of `user` ended.
    func syncEnded(_ user: UserID) {
        let now = Clock.nowMilliseconds()
        state.withLock { s in
            guard var entry = s.entries[user.rawValue] else { return }
            entry.syncing = max(0, entry.syncing - 1)
            entry.lastSync = now
            s.entries[user.rawValue] = entry
        }
    }

    /// A state set through `PUT /presence` (or by this tracker).
    func noteStored(_ user: UserID, state stored: String) {
        state.withLock { s in
            if s.entries[user.rawValue] != nil { s.entries[user.rawValue]!.state = stored }
        }
    }

    /// The state a sync moves the user to, if any: offline users come online (or
    /// unavailable); `unavailable` also steps an online user down.
    static func transition(from current: String, wanted: String) -> String? {
        if current == wanted { return nil }
        if current == "offline" || wanted == "offline" { return wanted }
        if wanted == "unavailable" && current == "online" { return "unavailable" }
        return nil
    }

    private static func claimFlush(_ s: inout State) -> Bool {
        if s.flushScheduled { return false }
        s.flushScheduled = true
        return true
    }

    private func scheduleFlush(_ app: MyelinApp) {
        Task.detached { [self] in
            try? await Task.sleep(for: .milliseconds(Self.batchDelayMs))
            await flush(app)
        }
    }

    /// Writes the pending changes: reads the stored states of users not known yet, keeps
    /// the real transitions, stores them at one position and wakes the users and their peers.
    func flush(_ app: MyelinApp) async {
        let (pending, waiters) = state.withLock { s -> ([String: String], [CheckedContinuation<Void, Never>]) in
            let taken = (s.pending, s.waiters)
            s.pending = [:]
            s.waiters = []
            s.flushScheduled = false
            return taken
        }
        defer { for waiter in waiters { waiter.resume() } }
        guard !pending.isEmpty else { return }
        do {
            let stored = try await app.database.presence.presences(of: pending.keys.compactMap { try? UserID(parsing: $0) })
            let now = Clock.nowMilliseconds()
            var changes: [(userID: String, presence: PresenceStore.Presence)] = []
            for (user, wanted) in pending {
                let previous = (try? UserID(parsing: user)).flatMap { stored[$0] }
                let current = previous?.state ?? "offline"
                guard let target = Self.transition(from: current, wanted: wanted) else {
                    state.withLock { $0.entries[user]?.state = current }
                    continue
                }
                changes.append((user, PresenceStore.Presence(state: target, statusMessage: previous?.statusMessage,
                                                               lastActiveTs: now)))
            }
            guard !changes.isEmpty else { return }
            try await Presence.store(app, changes)
        } catch {
            app.logger.warning("presence: \(error)")
        }
    }

    /// Sets offline every user none of whose syncs ran for `offlineAfterMs`.
    func sweep(_ app: MyelinApp, now: Int64 = Clock.nowMilliseconds()) async {
        state.withLock { s in
            for (user, entry) in s.entries where entry.syncing == 0 && now - entry.lastSync >= Self.offlineAfterMs {
                if let known = entry.state, known != "offline" { s.pending[user] = "offline" }
                s.entries.removeValue(forKey: user)
            }
        }
        await flush(app)
    }

    func run(_ app: MyelinApp) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(5)) } catch { return }
            await sweep(app)
        }
    }
}
