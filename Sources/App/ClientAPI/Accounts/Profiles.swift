import Actors
import Matrix
import Persistence
import Transport

/// `GET /profile/{userId}` and `GET/PUT /profile/{userId}/displayname|avatar_url`
/// (spec: client-server API, "Profiles"). Reading needs no token (Synapse's default);
/// only the owner may change a profile. Remote profiles come with federation (404 now).
/// Propagation into member events comes with rooms.
enum Profiles {
    static let maxDisplaynameLength = 256
    static let maxAvatarURLLength = 1000

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.put, "/profile/{userId}/displayname", setDisplayname)
        routes.client(.get, "/profile/{userId}/displayname", getDisplayname)
        routes.client(.put, "/profile/{userId}/avatar_url", setAvatarURL)
        routes.client(.get, "/profile/{userId}/avatar_url", getAvatarURL)
        routes.client(.get, "/profile/{userId}", getProfile)
        // Custom fields: `displayname` and `avatar_url` take their literal routes above.
        routes.client(.put, "/profile/{userId}/{keyName}", setCustomField)
        routes.client(.get, "/profile/{userId}/{keyName}", getCustomField)
        routes.client(.delete, "/profile/{userId}/{keyName}", deleteCustomField)
    }

    /// `PUT /profile/{userId}/displayname`: sets the requester's display name.
    static func setDisplayname(_ context: RequestContext) async throws -> HTTPResponse {
        try await set(.displayname, context)
    }

    /// `GET /profile/{userId}/displayname`: a local user's display name.
    static func getDisplayname(_ context: RequestContext) async throws -> HTTPResponse {
        try await get(.displayname, context)
    }

    /// `PUT /profile/{userId}/avatar_url`: sets the requester's avatar.
    static func setAvatarURL(_ context: RequestContext) async throws -> HTTPResponse {
        try await set(.avatarURL, context)
    }

    /// `GET /profile/{userId}/avatar_url`: a local user's avatar.
    static func getAvatarURL(_ context: RequestContext) async throws -> HTTPResponse {
        try await get(.avatarURL, context)
    }

    /// `GET /profile/{userId}`: a local user's whole profile.
    static func getProfile(_ context: RequestContext) async throws -> HTTPResponse {
        if let remote = try remoteUser(context) {
            return .json(try await FederationQueries.remoteProfile(context.app, remote))
        }
        let (id, user) = try await profileOwner(context)
        var body: [String: JSON] = [:]
        for (key, value) in try await context.app.database.profileFields.profileFields(of: id) {
            body[key] = try JSON.parse(Array(value.utf8))
        }
        if let name = user.displayname { body["displayname"] = .string(name) }
        if let avatar = user.avatarURL { body["avatar_url"] = .string(avatar) }
        return .json(.object(body))
    }

    static func get(_ field: AccountStore.ProfileField, _ context: RequestContext) async throws -> HTTPResponse {
        if let remote = try remoteUser(context) {
            let profile = try await FederationQueries.remoteProfile(context.app, remote, field: field.rawValue)
            return .json(.object(profile[field.rawValue]?.stringValue.map { [field.rawValue: .string($0)] } ?? [:]))
        }
        let (_, user) = try await profileOwner(context)
        let value = field == .displayname ? user.displayname : user.avatarURL
        return .json(.object(value.map { [field.rawValue: .string($0)] } ?? [:]))
    }

    static func set(_ field: AccountStore.ProfileField, _ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireSelf("Cannot set another user's \(field.rawValue)")
        let target = requester.userID
        // Each change is a member event in every joined room.
        try context.rateLimit("profile", accounts.configuration.rateLimits.profile, user: requester.userID)
        let body = try await context.jsonObject()
        let value: String?
        switch body[field.rawValue] {
        case .string(let text)?: value = text.isEmpty && field == .avatarURL ? nil : text
        case .null?, nil:
            guard field == .avatarURL else { throw MatrixError(.badJSON, "Missing displayname") }
            value = nil
        default: throw MatrixError(.badJSON, "\(field.rawValue) must be a string")
        }
        if let value {
            let limit = field == .displayname ? maxDisplaynameLength : maxAvatarURLLength
            guard value.utf8.count <= limit else {
                throw MatrixError(.invalidParam, "\(field.rawValue) is too long (max \(limit))")
            }
            // Any string as the avatar, as Synapse stores it (clients and SyTest set others
            // than mxc:// URIs); bounded above.
        }
        try await accounts.database.accounts.setProfileField(of: target, field: field, value: value)
        try await propagate(context.app, target, field: field, value: value)
        return .json([:])
    }

    /// A new display name or avatar goes into the member event of every room the user is
    /// joined to, as Synapse does (the rest of the member event's content is kept).
    static func propagate(_ app: MyelinApp, _ user: UserID, field: AccountStore.ProfileField, value: String?) async throws {
        let userID = user.rawValue
        let rooms = try await app.database.memberships.rooms(of: user, membership: MembershipState.join.rawValue)
        for membership in rooms {
            guard let roomID = try? RoomID(parsing: membership.roomID) else { continue }
            let actor = try await app.roomService.rooms.room(roomID)
            var content = await actor.stateEvent(.member(userID))?.content ?? ["membership": MembershipState.join.json]
            guard content["membership"]?.stringValue == MembershipState.join else { continue }
            content[field.rawValue] = value.map { .string($0) }
            content["reason"] = nil
            do {
                _ = try await app.roomService.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: userID,
                                                              content: content), in: roomID)
            } catch let error as MatrixError {
                // A room whose rules refuse the change (e.g. a ban raced it) keeps the old profile.
                app.logger.warning("profile change of \(userID) not applied in \(roomID): \(error)")
            }
        }
    }

    // MARK: custom fields (spec v1.16, MSC4133)

    static let maxProfileBytes = 65_536
    static let maxKeyBytes = 255

    /// `PUT /profile/{userId}/{keyName}`: sets one of the requester's custom fields.
    static func setCustomField(_ context: RequestContext) async throws -> HTTPResponse {
        let (target, key) = try await customFieldOwner(context)
        let body = try await context.jsonObject()
        guard body.count == 1, let value = body[key] else {
            throw MatrixError(.badJSON, "The body must hold exactly the key \(key)")
        }
        let stored = try await context.app.database.profileFields.setProfileField(
            of: target, key: key, value: value.encodedString, maxTotalBytes: maxProfileBytes)
        guard stored else { throw MatrixError("M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB", status: 400) }
        return .json([:])
    }

    /// `GET /profile/{userId}/{keyName}`: one custom field of a local user's profile.
    static func getCustomField(_ context: RequestContext) async throws -> HTTPResponse {
        let (id, _) = try await profileOwner(context)
        let key = context.parameter("keyName")
        let fields = try await context.app.database.profileFields.profileFields(of: id)
        guard let stored = fields.first(where: { $0.key == key }) else {
            throw MatrixError(.notFound, "Profile field not found")
        }
        return .json([key: try JSON.parse(Array(stored.value.utf8))])
    }

    /// `DELETE /profile/{userId}/{keyName}`: removes one of the requester's custom fields.
    static func deleteCustomField(_ context: RequestContext) async throws -> HTTPResponse {
        let (target, key) = try await customFieldOwner(context)
        _ = try await context.app.database.profileFields.setProfileField(of: target, key: key, value: nil,
                                                                      maxTotalBytes: maxProfileBytes)
        return .json([:])
    }

    static func customFieldOwner(_ context: RequestContext) async throws -> (UserID, String) {
        let target = try await context.requireSelf("Cannot change another user's profile").userID
        let key = context.parameter("keyName")
        guard !key.isEmpty, key.utf8.count <= maxKeyBytes else {
            throw MatrixError("M_KEY_TOO_LARGE", "Profile keys are at most 255 bytes", status: 400)
        }
        return (target, key)
    }

    /// The local, active user of the path, or 404.
    /// The `{userId}` of the path when it is another server's user (asked over federation).
    static func remoteUser(_ context: RequestContext) throws -> UserID? {
        let target = try UserID(parsing: context.parameter("userId"))
        return target.serverName.rawValue == context.app.configuration.serverName ? nil : target
    }

    static func profileOwner(_ context: RequestContext) async throws -> (id: UserID, user: UserRecord) {
        let target = try UserID(parsing: context.parameter("userId"))
        guard target.serverName.rawValue == context.app.configuration.serverName,
              let user = try await context.app.database.accounts.user(id: target), !user.deactivated else {
            throw MatrixError(.notFound, "Profile was not found")
        }
        return (target, user)
    }
}
