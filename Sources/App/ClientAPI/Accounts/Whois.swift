import Matrix
import Persistence
import Transport

/// `GET /admin/whois/{userId}` (client-server API "Server administration"): a user's devices
/// with their last connection. For server admins, and for a user asking about themselves
/// (as Synapse allows).
enum Whois {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/admin/whois/{userId}", whois)
    }

    static func whois(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let target = try UserID(parsing: context.parameter("userId"))
        guard requester.isAdmin || requester.userID == target else {
            throw MatrixError(.forbidden, "You are not a server admin")
        }
        return try await response(context.app, target)
    }

    /// The whois body of `target`, a local user (also `GET /_synapse/admin/v1/whois/{userId}`).
    static func response(_ app: MyelinApp, _ target: UserID) async throws -> HTTPResponse {
        guard target.serverName.rawValue == app.configuration.serverName else {
            throw MatrixError(.invalidParam, "Can only whois a local user", status: 400)
        }
        var devices: [String: JSON] = [:]
        for device in try await app.database.devices.devices(of: target) {
            var connections: [JSON] = []
            if let seen = device.lastSeenTs {
                // Unknown fields are left out: the specification's schema types them as strings.
                var connection: [String: JSON] = ["last_seen": .int(seen)]
                if let ip = device.lastSeenIP { connection["ip"] = .string(ip) }
                if let agent = device.lastSeenUserAgent { connection["user_agent"] = .string(agent) }
                connections.append(.object(connection))
            }
            devices[device.deviceID] = ["sessions": [["connections": .array(connections)]]]
        }
        return .json(["user_id": .string(target.rawValue), "devices": .object(devices)])
    }
}
