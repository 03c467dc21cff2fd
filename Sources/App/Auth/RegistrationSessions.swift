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
        /// The `m.login.registration_token` stage was completed in this session.
        var tokenStageDone = false
        /// The stored registration token it reserved (counted `pending` until the account
        /// exists, or released when the session expires).
        var reservedToken: String?
    }

    static let maxEntries = 10_000
    static let lifetimeMs: Int64 = 30 * 60 * 1000
    private let entries = Mutex<[String: Entry]>([:])
    /// Sessions holding a stored token's reservation: (token, session start). Kept apart from
    /// `entries` so that an evicted session still releases its reservation when it expires.
    private let reservations = Mutex<[String: (token: String, createdMs: Int64)]>([:])

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

    /// Records the account a session created (its reserved token, if any, is now used).
    func complete(_ session: String, userID: UserID) {
        entries.withLock {
            $0[session]?.userID = userID
            $0[session]?.reservedToken = nil
        }
        _ = reservations.withLock { $0.removeValue(forKey: session) }
    }

    /// Records that `session` completed the registration-token stage, with the stored token
    /// it reserved, if any.
    func completeTokenStage(_ session: String, reserved: String?) {
        let now = Clock.nowMilliseconds()
        entries.withLock {
            $0[session]?.tokenStageDone = true
            $0[session]?.reservedToken = reserved
        }
        if let reserved { reservations.withLock { $0[session] = (reserved, now) } }
    }

    /// The reservations of sessions that expired unfinished (removed here; the caller
    /// releases them in the store).
    func takeExpiredReservations() -> [String] {
        let now = Clock.nowMilliseconds()
        return reservations.withLock { map in
            let expired = map.filter { now - $0.value.createdMs >= Self.lifetimeMs }
            for key in expired.keys { map.removeValue(forKey: key) }
            return expired.values.map(\.token)
        }
    }
}
