import Actors
import Matrix
import Persistence
import Transport

/// `POST /account/password`, `POST /account/deactivate`, `GET /account/3pid` and
/// `POST /user/{userId}/openid/request_token` (spec: client-server API, "Account
/// management", "OpenID"), plus the federation `openid/userinfo` that checks those tokens.
enum AccountManagement {
    static let openIDLifetimeSeconds: Int64 = 3600

    /// Leaves every room `user` is joined to, invited to or knocking on. A room that refuses
    /// (it should not: anyone may leave) is logged and the others are still left.
    static func leaveEveryRoom(_ app: MyelinApp, _ user: UserID) async throws {
        let service = app.roomService
        let memberships = try await service.memberships(of: user)
        for (room, membership) in memberships.sorted(by: { $0.key < $1.key })
        where [MembershipState.join, .invite, .knock].contains(where: { membership.membership == $0 }) {
            guard let roomID = try? RoomID(parsing: room) else { continue }
            do {
                _ = try await service.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue,
                                                      content: ["membership": MembershipState.leave.json]), in: roomID)
            } catch {
                app.logger.warning("deactivating \(user): leaving \(room) failed: \(error)")
            }
        }
    }

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/account/password", changePassword)
        routes.client(.post, "/account/deactivate", deactivate)
        routes.client(.get, "/account/3pid", threepids)
        routes.client(.post, "/user/{userId}/openid/request_token", requestOpenIDToken)
        routes.get("/_matrix/federation/v1/openid/userinfo", openIDUserInfo)
    }

    /// `POST /account/password`: changes the password (UIA), by default signing out the other devices.
    static func changePassword(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser(allowGuests: false)
        let body = try await context.jsonObject()
        guard let password = body["new_password"]?.stringValue else {
            throw MatrixError(.missingParam, "Missing new_password")
        }
        guard password.utf8.count <= Registration.maxPasswordLength else {
            throw MatrixError(.invalidParam, "Password too long")
        }
        try await UserInteractiveAuth(flows: [[.password]], passwordUser: requester.userID).check(body, accounts: accounts)
        let logout = body["logout_devices"]?.boolValue ?? true
        let hash = try await accounts.passwords.hash(password)
        try await accounts.database.accounts.setPassword(of: requester.userID, hash: hash,
                                                         logoutExcept: logout ? .some(requester.deviceID) : nil)
        if logout {
            // Other devices' sessions go; the requester's stays.
            await accounts.sessions.revoke(requester.userID, keeping: requester.session?.identity.device)
            // And their pushers (as Synapse: only the requester's device keeps its own).
            try await accounts.database.pushers.deletePushers(of: requester.userID, except: requester.deviceID)
            await context.app.roomService.push.deliveries.reload(requester.userID)
        }
        return .json([:])
    }

    /// `POST /account/deactivate`: leaves every room and deactivates the account (UIA).
    static func deactivate(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        try await Devices.authorizeDeletion(requester: requester, body: body, accounts: accounts)
        try await deactivateAccount(context.app, requester.userID, erase: body["erase"]?.boolValue ?? false)
        context.app.logger.info("deactivated \(requester.userID)")
        return .json(["id_server_unbind_result": "no-support"])
    }

    /// Deactivates `user`: leaves every room, removes the password, devices, tokens and
    /// pushers, ends the sessions; with `erase`, the profile and the uploaded media go too.
    /// The user's own `/account/deactivate` and the admin API's deactivation both call it.
    static func deactivateAccount(_ app: MyelinApp, _ user: UserID, erase: Bool) async throws {
        let accounts = app.accounts
        // As Synapse: every room is left (invites rejected, knocks withdrawn) while the
        // account can still send, each leave through its room's actor.
        try await leaveEveryRoom(app, user)
        try await accounts.database.accounts.deactivate(user, erase: erase)
        // A deactivated account gets no pushes (as Synapse).
        try await accounts.database.pushers.deletePushers(of: user, except: nil)
        await app.roomService.push.deliveries.reload(user)
        // Erasure removes what the user uploaded too (Synapse's `erase`: the media go).
        if erase { try await MediaAdmin.deleteAllMedia(of: user, app: app) }
        await accounts.sessions.revoke(user)
    }

    /// `GET /account/3pid`: the account's third-party identifiers (none: not supported).
    static func threepids(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireUser()
        return .json(["threepids": .array([])])
    }

    /// `POST /user/{userId}/openid/request_token`: an OpenID token that proves the requester's identity.
    static func requestOpenIDToken(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireSelf("Cannot request tokens for other users.")
        let token = Secrets.token(prefix: "myo")
        let expires = Clock.nowMilliseconds() + openIDLifetimeSeconds * 1000
        try await accounts.database.openIDTokens.addOpenIDToken(hash: Secrets.hash(token), userID: requester.userID,
                                                              expiresTs: expires)
        return .json(["access_token": .string(token), "token_type": "Bearer",
                      "matrix_server_name": .string(accounts.serverName), "expires_in": .int(openIDLifetimeSeconds)])
    }

    /// `GET /_matrix/federation/v1/openid/userinfo`: the user an OpenID token names.
    static func openIDUserInfo(_ context: RequestContext) async throws -> HTTPResponse {
        guard let token = context.query["access_token"],
              let user = try await context.app.database.openIDTokens.openIDUser(hash: Secrets.hash(token),
                                                                              now: Clock.nowMilliseconds()) else {
            throw MatrixError(.unknownToken, "Access Token unknown or expired")
        }
        return .json(["sub": .string(user)])
    }
}

/// `GET /capabilities` (spec: client-server API, "Capabilities negotiation").
enum Capabilities {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/capabilities", capabilities)
    }

    /// `GET /capabilities`: what this server lets clients do.
    static func capabilities(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        var available: [String: JSON] = [:]
        for version in RoomVersion.all {
            available[version.id] = .string(version.stability == .stable ? "stable" : "unstable")
        }
        return .json(["capabilities": [
            "m.change_password": ["enabled": true],
            "m.room_versions": ["default": .string(context.app.configuration.defaultRoomVersion), "available": .object(available)],
            "m.set_displayname": ["enabled": true],
            "m.set_avatar_url": ["enabled": true],
            "m.3pid_changes": ["enabled": false],
            "m.get_login_token": ["enabled": false],
            "m.profile_fields": ["enabled": true],
            // Spec v1.18: whether the requester may lock and suspend (admins only,
            // `Admin/AdminUsers+Moderation.swift`).
            "m.account_moderation": ["lock": .bool(requester.isAdmin), "suspend": .bool(requester.isAdmin)],
        ]])
    }
}
