import Matrix
import Synchronization

/// The user-interactive-authentication sessions of `POST /register`, in memory: the first
/// request's parameters (so that the completing request may send only `auth`, spec:
/// "User-interactive authentication API", "the client ... may omit" them) and, once the
/// account exists, its user id, so that the same session completed again answers the same
/// account instead of "user in use" (Synapse does both; SyTest "registration remembers
/// parameters", "registration is idempotent"). Owned by `Accounts`; bounded in count and age.
final class RegistrationSessions: Sendable {
    struct Entry: Sendable {
        var params: [String: JSON]
        var userID: UserID?
        var createdMs: Int64
    }

    static let maxEntries = 10_000
    static let lifetimeMs: Int64 = 30 * 60 * 1000
    private let entries = Mutex<[String: Entry]>([:])

    /// The live entry of `session`, if any.
    func entry(_ session: String) -> Entry? {
        let now = Clock.nowMilliseconds()
        return entries.withLock { map in
            guard let entry = map[session], now - entry.createdMs < Self.lifetimeMs else { return nil }
            return entry
        }
    }

    /// Remembers the parameters of a new session (the oldest sessions go past the bound).
    func start(_ session: String, params: [String: JSON]) {
        let now = Clock.nowMilliseconds()
        entries.withLock { map in
            if map[session] != nil { return }
            if map.count >= Self.maxEntries {
                map = map.filter { now - $0.value.createdMs < Self.lifetimeMs }
                if map.count >= Self.maxEntries, let oldest = map.min(by: { $0.value.createdMs < $1.value.createdMs }) {
                    map[oldest.key] = nil
                }
            }
            map[session] = Entry(params: params, userID: nil, createdMs: now)
        }
    }

    /// Records the account a session created.
    func complete(_ session: String, userID: UserID) {
        entries.withLock { $0[session]?.userID = userID }
    }
}
