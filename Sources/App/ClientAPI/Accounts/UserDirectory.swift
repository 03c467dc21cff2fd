import Matrix
import Persistence
import Transport

/// `POST /user_directory/search` (spec: client-server API, "User directory"). Synapse's
/// default answers only with users who share a room with the searcher or sit in a public
/// room; rooms do not exist yet, so until the rooms issue adds that membership query only
/// `user_directory.search_all_users: true` returns anyone (every local active user, as
/// Synapse's option of the same name does).
enum UserDirectory {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/user_directory/search") { context in
            let accounts = context.app.accounts
            _ = try await accounts.authenticate(context)
            let body = try await context.jsonObject()
            guard let term = body["search_term"]?.stringValue else { throw MatrixError(.missingParam, "Missing search_term") }
            let limit = Int(max(0, min(body["limit"]?.intValue ?? 10, 1000)))
            guard context.app.configuration.userDirectory.searchAllUsers, !term.isEmpty else {
                return .json(["results": .array([]), "limited": false])
            }
            let users = try await accounts.database.accounts.searchUsers(term: term, serverName: accounts.serverName, limit: limit + 1)
            let results: [JSON] = users.prefix(limit).map { user in
                var entry: [String: JSON] = ["user_id": .string(user.userID)]
                if let name = user.displayname { entry["display_name"] = .string(name) }
                if let avatar = user.avatarURL { entry["avatar_url"] = .string(avatar) }
                return .object(entry)
            }
            return .json(["results": .array(results), "limited": .bool(users.count > limit)])
        }
    }
}
