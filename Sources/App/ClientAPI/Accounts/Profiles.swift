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
            if let name = user.displayname { body["displayname"] = .string(name) }
            if let avatar = user.avatarURL { body["avatar_url"] = .string(avatar) }
            return .json(.object(body))
        }
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
                return .json([:])
            }
        }
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
