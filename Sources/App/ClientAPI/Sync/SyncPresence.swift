import Actors
import Matrix
import Persistence
import Synchronization

/// Presence driven by syncing (`/sync?set_presence=`), as Synapse does it: a client that
/// syncs brings its offline user `online` (or `unavailable` when it asks so, which also
/// steps an online user down); once none of the user's syncs has run for `offlineAfterMs`
/// the user goes `offline`. A state is written (a presence-stream position that wakes the
/// user's room peers) only when it changes, so a user syncing all day costs one lookup in
/// memory per sync.
final class SyncPresence: Sendable {
    static let offlineAfterMs: Int64 = 30_000
    static let settable: Set<String> = ["online", "offline", "unavailable"]

    struct Entry {
        /// The stored state as last written or read; nil until read.
        var state: String?
        var syncing = 0
        var lastSync: Int64 = 0
    }

    private let entries = Mutex<[String: Entry]>([:])

    /// A sync of `user` begins, asking for `wanted` (`online` or `unavailable`).
    func syncStarted(_ app: MyelinApp, _ user: UserID, wanted: String) async throws {
        let key = user.rawValue
        let now = Clock.nowMilliseconds()
        let known: String?? = entries.withLock { entries in
            entries[key, default: Entry()].syncing += 1
            entries[key]!.lastSync = now
            return entries[key]!.state
        }
        var current: String
        var message: String?
        switch known {
        case .some(.some(let state)):
            current = state
            // Only a change needs the stored message: read it below if there is one.
            guard Self.transition(from: current, wanted: wanted) != nil else { return }
            message = try await app.database.clientData.presence(userID: key)?.statusMessage
        default:
            let stored = try await app.database.clientData.presence(userID: key)
            current = stored?.state ?? "offline"
            message = stored?.statusMessage
        }
        guard let target = Self.transition(from: current, wanted: wanted) else {
            entries.withLock { $0[key]?.state = current }
            return
        }
        try await Presence.store(app, user, ClientDataStore.Presence(state: target, statusMessage: message, lastActiveTs: now))
        entries.withLock { $0[key]?.state = target }
    }

    /// A sync of `user` ended.
    func syncEnded(_ user: UserID) {
        let now = Clock.nowMilliseconds()
        entries.withLock { entries in
            guard var entry = entries[user.rawValue] else { return }
            entry.syncing = max(0, entry.syncing - 1)
            entry.lastSync = now
            entries[user.rawValue] = entry
        }
    }

    /// A state set through `PUT /presence` (or by this tracker).
    func noteStored(_ user: UserID, state: String) {
        entries.withLock { entries in
            if entries[user.rawValue] != nil { entries[user.rawValue]!.state = state }
        }
    }

    /// The state a sync moves the user to, if any: offline users come online (or
    /// unavailable); `unavailable` also steps an online user down.
    static func transition(from current: String, wanted: String) -> String? {
        if current == wanted { return nil }
        if current == "offline" { return wanted }
        if wanted == "unavailable" && current == "online" { return "unavailable" }
        return nil
    }

    /// Sets offline every user none of whose syncs ran for `offlineAfterMs`.
    func sweep(_ app: MyelinApp, now: Int64 = Clock.nowMilliseconds()) async {
        let idle: [String] = entries.withLock { entries in
            var idle: [String] = []
            for (user, entry) in entries where entry.syncing == 0 && now - entry.lastSync >= Self.offlineAfterMs {
                if let state = entry.state, state != "offline" { idle.append(user) }
                entries.removeValue(forKey: user)
            }
            return idle
        }
        for user in idle {
            guard let id = try? UserID(parsing: user) else { continue }
            let message = try? await app.database.clientData.presence(userID: user)?.statusMessage
            try? await Presence.store(app, id, ClientDataStore.Presence(state: "offline", statusMessage: message ?? nil,
                                                                        lastActiveTs: now))
        }
    }

    func run(_ app: MyelinApp) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(5)) } catch { return }
            await sweep(app)
        }
    }
}
