import Matrix
import Synchronization

/// Token buckets keyed by action and client (an IP address or a user id): each key holds up
/// to `burst` tokens, refilled at `perSecond`; an action with no token left is refused with
/// 429 `M_LIMIT_EXCEEDED` and `retry_after_ms`. With `rate_limits.enabled: false` nothing
/// is ever refused. In memory per process (as in Synapse). Owned by `Accounts`.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updatedMs: Int64
    }

    let enabled: Bool
    private let buckets = Mutex<[String: Bucket]>([:])
    static let maxKeys = 100_000

    init(enabled: Bool) { self.enabled = enabled }

    /// Takes one token from the bucket `key` or throws `M_LIMIT_EXCEEDED`.
    func check(_ key: String, _ limit: Configuration.RateLimit, now: Int64 = Clock.nowMilliseconds()) throws(MatrixError) {
        guard enabled else { return }
        let wait: Int64? = buckets.withLock { buckets in
            if buckets.count >= Self.maxKeys { buckets.removeAll(keepingCapacity: true) }
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit.burst), updatedMs: now)
            let elapsed = Double(max(0, now - bucket.updatedMs)) / 1000
            bucket.tokens = min(Double(limit.burst), bucket.tokens + elapsed * limit.perSecond)
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
}
