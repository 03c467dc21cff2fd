import Actors
import Matrix
import Persistence
import Transport

/// `GET /devices`, `GET/PUT/DELETE /devices/{deviceId}` and `POST /delete_devices`
/// (spec: client-server API, "Device management"). Deleting a device revokes its tokens;
/// deletion needs user-interactive authentication with the account's password.
enum Devices {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/devices", listDevices)
        routes.client(.get, "/devices/{deviceId}", getDevice)
        routes.client(.put, "/devices/{deviceId}", updateDevice)
        routes.client(.delete, "/devices/{deviceId}", deleteDevice)
        routes.client(.post, "/delete_devices", deleteDevices)
    }

    /// `GET /devices`: the requester's devices.
    static func listDevices(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        let devices = try await accounts.database.devices.devices(of: requester.userID)
        return .json(["devices": .array(devices.map { json($0, accounts: accounts) })])
    }

    /// `GET /devices/{deviceId}`: one of the requester's devices.
    static func getDevice(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        guard let id = try? DeviceID(parsing: context.parameter("deviceId")),
              let device = try await accounts.database.devices.device(of: requester.userID, id: id) else {
            throw MatrixError(.notFound, "Device not found")
        }
        return .json(json(device, accounts: accounts))
    }

    /// `PUT /devices/{deviceId}`: renames one of the requester's devices.
    static func updateDevice(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        guard let id = try? DeviceID(parsing: context.parameter("deviceId")),
              var device = try await accounts.database.devices.device(of: requester.userID, id: id) else {
            throw MatrixError(.notFound, "Device not found")
        }
        if let name = body["display_name"] {
            guard let text = name.stringValue else { throw MatrixError(.badJSON, "display_name must be a string") }
            guard text.utf8.count <= 100 else {
                throw MatrixError(.invalidParam, "Device display name is too long (max 100)")
            }
            device.displayName = text
            try await accounts.database.devices.upsertDevice(device)
            // Other users show device names from /keys/query: tell them to fetch again.
            try await context.app.keys.deviceListChanged(requester.userID, devices: [device.deviceID])
        }
        return .json([:])
    }

    /// `DELETE /devices/{deviceId}`: deletes one of the requester's devices (UIA).
    static func deleteDevice(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let body = try await optionalBody(context)
        try await authorizeDeletion(requester: requester, body: body, accounts: context.app.accounts)
        try await delete([context.parameter("deviceId")], of: requester, app: context.app)
        return .json([:])
    }

    /// `POST /delete_devices`: deletes several of the requester's devices (UIA).
    static func deleteDevices(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        guard let list = body["devices"]?.arrayValue else { throw MatrixError(.badJSON, "Missing devices") }
        let ids = try list.map { item -> String in
            guard let id = item.stringValue else { throw MatrixError(.badJSON, "devices must be strings") }
            return id
        }
        try await authorizeDeletion(requester: requester, body: body, accounts: context.app.accounts)
        try await delete(ids, of: requester, app: context.app)
        return .json([:])
    }

    /// A device as Synapse serves it: every key present, null when unknown (clients such as
    /// matrix-nio index them). Last-seen values not yet flushed are overlaid.
    static func json(_ device: DeviceRecord, accounts: Accounts) -> JSON {
        var ts = device.lastSeenTs
        var ip = device.lastSeenIP
        if let user = try? UserID(parsing: device.userID), let id = try? DeviceID(parsing: device.deviceID),
           let pending = accounts.sessions.lastSeen.pending(SessionKey(user: user, device: id)),
           pending.timestamp >= ts ?? .min {
            ts = pending.timestamp
            ip = pending.ip
        }
        // Absent, not null, when unknown: the specification types these as strings and
        // integers (schemathesis found the nulls).
        var object: [String: JSON] = ["user_id": .string(device.userID), "device_id": .string(device.deviceID)]
        if let name = device.displayName { object["display_name"] = .string(name) }
        if let ts { object["last_seen_ts"] = .int(ts) }
        if let ip { object["last_seen_ip"] = .string(ip) }
        return .object(object)
    }

    /// DELETE may come without a body (the first, unauthenticated UIA round).
    static func optionalBody(_ context: RequestContext) async throws -> [String: JSON] {
        let bytes = try await context.request.body.collect()
        return bytes.isEmpty ? [:] : try RequestContext.jsonObject(from: bytes)
    }

    static func authorizeDeletion(requester: Requester, body: [String: JSON], accounts: Accounts) async throws {
        // A guest or password-less account has no password stage to offer.
        let user = try await accounts.database.accounts.user(id: requester.userID)
        let uia = user?.passwordHash == nil
            ? UserInteractiveAuth(flows: [[.dummy]])
            : UserInteractiveAuth(flows: [[.password]], passwordUser: requester.userID)
        try await uia.check(body, accounts: accounts)
    }

    /// Deletes devices with their tokens and keys; the user's room peers learn it from the
    /// device-list stream.
    static func delete(_ ids: [String], of requester: Requester, app: MyelinApp) async throws {
        try await delete(ids, of: requester.userID, app: app)
    }

    /// The same for any user (also the admin API's device deletion).
    static func delete(_ ids: [String], of user: UserID, app: MyelinApp) async throws {
        let accounts = app.accounts
        // An id that does not parse names no stored device.
        try await accounts.database.devices.deleteDevices(of: user, ids: ids.compactMap { try? DeviceID(parsing: $0) })
        for id in ids { await accounts.revokeSession(user, device: id) }
        try await app.keys.deviceListChanged(user, removedDevices: ids)
        try await Pushers.removePushers(of: user, devices: ids, app: app)
    }
}
