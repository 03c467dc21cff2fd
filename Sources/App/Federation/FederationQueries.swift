import Actors
import Matrix
import Persistence
import Transport

/// The server-server query endpoints (spec: "Querying for information", "Public Room
/// Directory", "Device Management", "End-to-End Encryption") served for local users and
/// rooms, and their client side: the client-server handlers ask remote servers through
/// the functions here (profile, alias, public rooms, keys). Every served endpoint but
/// `/version` authenticates the calling server with `requireServer`.
enum FederationQueries {
    /// A remote query without its own timeout waits at most this long (Synapse: 10 s for keys).
    static let defaultTimeoutMs: Int64 = 10_000
    /// Users or devices asked of one server in one query, at most.
    static let maxQueried = 1_000

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/federation/v1/version", version)
        routes.get("/_matrix/federation/v1/query/profile", queryProfile)
        routes.get("/_matrix/federation/v1/query/directory", queryDirectory)
        routes.get("/_matrix/federation/v1/publicRooms", getPublicRooms)
        routes.add(.post, "/_matrix/federation/v1/publicRooms", searchPublicRooms)
        routes.get("/_matrix/federation/v1/user/devices/{userId}", userDevices)
        routes.add(.post, "/_matrix/federation/v1/user/keys/query", keysQuery)
        routes.add(.post, "/_matrix/federation/v1/user/keys/claim", keysClaim)
    }

    // MARK: Served

    /// `GET /_matrix/federation/v1/version` (no authentication, as the spec says).
    static func version(_ context: RequestContext) async throws -> HTTPResponse {
        .json(["server": ["name": "Myelin", "version": .string(MyelinVersion.string)]])
    }

    /// `GET /_matrix/federation/v1/query/profile?user_id=&field=`.
    static func queryProfile(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        let query = context.query
        guard let text = query["user_id"] else { throw MatrixError(.missingParam, "Missing user_id") }
        let user = try UserID(parsing: text)
        guard user.serverName.rawValue == context.app.configuration.serverName,
              let record = try await context.app.database.accounts.user(id: user), !record.deactivated else {
            throw MatrixError(.notFound, "Profile was not found")
        }
        var body: [String: JSON] = [:]
        let field = query["field"]
        if field == nil || field == "displayname", let name = record.displayname { body["displayname"] = .string(name) }
        if field == nil || field == "avatar_url", let avatar = record.avatarURL { body["avatar_url"] = .string(avatar) }
        return .json(.object(body))
    }

    /// `GET /_matrix/federation/v1/query/directory?room_alias=`.
    static func queryDirectory(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        guard let text = context.query["room_alias"] else { throw MatrixError(.missingParam, "Missing room_alias") }
        let alias = try RoomAlias(parsing: text)
        let app = context.app
        guard alias.serverName.rawValue == app.configuration.serverName,
              let found = try await app.database.directory.alias(alias) else {
            throw MatrixError(.notFound, "Room alias \(alias) not found")
        }
        return .json(["room_id": .string(found.roomID.rawValue), "servers": .array(try await servers(of: found.roomID, app).map { .string($0.rawValue) })])
    }

    /// `GET /_matrix/federation/v1/publicRooms`.
    static func getPublicRooms(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        let query = context.query
        let limit = query["limit"].flatMap { Int($0) }.map { min(max($0, 0), 1_000) }
        return try await Directory.publicRooms(context.app, limit: limit, since: query["since"], term: nil)
    }

    /// `POST /_matrix/federation/v1/publicRooms` with `filter.generic_search_term`.
    static func searchPublicRooms(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        let body = try await context.jsonObject()
        let limit = body["limit"]?.intValue.map { Int(min(max($0, 0), 1_000)) }
        return try await Directory.publicRooms(context.app, limit: limit, since: body["since"]?.stringValue,
                                               term: body["filter"]?["generic_search_term"]?.stringValue)
    }

    /// `GET /_matrix/federation/v1/user/devices/{userId}`: a local user's devices with keys.
    static func userDevices(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        let app = context.app
        let user = try UserID(parsing: context.parameter("userId"))
        guard user.serverName.rawValue == app.configuration.serverName else {
            throw MatrixError(.invalidParam, "\(user) is not a user of this server")
        }
        var wanted: [String: Set<String>?] = [:]
        wanted[user.rawValue] = .some(nil)
        let keys = try await Keys.localKeys(app, wanted: wanted, me: nil)
        let byDevice = keys["device_keys"]?[user.rawValue]?.objectValue ?? [:]
        var devices: [JSON] = []
        for device in try await app.database.devices.devices(of: user) {
            var entry: [String: JSON] = ["device_id": .string(device.deviceID)]
            if let name = device.displayName { entry["device_display_name"] = .string(name) }
            if let key = byDevice[device.deviceID] { entry["keys"] = key }
            devices.append(.object(entry))
        }
        var body: [String: JSON] = ["user_id": .string(user.rawValue), "devices": .array(devices),
                                    "stream_id": .int(try await lastDeviceListChange(of: user, app))]
        if let master = keys["master_keys"]?[user.rawValue] { body["master_key"] = master }
        if let selfSigning = keys["self_signing_keys"]?[user.rawValue] { body["self_signing_key"] = selfSigning }
        return .json(.object(body))
    }

    /// The position of `user`'s latest device-list change: the `stream_id` of `user/devices`,
    /// which the `prev_id` of the next `m.device_list_update` names (`KeyService`).
    static func lastDeviceListChange(of user: UserID, _ app: MyelinApp) async throws -> Int64 {
        let visible = app.keys.deviceListStream.visiblePosition
        let userID = user.rawValue
        return try await app.database.read { db in
            try DeviceListStore.lastChange(db, userID: userID, atOrBelow: visible) ?? 0
        }
    }

    /// `POST /_matrix/federation/v1/user/keys/query`: keys of local users only.
    static func keysQuery(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        let app = context.app
        let body = try await context.jsonObject()
        guard let requested = body["device_keys"]?.objectValue else { throw MatrixError(.badJSON, "Missing device_keys") }
        var wanted: [String: Set<String>?] = [:]
        for (user, devices) in requested.prefix(maxQueried) {
            guard let id = try? UserID(parsing: user), id.serverName.rawValue == app.configuration.serverName,
                  let list = devices.arrayValue else { continue }
            let ids = list.prefix(maxQueried).compactMap(\.stringValue)
            wanted[user] = ids.isEmpty ? .some(nil) : Set(ids)
        }
        return .json(.object(try await Keys.localKeys(app, wanted: wanted, me: nil)))
    }

    /// `POST /_matrix/federation/v1/user/keys/claim`: one-time keys of local devices.
    static func keysClaim(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await requireServer(context)
        let app = context.app
        let body = try await context.jsonObject()
        guard let requested = body["one_time_keys"]?.objectValue else { throw MatrixError(.badJSON, "Missing one_time_keys") }
        var wanted: [(user: UserID, device: String, algorithm: String)] = []
        for (user, devices) in requested.prefix(maxQueried) {
            guard let id = try? UserID(parsing: user), id.serverName.rawValue == app.configuration.serverName,
                  let devices = devices.objectValue else { continue }
            for (device, algorithm) in devices.prefix(maxQueried) {
                if let algorithm = algorithm.stringValue { wanted.append((id, device, algorithm)) }
            }
        }
        return .json(["one_time_keys": .object(try await Keys.claimLocal(app, wanted))])
    }

    /// The servers to join a room through: ours first, then those with joined members.
    static func servers(of room: RoomID, _ app: MyelinApp) async throws -> [ServerName] {
        let local = try ServerName(parsing: app.configuration.serverName)
        var found: [ServerName] = [local]
        var seen: Set<ServerName> = [local]
        for member in try await app.database.memberships.members(of: room) where member.membership == MembershipState.join {
            if let user = try? UserID(parsing: member.userID), seen.insert(user.serverName).inserted {
                found.append(user.serverName)
            }
        }
        return found
    }
}
