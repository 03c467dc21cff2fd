import Matrix
import Persistence
import Transport

/// Synapse's rate-limit overrides per user (`/_synapse/admin/v1/users/{userId}/override_ratelimit`,
/// docs/admin.md, "Registration tokens and rate limits"): stored in `ratelimit_overrides`,
/// applied by `RateLimiter` to every per-user limit of the user; `messages_per_second` 0
/// means no limit.
enum AdminRateLimits {
    static func register(_ routes: inout RouteBuilder) {
        let path = "/_synapse/admin/v1/users/{userId}/override_ratelimit"
        routes.get(path, get)
        routes.post(path, set)
        routes.delete(path, remove)
    }

    /// The local, existing user the path names: 400 for a remote one, 404 for an unknown one.
    static func localUser(_ context: RequestContext) async throws -> UserID {
        let userID = try UserID(parsing: context.parameter("userId"))
        guard userID.serverName.rawValue == context.app.configuration.serverName else {
            throw MatrixError(.invalidParam, "Only local users can be rate-limited")
        }
        guard try await context.app.database.accounts.user(id: userID) != nil else {
            throw MatrixError(.notFound, "User does not exist")
        }
        return userID
    }

    static func get(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let userID = try await localUser(context)
        guard let override = try await context.app.database.security.rateLimitOverride(userID.rawValue) else { return .json([:]) }
        return .json(["messages_per_second": .int(override.messagesPerSecond), "burst_count": .int(override.burstCount)])
    }

    static func set(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let body = try await context.jsonObject()
        let userID = try await localUser(context)
        func count(_ name: String) throws -> Int64 {
            guard let value = body[name], !value.isNull else { return 0 }
            guard case .int(let n) = value, n >= 0, n <= 1_000_000 else {
                throw MatrixError(.invalidParam, "\(name) must be a non-negative integer")
            }
            return n
        }
        let perSecond = try count("messages_per_second")
        let burst = try count("burst_count")
        try await context.app.database.security.setRateLimitOverride(userID.rawValue, messagesPerSecond: perSecond, burstCount: burst)
        context.app.accounts.rateLimiter.setOverride(userID.rawValue, messagesPerSecond: perSecond, burstCount: burst)
        return .json(["messages_per_second": .int(perSecond), "burst_count": .int(burst)])
    }

    static func remove(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let userID = try await localUser(context)
        try await context.app.database.security.removeRateLimitOverride(userID.rawValue)
        context.app.accounts.rateLimiter.setOverride(userID.rawValue, messagesPerSecond: nil, burstCount: 0)
        return .json([:])
    }
}
