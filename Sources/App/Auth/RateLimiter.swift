import Matrix
import Persistence
import Synchronization

/// Token buckets keyed by action and client (an IP address or a user id): each key holds up
/// to `burst` tokens, refilled at `perSecond`; an action with no token left is refused with
/// 429 `M_LIMIT_EXCEEDED` and `retry_after_ms`. With `rate_limits.enabled: false` nothing
/// is ever refused. In memory per process (as in Synapse). Owned by `Accounts`.
///
/// The table is bounded: past `maxKeys` buckets, the ones that have refilled (which hold no
/// information: a full bucket is an absent one) are dropped, then if still too many the
/// least recently used — never all at once, so a flood of new keys cannot reset the buckets
/// of the clients being limited.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updatedMs: Int64
        var perSecond: Double
        var burst: Double

        func refilled(at now: Int64) -> Double {
            min(burst, tokens + Double(max(0, now - updatedMs)) / 1000 * perSecond)
        }
    }

    let enabled: Bool
    private let buckets = Mutex<[String: Bucket]>([:])
    /// Per-user overrides (Synapse's `ratelimit_override`, set by the admin API and stored in
    /// `ratelimit_overrides`): they replace every per-user limit of that user; a
    /// `perSecond` of 0 means no limit at all.
    private let overrides = Mutex<[String: Configuration.RateLimit]>([:])
    let maxKeys: Int

    init(enabled: Bool, maxKeys: Int = 100_000) {
        self.enabled = enabled
        self.maxKeys = maxKeys
    }

    var count: Int { buckets.withLock { $0.count } }

    /// Takes one token from the bucket of `action` for `client` (a user id or an address).
    func check(_ action: String, client: String, _ limit: Configuration.RateLimit) throws(MatrixError) {
        guard enabled else { return }
        if client.hasPrefix("@"), let override = overrides.withLock({ $0[client] }) {
            guard override.perSecond > 0 else { return }
            return try check(action + ":" + client, override)
        }
        try check(action + ":" + client, limit)
    }

    /// Replaces the override of `user` (nil: none), dropping the buckets it filled under the
    /// old limit.
    func setOverride(_ user: String, messagesPerSecond: Int64?, burstCount: Int64) {
        let limit = messagesPerSecond.map { Configuration.RateLimit(perSecond: Double($0), burst: Int(max(1, burstCount))) }
        overrides.withLock { $0[user] = limit }
        buckets.withLock { table in table = table.filter { !$0.key.hasSuffix(":" + user) } }
    }

    /// Makes the stored overrides the ones in force (at start, and every 30 s so that a change
    /// made through another process sharing the database applies here too); the buckets of
    /// users whose override changed start afresh.
    func loadOverrides(from store: SecurityStore) async throws {
        var loaded: [String: Configuration.RateLimit] = [:]
        for entry in try await store.allRateLimitOverrides() {
            loaded[entry.userID] = Configuration.RateLimit(perSecond: Double(entry.messagesPerSecond), burst: Int(max(1, entry.burstCount)))
        }
        let changed: Set<String> = overrides.withLock { current in
            let keys = Set(current.keys).union(loaded.keys).filter { current[$0] != loaded[$0] }
            current = loaded
            return keys
        }
        guard !changed.isEmpty else { return }
        buckets.withLock { table in
            table = table.filter { key, _ in
                guard let colon = key.firstIndex(of: ":") else { return true }
                return !changed.contains(String(key[key.index(after: colon)...]))
            }
        }
    }

    /// Takes one token from the bucket `key` or throws `M_LIMIT_EXCEEDED`.
    func check(_ key: String, _ limit: Configuration.RateLimit, now: Int64 = Clock.nowMilliseconds()) throws(MatrixError) {
        guard enabled else { return }
        let wait: Int64? = buckets.withLock { buckets in
            if buckets[key] == nil && buckets.count >= maxKeys { Self.evict(&buckets, now: now, keep: maxKeys * 3 / 4) }
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit.burst), updatedMs: now, perSecond: limit.perSecond,
                                                burst: Double(limit.burst))
            bucket.tokens = bucket.refilled(at: now)
            bucket.updatedMs = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return Int64(((1 - bucket.tokens) / limit.perSecond * 1000).rounded(.up))
        }
        if let wait {
            throw MatrixError(.limitExceeded, "Too many requests", extra: ["retry_after_ms": .int(wait)])
        }
    }

    /// Drops full buckets, then the least recently used, until at most `keep` remain.
    private static func evict(_ buckets: inout [String: Bucket], now: Int64, keep: Int) {
        buckets = buckets.filter { $0.value.refilled(at: now) < $0.value.burst }
        guard buckets.count > keep else { return }
        let cutoff = buckets.values.map(\.updatedMs).sorted()[buckets.count - keep]
        buckets = buckets.filter { $0.value.updatedMs >= cutoff }
    }
}
