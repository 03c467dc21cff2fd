import Matrix
import Persistence
import Transport

/// The users part of the admin API (issue 20): Synapse's paths and shapes
/// (`docs/admin_api/user_admin_api.md`) with the seed's extra paths and fields. Every
/// handler calls `requireAdmin()` first, before it reads a parameter or the body
/// (`AdminAuthTests` checks every admin route). The listing is `AdminUserStore`'s; the
/// account changes reuse the client API's paths (deactivation, password change) so an
/// admin's action has the same effects as the user's own.
enum AdminUsers {
    static let v1 = "/_synapse/admin/v1"

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_synapse/admin/v2/users", listV2)
        routes.get("/_synapse/admin/v3/users", listV3)
        routes.get("\(v1)/users", listV2)
        routes.post("\(v1)/deactivate/{userId}", deactivate)
        routes.post("\(v1)/users/{userId}/deactivate", deactivate)
        registerDetails(&routes)
        registerModeration(&routes)
    }

    // MARK: listing

    /// `GET /_synapse/admin/v2/users` (and the seed's `v1/users`): local users, paged by
    /// offset, deactivated users left out unless `deactivated=true`.
    static func listV2(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let deactivated = try boolParameter(context, "deactivated") == true ? nil : false as Bool?
        return try await list(context, deactivated: deactivated)
    }

    /// `GET /_synapse/admin/v3/users`: as v2, but `deactivated` filters both ways and its
    /// absence filters nothing.
    static func listV3(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        return try await list(context, deactivated: try boolParameter(context, "deactivated"))
    }

    /// Most users a page holds, whatever `limit` asks (a page says `next_token` when more follow).
    static let maxPageSize: Int64 = 1000

    private static func list(_ context: RequestContext, deactivated: Bool?) async throws -> HTTPResponse {
        var query = AdminUserStore.Query()
        query.offset = try integerParameter(context, "from") ?? 0
        query.limit = min(try integerParameter(context, "limit") ?? 100, maxPageSize)
        query.userID = context.query["user_id"]
        query.name = context.query["name"]
        query.guests = try boolParameter(context, "guests") ?? true
        query.deactivated = deactivated
        query.admins = try boolParameter(context, "admins")
        query.includeLocked = try boolParameter(context, "locked") ?? false
        if let order = context.query["order_by"] {
            guard let parsed = AdminUserStore.Order(rawValue: order) else {
                throw MatrixError(.invalidParam, "Unknown value for order_by: \(order.prefix(64))")
            }
            query.order = parsed
        }
        switch context.query["dir"] ?? "f" {
        case "f": query.backwards = false
        case "b": query.backwards = true
        default: throw MatrixError(.invalidParam, "Unknown direction; dir must be 'f' or 'b'")
        }
        let serverName = context.app.configuration.serverName
        let (rows, total) = try await context.app.database.adminUsers.list(query, serverName: serverName)
        var body: [String: JSON] = ["users": .array(rows.map { listed($0) }), "total": .int(total)]
        // Synapse: a next page exists while offset + limit falls short of the total.
        if query.offset + query.limit < total, !rows.isEmpty {
            body["next_token"] = .string(String(query.offset + Int64(rows.count)))
        }
        return .json(.object(body))
    }

    /// A user of a listing: Synapse's fields (`name`, `creation_ts` in milliseconds) and the
    /// seed's (`user_id`).
    static func listed(_ row: AdminUserStore.Row) -> JSON {
        var object = flags(row.user)
        object["creation_ts"] = .int(row.user.createdTs)
        object["last_seen_ts"] = row.lastSeenTs.map(JSON.int) ?? .null
        return .object(object)
    }

    /// The fields a listing and a single user share.
    static func flags(_ user: UserRecord) -> [String: JSON] {
        [
            "name": .string(user.userID),
            "user_id": .string(user.userID),
            "is_guest": .bool(user.isGuest),
            "admin": .bool(user.isAdmin),
            "user_type": .null,
            "deactivated": .bool(user.deactivated),
            "erased": .bool(user.erased),
            "shadow_banned": false,
            "locked": .bool(user.locked),
            "suspended": .bool(user.suspended),
            "displayname": user.displayname.map(JSON.string) ?? .null,
            "avatar_url": user.avatarURL.map(JSON.string) ?? .null,
        ]
    }

    // MARK: deactivation

    /// `POST /_synapse/admin/v1/deactivate/{userId}` (Synapse) and the seed's `POST
    /// /_synapse/admin/v1/users/{userId}/deactivate`: body `{"erase": bool}`, optional (an empty
    /// body is accepted, as Synapse does). The effects are those of the user's own
    /// deactivation (`AccountManagement.deactivateAccount`).
    static func deactivate(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let user = try localUser(context)
        let body = try await optionalBody(context)
        var erase = false
        if let value = body["erase"] {
            guard let flag = value.boolValue else { throw MatrixError(.invalidParam, "erase must be a boolean") }
            erase = flag
        }
        guard try await context.app.database.accounts.user(id: user) != nil else {
            throw MatrixError(.notFound, "User not found")
        }
        try await AccountManagement.deactivateAccount(context.app, user, erase: erase)
        context.app.logger.notice("admin \(admin.userID) deactivated \(user)\(erase ? " (erased)" : "")")
        return .json(["id_server_unbind_result": "success"])
    }

    // MARK: parameters

    /// The path's `userId`, which must be a user of this server: 400 otherwise, as Synapse.
    static func localUser(_ context: RequestContext) throws -> UserID {
        let user = try UserID(parsing: context.parameter("userId"))
        guard user.serverName.rawValue == context.app.configuration.serverName else {
            throw MatrixError(.invalidParam, "Can only manage local users", status: 400)
        }
        return user
    }

    /// The body as an object; an empty body is an empty object.
    static func optionalBody(_ context: RequestContext) async throws -> [String: JSON] {
        let bytes = try await context.request.body.collect()
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return [:] }
        return try RequestContext.jsonObject(from: bytes)
    }

    /// A query parameter that must be `true` or `false` (Synapse's `parse_boolean`); nil when absent.
    static func boolParameter(_ context: RequestContext, _ name: String) throws -> Bool? {
        guard let text = context.query[name] else { return nil }
        switch text {
        case "true": return true
        case "false": return false
        default: throw MatrixError(.invalidParam, "Boolean query parameter \(name) must be 'true' or 'false'")
        }
    }

    /// A non-negative integer query parameter of at most 18 digits; nil when absent.
    static func integerParameter(_ context: RequestContext, _ name: String) throws -> Int64? {
        guard let text = context.query[name] else { return nil }
        guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = Int64(text) else {
            throw MatrixError(.invalidParam, "Query parameter \(name) must be a string representing a positive integer.")
        }
        return value
    }
}
