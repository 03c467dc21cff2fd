import Logging
import Matrix
import Persistence
import Transport

/// The seed's server administration endpoints (`synapse-admin` group, "4.1 服务器信息"):
/// `health` (no authentication: monitors call it), and for admins `status`, `server_stats`,
/// `user_stats`, `config` (secrets redacted, `AdminServerConfig`) and `logs` (the newest
/// lines of `LogRing`). `server_version` stays in `SynapseAdmin`; `media_stats` and
/// Synapse's `statistics/users/media` are in `MediaAdmin`. Every admin handler calls
/// `requireAdmin()` before it reads anything of the request.
enum AdminServer {
    static let prefix = "/_synapse/admin/v1"

    static func register(_ routes: inout RouteBuilder) {
        routes.get("\(prefix)/health", health)
        routes.get("\(prefix)/status", status)
        routes.get("\(prefix)/server_stats", serverStats)
        routes.get("\(prefix)/user_stats", userStats)
        routes.get("\(prefix)/config", config)
        routes.get("\(prefix)/logs", logs)
        AdminRuntime.register(&routes)
        AdminPage.register(&routes)
    }

    static let dayMs: Int64 = 86_400_000

    /// `GET /health`: 200 `{"status": "ok"}` while the database answers, 503 otherwise.
    /// No authentication (a load balancer's probe has no token) and nothing else disclosed.
    static func health(_ context: RequestContext) async throws -> HTTPResponse {
        if await context.app.database.serverStats.ping() {
            return .json(["status": "ok"])
        }
        return .json(["status": "unhealthy"], status: 503)
    }

    /// `GET /status`: the seed's shape (status, database, cache, uptime) and the version.
    static func status(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        let reachable = await app.database.serverStats.ping()
        let now = Clock.nowMilliseconds()
        return .json([
            "status": .string(reachable ? "ok" : "degraded"),
            "database": .string(reachable ? "connected" : "unreachable"),
            "database_backend": .string(app.configuration.database.backend.rawValue),
            // The caches are in the process: they are up whenever this answers.
            "cache": "connected",
            "uptime_seconds": .int(max(0, (now - app.startedAt) / 1000)),
            "started_ts": .int(app.startedAt),
            "version": .string(MyelinVersion.string),
            "server_version": .string("Myelin \(MyelinVersion.string)"),
            "server_name": .string(app.configuration.serverName),
        ])
    }

    static func counts(_ app: MyelinApp) async throws -> ServerStatsStore.Counts {
        let now = Clock.nowMilliseconds()
        return try await app.database.serverStats.counts(dailySince: now - dayMs, monthlySince: now - 30 * dayMs,
                                                         newSince: now - now % dayMs)
    }

    /// `GET /server_stats`: users, rooms, messages; users active in the last day and the
    /// last 30 days by their devices' last-seen time (as Synapse's phone-home stats).
    static func serverStats(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let c = try await counts(context.app)
        return .json([
            "total_users": .int(Int64(c.totalUsers)),
            "total_rooms": .int(Int64(c.totalRooms)),
            "total_messages": .int(Int64(c.totalMessages)),
            "daily_active_users": .int(Int64(c.dailyActiveUsers)),
            "monthly_active_users": .int(Int64(c.monthlyActiveUsers)),
        ])
    }

    /// `GET /user_stats`: the seed's shape — `active_users` are those seen in the last 30
    /// days, `new_users_today` those created since midnight UTC — and the other counts.
    static func userStats(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let c = try await counts(context.app)
        return .json([
            "total_users": .int(Int64(c.totalUsers)),
            "active_users": .int(Int64(c.monthlyActiveUsers)),
            "new_users_today": .int(Int64(c.newUsers)),
            "daily_active_users": .int(Int64(c.dailyActiveUsers)),
            "monthly_active_users": .int(Int64(c.monthlyActiveUsers)),
            "deactivated_users": .int(Int64(c.deactivatedUsers)),
            "guest_users": .int(Int64(c.guestUsers)),
            "admin_users": .int(Int64(c.adminUsers)),
        ])
    }

    /// `GET /config`: the effective configuration, every secret redacted.
    static func config(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        context.app.logger.notice("admin \(admin.userID.rawValue) read the configuration")
        return .json(AdminServerConfig.render(context.app.configuration))
    }

    static let defaultLogLimit = 100
    static let maxLogLimit = 1_000

    /// `GET /logs?limit=&level=`: the newest lines (oldest first) of `level` and above.
    static func logs(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let query = context.query
        var limit = defaultLogLimit
        if let text = query["limit"] {
            guard let value = Int(text), value >= 0 else {
                throw MatrixError(.invalidParam, "limit must be a non-negative integer")
            }
            limit = min(value, maxLogLimit)
        }
        var minimum = Logger.Level.trace
        if let text = query["level"], !text.isEmpty {
            guard let level = parseLevel(text) else {
                throw MatrixError(.invalidParam, "level must be one of trace, debug, info, notice, warning, error, critical")
            }
            minimum = level
        }
        let ring = context.app.logRing
        let lines = ring.recent(limit: limit, minimum: minimum)
        return .json([
            "logs": .array(lines.map { line in
                .object([
                    "timestamp": .string(Timestamp.iso8601(milliseconds: line.timestampMs)),
                    "ts": .int(line.timestampMs),
                    "level": .string(levelName(line.level)),
                    "logger": .string(line.label),
                    "message": .string(line.message),
                ])
            }),
            "capacity": .int(Int64(ring.capacity)),
        ])
    }

    static func parseLevel(_ text: String) -> Logger.Level? {
        switch text.lowercased() {
        case "warn": return .warning
        case "fatal": return .critical
        default: return Logger.Level(rawValue: text.lowercased())
        }
    }

    static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }
}

/// RFC 3339 timestamps in UTC without Foundation.
enum Timestamp {
    static func iso8601(milliseconds: Int64) -> String {
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let millis = Int(milliseconds - seconds * 1000)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        // Howard Hinnant's days-to-civil.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ n: Int64, _ width: Int) -> String {
            let s = String(n)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(Int64(secondOfDay / 3600), 2)):"
            + "\(pad(Int64(secondOfDay / 60 % 60), 2)):\(pad(Int64(secondOfDay % 60), 2)).\(pad(Int64(millis), 3))Z"
    }
}
