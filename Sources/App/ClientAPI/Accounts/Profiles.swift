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
        routes.client(.get, "/profile/{userId}") { context in
            let user = try await profileOwner(context)
            var body: [String: JSON] = [:]
            for (key, value) in try await context.app.database.profileFields.profileFields(userID: user.userID) {
                body[key] = try JSON.parse(Array(value.utf8))
            }
            if let name = user.displayname { body["displayname"] = .string(name) }
            if let avatar = user.avatarURL { body["avatar_url"] = .string(avatar) }
            return .json(.object(body))
        }
        registerCustomFields(&routes)
        for field in [AccountStore.ProfileField.displayname, .avatarURL] {
            routes.client(.get, "/profile/{userId}/\(field.rawValue)") { context in
                let user = try await profileOwner(context)
                let value = field == .displayname ? user.displayname : user.avatarURL
                return .json(.object(value.map { [field.rawValue: .string($0)] } ?? [:]))
            }
            routes.client(.put, "/profile/{userId}/\(field.rawValue)") { context in
                let accounts = context.app.accounts
                let requester = try await accounts.authenticate(context)
                let target = try UserID(parsing: context.parameter("userId"))
                guard target == requester.userID else {
                    throw MatrixError(.forbidden, "Cannot set another user's \(field.rawValue)")
                }
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
                    if field == .avatarURL { _ = try MXCURI(parsing: value) }
                }
                try await accounts.database.accounts.setProfileField(userID: target.rawValue, field: field, value: value)
                try await propagate(context.app, target, field: field, value: value)
                return .json([:])
            }
        }
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

    /// `GET/PUT/DELETE /profile/{userId}/{keyName}` for keys other than `displayname` and
    /// `avatar_url` (their literal routes take precedence in the router).
    static func registerCustomFields(_ routes: inout RouteBuilder) {
        routes.client(.get, "/profile/{userId}/{keyName}") { context in
            let user = try await profileOwner(context)
            let key = context.parameter("keyName")
            let fields = try await context.app.database.profileFields.profileFields(userID: user.userID)
            guard let stored = fields.first(where: { $0.key == key }) else {
                throw MatrixError(.notFound, "Profile field not found")
            }
            return .json([key: try JSON.parse(Array(stored.value.utf8))])
        }
        routes.client(.put, "/profile/{userId}/{keyName}") { context in
            let (target, key) = try await customFieldOwner(context)
            let body = try await context.jsonObject()
            guard body.count == 1, let value = body[key] else {
                throw MatrixError(.badJSON, "The body must hold exactly the key \(key)")
            }
            let stored = try await context.app.database.profileFields.setProfileField(
                userID: target.rawValue, key: key, value: value.encodedString, maxTotalBytes: maxProfileBytes)
            guard stored else { throw MatrixError("M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB", status: 400) }
            return .json([:])
        }
        routes.client(.delete, "/profile/{userId}/{keyName}") { context in
            let (target, key) = try await customFieldOwner(context)
            _ = try await context.app.database.profileFields.setProfileField(userID: target.rawValue, key: key, value: nil,
                                                                          maxTotalBytes: maxProfileBytes)
            return .json([:])
        }
    }

    static func customFieldOwner(_ context: RequestContext) async throws -> (UserID, String) {
        let requester = try await context.app.accounts.authenticate(context)
        let target = try UserID(parsing: context.parameter("userId"))
        guard target == requester.userID else { throw MatrixError(.forbidden, "Cannot change another user's profile") }
        let key = context.parameter("keyName")
        guard !key.isEmpty, key.utf8.count <= maxKeyBytes else {
            throw MatrixError("M_KEY_TOO_LARGE", "Profile keys are at most 255 bytes", status: 400)
        }
        return (target, key)
    }

    /// The local, active user of the path, or 404.
    static func profileOwner(_ context: RequestContext) async throws -> UserRecord {
        let target = try UserID(parsing: context.parameter("userId"))
        guard target.serverName.rawValue == context.app.configuration.serverName,
              let user = try await context.app.database.accounts.user(id: target.rawValue), !user.deactivated else {
            throw MatrixError(.notFound, "Profile was not found")
        }
        return user
    }
}
