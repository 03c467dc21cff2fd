import Matrix
import Persistence
import Transport

/// `GET/POST /login`, `/logout`, `/logout/all`, `/refresh` and `/account/whoami`
/// (spec: client-server API, "Login", "Refreshing access tokens", "Current account information").
enum Login {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/login", loginFlows)
        routes.client(.post, "/login", login)
        routes.client(.post, "/refresh", versions: ["v1", "v3"], refresh)
        routes.client(.post, "/logout", logout)
        routes.client(.post, "/logout/all", logoutAll)
        routes.client(.get, "/account/whoami", whoami)
    }

    /// `GET /login`: the login types this server supports.
    static func loginFlows(_ context: RequestContext) async throws -> HTTPResponse {
        .json(["flows": [["type": "m.login.password"]]])
    }

    /// `POST /login`: password login, which issues a session.
    static func login(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let ip = context.clientAddress
        let body = try await context.jsonObject()
        try context.rateLimit("login", accounts.configuration.rateLimits.login)
        guard let type = body["type"]?.stringValue else { throw MatrixError(.badJSON, "Missing type") }
        guard type == "m.login.password" else {
            throw MatrixError(.unknown, "Unknown login type \(type)", status: 400)
        }
        let userText: String
        if let identifier = body["identifier"] {
            guard let object = identifier.objectValue else { throw MatrixError(.badJSON, "Invalid identifier") }
            guard object["type"]?.stringValue == "m.id.user" else {
                throw MatrixError(.unknown, "Unknown login identifier type", status: 400)
            }
            guard let user = object["user"]?.stringValue else { throw MatrixError(.badJSON, "Missing identifier.user") }
            userText = user
        } else if let user = body["user"]?.stringValue {
            userText = user
        } else {
            throw MatrixError(.badJSON, "Missing identifier")
        }
        guard let password = body["password"]?.stringValue else { throw MatrixError(.badJSON, "Missing password") }
        if let value = body["device_id"], value.stringValue == nil { throw MatrixError(.badJSON, "Invalid device_id") }

        let userID = try accounts.localUserID(from: userText)
        // Per account: slows password guessing against one user from many addresses.
        try context.rateLimit("login-account", accounts.configuration.rateLimits.login, user: userID)
        _ = try await accounts.checkPassword(userID: userID, password: password)
        let session = try await accounts.issueSession(
            userID: userID, deviceID: body["device_id"]?.stringValue,
            displayName: body["initial_device_display_name"]?.stringValue,
            refreshable: body["refresh_token"]?.boolValue ?? false, ip: ip)
        // A new device is a device-list change: the user's other devices and their room peers
        // (here and over federation) see it in `device_lists.changed` (as Synapse does).
        try await context.app.keys.deviceListChanged(userID, devices: [session.deviceID])
        return .json(.object(accounts.sessionBody(userID: userID, session)))
    }

    /// `POST /refresh`: new tokens for a refresh token (used once).
    static func refresh(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let body = try await context.jsonObject()
        guard let token = body["refresh_token"]?.stringValue else { throw MatrixError(.missingParam, "Missing refresh_token") }
        let oldHash = Secrets.hash(token)
        guard let old = try await accounts.database.tokens.accessToken(refreshHash: oldHash),
              let deviceID = old.deviceID, let userID = try? UserID(parsing: old.userID) else {
            throw MatrixError(.unknownToken, "Unknown refresh token", extra: ["soft_logout": false])
        }
        let now = Clock.nowMilliseconds()
        if let expires = old.refreshExpiresTs, expires <= now {
            throw MatrixError(.unknownToken, "Refresh token has expired", extra: ["soft_logout": false])
        }
        let fresh = accounts.newTokens(userID: userID, deviceID: deviceID, refreshable: true, now: now)
        // A refresh token is used once: a second use (a replay) finds nothing.
        // The old tokens stay valid until the new ones are used (a lost response must not log
        // the device out); a replay after that finds nothing.
        guard try await accounts.database.tokens.rotateRefreshToken(old: old, new: fresh.record) else {
            throw MatrixError(.unknownToken, "Unknown refresh token", extra: ["soft_logout": false])
        }
        if let predecessor = old.replacesTokenHash { accounts.sessions.revoke(tokenHash: predecessor) }
        var response: [String: JSON] = ["access_token": .string(fresh.issued.accessToken)]
        if let refresh = fresh.issued.refreshToken { response["refresh_token"] = .string(refresh) }
        if let expires = fresh.issued.expiresInMs { response["expires_in_ms"] = .int(expires) }
        return .json(.object(response))
    }

    /// `POST /logout`: ends the requester's session.
    static func logout(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        // Logging out deletes the device too, as in Synapse.
        if let device = requester.deviceID {
            // The token's device, as stored (validated when it was created).
            try await accounts.database.devices.deleteDevice(of: requester.userID, id: DeviceID(unchecked: device))
            await accounts.revokeSession(requester.userID, device: device)
            try await context.app.keys.deviceListChanged(requester.userID, removedDevices: [device])
            try await Pushers.removePushers(of: requester.userID, devices: [device], app: context.app)
        } else {
            try await accounts.database.tokens.deleteAccessToken(hash: requester.tokenHash)
        }
        accounts.sessions.revoke(tokenHash: requester.tokenHash)
        return .json([:])
    }

    /// `POST /logout/all`: ends every session of the requester.
    static func logoutAll(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        let devices = try await accounts.database.devices.devices(of: requester.userID).map(\.id)
        try await accounts.database.devices.deleteDevices(of: requester.userID, ids: devices)
        try await accounts.database.tokens.deleteAccessTokens(of: requester.userID, device: nil)
        await accounts.sessions.revoke(requester.userID)
        try await context.app.keys.deviceListChanged(requester.userID, removedDevices: devices.map(\.rawValue))
        try await Pushers.removePushers(of: requester.userID, devices: devices.map(\.rawValue), app: context.app)
        return .json([:])
    }

    /// `GET /account/whoami`: the user (and device) the access token belongs to.
    static func whoami(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        var body: [String: JSON] = ["user_id": .string(requester.userID.rawValue), "is_guest": .bool(requester.isGuest)]
        if let device = requester.deviceID { body["device_id"] = .string(device) }
        return .json(.object(body))
    }
}
