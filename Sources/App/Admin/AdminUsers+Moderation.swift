import Actors
import Matrix
import Persistence
import Transport

/// A user's devices through the admin API (Synapse's `v2/users/{userId}/devices`), and the
/// specification's account locking and suspension (`/_matrix/client/v1/admin/lock|suspend`,
/// with Synapse's `PUT /_synapse/admin/v1/suspend/{userId}`). What a locked or suspended user
/// may still do is `AccountModeration`'s. Every handler calls `requireAdmin()` first.
extension AdminUsers {
    static let v2 = "/_synapse/admin/v2"

    static func registerModeration(_ routes: inout RouteBuilder) {
        routes.get("\(v2)/users/{userId}/devices", listDevices)
        routes.post("\(v2)/users/{userId}/devices", createDevice)
        routes.get("\(v2)/users/{userId}/devices/{deviceId}", getDevice)
        routes.put("\(v2)/users/{userId}/devices/{deviceId}", updateDevice)
        routes.delete("\(v2)/users/{userId}/devices/{deviceId}", deleteDevice)
        routes.post("\(v2)/users/{userId}/delete_devices", deleteDevices)
        routes.get("/_matrix/client/v1/admin/lock/{userId}", getLock)
        routes.put("/_matrix/client/v1/admin/lock/{userId}", putLock)
        routes.get("/_matrix/client/v1/admin/suspend/{userId}", getSuspension)
        routes.put("/_matrix/client/v1/admin/suspend/{userId}", putSuspension)
        routes.put("\(v1)/suspend/{userId}", putSuspensionSynapse)
    }

    // MARK: devices

    /// A device as Synapse's admin API shows it: every key, null when unknown.
    static func deviceJSON(_ device: DeviceRecord, _ app: MyelinApp) -> JSON {
        guard case .object(var object) = Devices.json(device, accounts: app.accounts) else { return .null }
        for key in ["display_name", "last_seen_ts", "last_seen_ip"] where object[key] == nil { object[key] = .null }
        object["last_seen_user_agent"] = device.lastSeenUserAgent.map(JSON.string) ?? .null
        return .object(object)
    }

    /// `GET /_synapse/admin/v2/users/{userId}/devices`.
    static func listDevices(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        let devices = try await context.app.database.devices.devices(of: user).map { deviceJSON($0, context.app) }
        return .json(["devices": .array(devices), "total": .int(Int64(devices.count))])
    }

    /// `POST /_synapse/admin/v2/users/{userId}/devices`, body `{"device_id": ...}`: a device
    /// without tokens (bridges log in to it later); an existing one is left as it is.
    static func createDevice(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        let body = try await context.jsonObject()
        guard let text = body["device_id"]?.stringValue else { throw MatrixError(.missingParam, "Missing device_id") }
        let id = try DeviceID(parsing: text)
        if try await context.app.database.devices.device(of: user, id: id) == nil {
            try await context.app.database.devices.upsertDevice(DeviceRecord(userID: user.rawValue, deviceID: id.rawValue))
            try await context.app.keys.deviceListChanged(user, devices: [id.rawValue])
        }
        return .json([:], status: 201)
    }

    static func device(_ context: RequestContext) async throws -> (UserID, DeviceRecord) {
        let (user, _) = try await existingUser(context)
        guard let id = try? DeviceID(parsing: context.parameter("deviceId")),
              let device = try await context.app.database.devices.device(of: user, id: id) else {
            throw MatrixError(.notFound, "Device not found")
        }
        return (user, device)
    }

    /// `GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
    static func getDevice(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        return .json(deviceJSON(try await device(context).1, context.app))
    }

    /// `PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}`: `display_name`.
    static func updateDevice(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        var (user, device) = try await device(context)
        let body = try await context.jsonObject()
        if let name = body["display_name"] {
            guard let text = name.stringValue else { throw MatrixError(.badJSON, "display_name must be a string") }
            guard text.utf8.count <= 100 else { throw MatrixError(.invalidParam, "Device display name is too long (max 100)") }
            device.displayName = text
            try await context.app.database.devices.upsertDevice(device)
            try await context.app.keys.deviceListChanged(user, devices: [device.deviceID])
        }
        return .json([:])
    }

    /// `DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}`: the device, its tokens,
    /// keys and pushers; an unknown device answers 200 as in Synapse.
    static func deleteDevice(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        let id = try RequestBounds.text(context.parameter("deviceId"), "Device id", maxBytes: 255)
        try await Devices.delete([id], of: user, app: context.app)
        return .json([:])
    }

    /// Most devices one `delete_devices` request names.
    static let maxDevicesPerDeletion = 1000

    /// `POST /_synapse/admin/v2/users/{userId}/delete_devices`, body `{"devices": [...]}`.
    static func deleteDevices(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        let body = try await context.jsonObject()
        guard let list = body["devices"]?.arrayValue else { throw MatrixError(.missingParam, "Missing devices") }
        guard list.count <= maxDevicesPerDeletion else {
            throw MatrixError(.invalidParam, "At most \(maxDevicesPerDeletion) devices per request")
        }
        let ids = try list.map { item -> String in
            guard let id = item.stringValue, id.utf8.count <= 255 else {
                throw MatrixError(.invalidParam, "devices must be device ids")
            }
            return id
        }
        try await Devices.delete(ids, of: user, app: context.app)
        return .json([:])
    }

    // MARK: lock and suspension

    /// The target of a lock or suspension: local (400), existing and active (404), as the
    /// specification's `admin/lock` and `admin/suspend` answer.
    static func moderatedUser(_ context: RequestContext) async throws -> (UserID, UserRecord) {
        let user = try localUser(context)
        guard let record = try await context.app.database.accounts.user(id: user), !record.deactivated else {
            throw MatrixError(.notFound, "User not found or deactivated")
        }
        return (user, record)
    }

    /// A flag from the body: `key` must be a boolean.
    static func flag(_ context: RequestContext, _ key: String) async throws -> Bool {
        let body = try await context.jsonObject()
        guard let value = body[key] else { throw MatrixError(.missingParam, "Missing \(key)") }
        guard let flag = value.boolValue else { throw MatrixError(.invalidParam, "\(key) must be a boolean") }
        return flag
    }

    /// `GET /_matrix/client/v1/admin/lock/{userId}`.
    static func getLock(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        return .json(["locked": .bool(try await moderatedUser(context).1.locked)])
    }

    /// `PUT /_matrix/client/v1/admin/lock/{userId}`, body `{"locked": bool}`: a locked user's
    /// next request answers 401 `M_USER_LOCKED` (their tokens are kept, as the specification
    /// asks).
    static func putLock(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (user, _) = try await moderatedUser(context)
        let locked = try await flag(context, "locked")
        if locked && user == admin.userID { throw MatrixError(.forbidden, "You cannot lock yourself") }
        try await setModeration(context, .locked, user, locked, by: admin)
        return .json(["locked": .bool(locked)])
    }

    /// `GET /_matrix/client/v1/admin/suspend/{userId}`.
    static func getSuspension(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        return .json(["suspended": .bool(try await moderatedUser(context).1.suspended)])
    }

    /// `PUT /_matrix/client/v1/admin/suspend/{userId}`, body `{"suspended": bool}`.
    static func putSuspension(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (user, record) = try await moderatedUser(context)
        let suspended = try await flag(context, "suspended")
        try checkSuspension(of: user, record, suspended, by: admin)
        try await setModeration(context, .suspended, user, suspended, by: admin)
        return .json(["suspended": .bool(suspended)])
    }

    /// Synapse's `PUT /_synapse/admin/v1/suspend/{userId}`, body `{"suspend": bool}`.
    static func putSuspensionSynapse(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (user, record) = try await moderatedUser(context)
        let suspended = try await flag(context, "suspend")
        try checkSuspension(of: user, record, suspended, by: admin)
        try await setModeration(context, .suspended, user, suspended, by: admin)
        return .json(.object(["user_\(user.rawValue)_suspended": .bool(suspended)]))
    }

    /// The specification: an admin suspends neither themselves nor another admin (403).
    static func checkSuspension(of user: UserID, _ record: UserRecord, _ suspended: Bool, by admin: Requester) throws {
        guard suspended else { return }
        if user == admin.userID { throw MatrixError(.forbidden, "You cannot suspend yourself") }
        if record.isAdmin { throw MatrixError(.forbidden, "You cannot suspend another server admin") }
    }

    private static func setModeration(_ context: RequestContext, _ flag: AdminUserStore.Flag, _ user: UserID, _ value: Bool,
                                      by admin: Requester) async throws {
        try await context.app.database.adminUsers.setFlag(flag, of: user, to: value)
        // The sessions re-read the user: the change holds from the next request.
        await context.app.accounts.sessions.invalidate(user)
        context.app.logger.notice("admin \(admin.userID) set \(flag.rawValue) of \(user) to \(value)")
    }
}
