import Actors
import Matrix
import Persistence
import Transport

/// One user through the admin API: query, create or modify (Synapse's `v2/users/{userId}`),
/// the seed's `v1/users/{userId}` (GET, DELETE), the admin flag, password resets, the user's
/// rooms and whois. Every handler calls `requireAdmin()` first.
extension AdminUsers {
    static func registerDetails(_ routes: inout RouteBuilder) {
        routes.get("\(v1)/users/{userId}", getUser)
        routes.delete("\(v1)/users/{userId}", deleteUser)
        routes.get("/_synapse/admin/v2/users/{userId}", getUser)
        routes.put("/_synapse/admin/v2/users/{userId}", putUser)
        routes.get("\(v1)/users/{userId}/admin", getAdmin)
        routes.put("\(v1)/users/{userId}/admin", putAdmin)
        routes.post("\(v1)/users/{userId}/password", resetPassword)
        routes.post("\(v1)/reset_password/{userId}", resetPassword)
        routes.get("\(v1)/users/{userId}/rooms", rooms)
        routes.get("\(v1)/users/{userId}/joined_rooms", joinedRooms)
        routes.get("\(v1)/whois/{userId}", whois)
        routes.get("\(v1)/users/{userId}/memberships", memberships)
        routes.get("\(v1)/users/{userId}/pushers", pushers)
        routes.get("\(v1)/username_available", usernameAvailable)
        routes.get("\(v1)/users/{userId}/accountdata", accountData)
    }

    /// The user of the path, which must exist: 404 `M_NOT_FOUND` otherwise.
    static func existingUser(_ context: RequestContext) async throws -> (UserID, UserRecord) {
        let user = try localUser(context)
        guard let record = try await context.app.database.accounts.user(id: user) else {
            throw MatrixError(.notFound, "User not found")
        }
        return (user, record)
    }

    /// A single user as Synapse's `GET /_synapse/admin/v2/users/{userId}` shows it
    /// (`creation_ts` in seconds there, as Synapse stores it; `creation_ts_ms` too), with the
    /// seed's `user_id`.
    static func detailed(_ app: MyelinApp, _ record: UserRecord, _ user: UserID) async throws -> JSON {
        var object = flags(record)
        object["creation_ts"] = .int(record.createdTs / 1000)
        object["creation_ts_ms"] = .int(record.createdTs)
        object["last_seen_ts"] = try await app.database.adminUsers.lastSeen(of: user).map(JSON.int) ?? .null
        object["threepids"] = .array([])
        object["external_ids"] = .array([])
        object["appservice_id"] = .null
        object["consent_server_notice_sent"] = .null
        object["consent_version"] = .null
        object["consent_ts"] = .null
        return .object(object)
    }

    /// `GET /_synapse/admin/v2/users/{userId}` and the seed's `v1/users/{userId}`.
    static func getUser(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, record) = try await existingUser(context)
        return .json(try await detailed(context.app, record, user))
    }

    /// `DELETE /_synapse/admin/v1/users/{userId}` (seed): the account is deactivated and
    /// erased (Synapse keeps a deactivated account's row so that its id is never reused; so
    /// does Myelin).
    static func deleteUser(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        guard user != admin.userID else { throw MatrixError(.invalidParam, "You cannot delete yourself") }
        try await AccountManagement.deactivateAccount(context.app, user, erase: true)
        context.app.logger.notice("admin \(admin.userID) deleted (deactivated and erased) \(user)")
        return .json(["deleted": true])
    }

    // MARK: create or modify

    /// What a `PUT /_synapse/admin/v2/users/{userId}` body may say, checked before anything
    /// changes.
    struct Changes {
        var password: String?
        var logoutDevices = true
        /// Outer nil: unchanged; inner nil: removed (an empty string).
        var displayname: String??
        var avatarURL: String??
        var admin: Bool?
        var deactivated: Bool?
        var locked: Bool?

        init(_ body: [String: JSON]) throws {
            func bool(_ key: String) throws -> Bool? {
                guard let value = body[key], value != .null else { return nil }
                guard let flag = value.boolValue else { throw MatrixError(.invalidParam, "\(key) must be a boolean") }
                return flag
            }
            func text(_ key: String, max: Int) throws -> String? {
                guard let value = body[key], value != .null else { return nil }
                guard let text = value.stringValue else { throw MatrixError(.invalidParam, "\(key) must be a string") }
                guard text.utf8.count <= max else { throw MatrixError(.invalidParam, "\(key) is too long (max \(max))") }
                return text
            }
            password = try text("password", max: Registration.maxPasswordLength)
            logoutDevices = try bool("logout_devices") ?? true
            if let name = try text("displayname", max: Profiles.maxDisplaynameLength) {
                displayname = .some(name.isEmpty ? nil : name)
            }
            if let avatar = try text("avatar_url", max: Profiles.maxAvatarURLLength) {
                guard avatar.isEmpty || avatar.hasPrefix("mxc://") else {
                    throw MatrixError(.invalidParam, "avatar_url must be an mxc:// URI")
                }
                avatarURL = .some(avatar.isEmpty ? nil : avatar)
            }
            admin = try bool("admin")
            deactivated = try bool("deactivated")
            locked = try bool("locked")
            // Accepted and ignored (no third-party ids or SSO here), but they must be lists.
            for key in ["threepids", "external_ids"] where body[key] != nil && body[key] != .null {
                guard body[key]?.arrayValue != nil else { throw MatrixError(.invalidParam, "\(key) must be a list") }
            }
            if let type = body["user_type"], type != .null, type.stringValue == nil {
                throw MatrixError(.invalidParam, "user_type must be a string or null")
            }
        }
    }

    /// `PUT /_synapse/admin/v2/users/{userId}`: creates the user (201) or changes it (200);
    /// answers the user as `GET` does.
    static func putUser(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let user = try localUser(context)
        let changes = try Changes(try await context.jsonObject())
        let app = context.app
        let accounts = app.accounts
        let created: Bool
        if let existing = try await accounts.database.accounts.user(id: user) {
            created = false
            if changes.admin == false, user == admin.userID, existing.isAdmin {
                throw MatrixError(.invalidParam, "You may not demote yourself.")
            }
            try await modify(app, user, existing, changes)
        } else {
            created = true
            let localpart = String(user.localpart)
            _ = try Registration.validatedNewUserID(localpart, serverName: accounts.serverName)
            let hash = try await changes.password.asyncMap { try await accounts.passwords.hash($0) }
            let record = UserRecord(userID: user.rawValue, passwordHash: hash, isAdmin: changes.admin ?? false,
                                    displayname: (changes.displayname ?? nil) ?? localpart,
                                    avatarURL: changes.avatarURL ?? nil)
            guard try await accounts.database.accounts.createUser(record) else {
                throw MatrixError(.userInUse, "User ID already taken.")
            }
            if changes.locked == true { try await app.database.adminUsers.setFlag(.locked, of: user, to: true) }
            if changes.deactivated == true { try await AccountManagement.deactivateAccount(app, user, erase: false) }
            app.logger.notice("admin \(admin.userID) created \(user)\(changes.admin == true ? " (admin)" : "")")
        }
        guard let record = try await accounts.database.accounts.user(id: user) else {
            throw MatrixError(.notFound, "User not found")
        }
        return .json(try await detailed(app, record, user), status: created ? 201 : 200)
    }

    private static func modify(_ app: MyelinApp, _ user: UserID, _ existing: UserRecord, _ changes: Changes) async throws {
        let accounts = app.accounts
        var flagsChanged = false
        if changes.deactivated == false, existing.deactivated {
            // As Synapse: a deactivated account has no password left; reactivating needs one.
            guard let password = changes.password else {
                throw MatrixError(.invalidParam, "Must provide a password to re-activate an account.")
            }
            try await app.database.adminUsers.reactivate(user, passwordHash: try await accounts.passwords.hash(password))
        } else if let password = changes.password, !existing.deactivated {
            try await setPassword(app, user, password, logoutDevices: changes.logoutDevices)
        }
        if let admin = changes.admin, admin != existing.isAdmin {
            try await app.database.adminUsers.setFlag(.admin, of: user, to: admin)
            flagsChanged = true
        }
        if let locked = changes.locked, locked != existing.locked {
            try await app.database.adminUsers.setFlag(.locked, of: user, to: locked)
            flagsChanged = true
        }
        if flagsChanged { await accounts.sessions.invalidate(user) }
        if let name = changes.displayname, name != existing.displayname {
            try await accounts.database.accounts.setProfileField(of: user, field: .displayname, value: name)
            try await Profiles.propagate(app, user, field: .displayname, value: name)
        }
        if let avatar = changes.avatarURL, avatar != existing.avatarURL {
            try await accounts.database.accounts.setProfileField(of: user, field: .avatarURL, value: avatar)
            try await Profiles.propagate(app, user, field: .avatarURL, value: avatar)
        }
        if changes.deactivated == true, !existing.deactivated {
            try await AccountManagement.deactivateAccount(app, user, erase: false)
        }
    }

    // MARK: admin flag

    /// `GET /_synapse/admin/v1/users/{userId}/admin`.
    static func getAdmin(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (_, record) = try await existingUser(context)
        return .json(["admin": .bool(record.isAdmin)])
    }

    /// `PUT /_synapse/admin/v1/users/{userId}/admin`, body `{"admin": bool}`: takes effect on
    /// the user's next request (their sessions re-read the flag).
    static func putAdmin(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        let body = try await context.jsonObject()
        guard let flag = body["admin"]?.boolValue else { throw MatrixError(.missingParam, "Missing key 'admin'") }
        if !flag && user == admin.userID { throw MatrixError(.invalidParam, "You may not demote yourself.") }
        try await context.app.database.adminUsers.setFlag(.admin, of: user, to: flag)
        await context.app.accounts.sessions.invalidate(user)
        context.app.logger.notice("admin \(admin.userID) set the admin flag of \(user) to \(flag)")
        return .json([:])
    }

    // MARK: password

    /// `POST /_synapse/admin/v1/reset_password/{userId}` (Synapse) and the seed's `POST
    /// /_synapse/admin/v1/users/{userId}/password`: `new_password`, `logout_devices`
    /// (default true: every device, token and pusher of the user goes).
    static func resetPassword(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (user, record) = try await existingUser(context)
        let body = try await context.jsonObject()
        guard let password = body["new_password"]?.stringValue else {
            throw MatrixError(.missingParam, "Missing new_password")
        }
        guard !password.isEmpty, password.utf8.count <= Registration.maxPasswordLength else {
            throw MatrixError(.invalidParam, "Invalid new_password")
        }
        var logout = true
        if let value = body["logout_devices"] {
            guard let flag = value.boolValue else { throw MatrixError(.invalidParam, "logout_devices must be a boolean") }
            logout = flag
        }
        guard !record.deactivated else { throw MatrixError(.invalidParam, "The user is deactivated") }
        try await setPassword(context.app, user, password, logoutDevices: logout)
        context.app.logger.notice("admin \(admin.userID) reset the password of \(user)")
        return .json([:])
    }

    /// Sets the password; with `logoutDevices` every device, token and pusher goes and the
    /// sessions end at once.
    static func setPassword(_ app: MyelinApp, _ user: UserID, _ password: String, logoutDevices: Bool) async throws {
        let accounts = app.accounts
        let hash = try await accounts.passwords.hash(password)
        try await accounts.database.accounts.setPassword(of: user, hash: hash, logoutExcept: logoutDevices ? .some(nil) : nil)
        guard logoutDevices else { return }
        await accounts.sessions.revoke(user)
        try await accounts.database.pushers.deletePushers(of: user, except: nil)
        await app.roomService.push.deliveries.reload(user)
    }

    // MARK: rooms

    /// `GET /_synapse/admin/v1/users/{userId}/joined_rooms` (Synapse).
    static func joinedRooms(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let user = try UserID(parsing: context.parameter("userId"))
        let ids = try await joinedRoomIDs(context.app, user)
        return .json(["joined_rooms": .array(ids.map { .string($0.rawValue) }), "total": .int(Int64(ids.count))])
    }

    /// `GET /_synapse/admin/v1/users/{userId}/rooms` (seed): the joined rooms with their name
    /// and member counts.
    static func rooms(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let user = try UserID(parsing: context.parameter("userId"))
        let serverName = context.app.configuration.serverName
        var rooms: [JSON] = []
        for roomID in try await joinedRoomIDs(context.app, user) {
            var entry: [String: JSON] = ["room_id": .string(roomID.rawValue)]
            if let actor = try? await context.app.roomService.existingRoom(roomID), let state = await actor.currentState {
                let joined = state.filter { $0.key.type == EventType.roomMember && $0.value.membership == MembershipState.join }
                entry["joined_members"] = .int(Int64(joined.count))
                entry["joined_local_members"] = .int(Int64(joined.filter {
                    (try? UserID(parsing: $0.key.stateKey))?.serverName.rawValue == serverName
                }.count))
                entry["name"] = state[StateKey(EventType.roomName, "")]?.content["name"]?.stringValue.map(JSON.string) ?? .null
            }
            rooms.append(.object(entry))
        }
        return .json(["rooms": .array(rooms), "total": .int(Int64(rooms.count))])
    }

    static func joinedRoomIDs(_ app: MyelinApp, _ user: UserID) async throws -> [RoomID] {
        try await app.database.memberships.rooms(of: user, membership: MembershipState.join.rawValue)
            .compactMap { try? RoomID(parsing: $0.roomID) }
            .sorted { $0.rawValue < $1.rawValue }
    }

    /// `GET /_synapse/admin/v1/users/{userId}/memberships` (Synapse): every room the server
    /// knows the user's membership of, with it.
    static func memberships(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let user = try UserID(parsing: context.parameter("userId"))
        var memberships: [String: JSON] = [:]
        for row in try await context.app.database.memberships.rooms(of: user) {
            memberships[row.roomID] = .string(row.membership)
        }
        return .json(["memberships": .object(memberships)])
    }

    /// `GET /_synapse/admin/v1/users/{userId}/pushers` (Synapse): the pushers as the client
    /// API lists them, with `user_name`.
    static func pushers(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        let pushers: [JSON] = try await context.app.database.pushers.pushers(of: user).compactMap { text in
            guard case .object(var object) = try? JSON.parse(Array(text.utf8)) else { return nil }
            object["user_name"] = .string(user.rawValue)
            return .object(object)
        }
        return .json(["pushers": .array(pushers), "total": .int(Int64(pushers.count))])
    }

    /// `GET /_synapse/admin/v1/username_available?username=` (Synapse): 200 `{"available":
    /// true}`, 400 `M_USER_IN_USE` or `M_INVALID_USERNAME`.
    static func usernameAvailable(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        guard let username = context.query["username"] else { throw MatrixError(.missingParam, "Missing username") }
        let user = try Registration.validatedNewUserID(username, serverName: context.app.configuration.serverName)
        if try await context.app.database.accounts.user(id: user) != nil {
            throw MatrixError(.userInUse, "User ID already taken.")
        }
        return .json(["available": true])
    }

    /// `GET /_synapse/admin/v1/users/{userId}/accountdata` (Synapse): the user's global and
    /// per-room account data.
    static func accountData(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (user, _) = try await existingUser(context)
        var global: [String: JSON] = [:]
        var rooms: [String: [String: JSON]] = [:]
        for entry in try await context.app.database.accountData.accountDataChanges(userID: user, since: 0) {
            let content = (try? JSON.parse(Array(entry.content.utf8))) ?? .object([:])
            if let room = entry.roomID { rooms[room, default: [:]][entry.type] = content } else { global[entry.type] = content }
        }
        return .json(["account_data": ["global": .object(global), "rooms": .object(rooms.mapValues { .object($0) })]])
    }

    // MARK: whois

    /// `GET /_synapse/admin/v1/whois/{userId}`: the client API's whois, for admins only.
    static func whois(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let target = try UserID(parsing: context.parameter("userId"))
        return try await Whois.response(context.app, target)
    }
}

extension Optional {
    /// `map` with an async transform.
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
