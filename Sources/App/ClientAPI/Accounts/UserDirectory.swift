import Matrix
import Persistence
import Transport

/// `POST /user_directory/search` (spec: client-server API, "User directory"). By default, as
/// in Synapse, the searcher finds users who share a joined room with them and users joined to
/// a room published in the directory; `user_directory.search_all_users: true` finds every
/// local active user. Memberships are read at the moment of the search, so a user who just
/// joined a shared room is found at once.
enum UserDirectory {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/user_directory/search", search)
    }

    /// `POST /user_directory/search`: users the requester may find whose id or name matches.
    static func search(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        guard let term = body["search_term"]?.stringValue else { throw MatrixError(.missingParam, "Missing search_term") }
        let limit = try RequestBounds.count(body["limit"], "limit", default: 10, max: 1000, lenient: true)
        guard !term.isEmpty else { return .json(["results": .array([]), "limited": false]) }
        let scope = context.app.configuration.userDirectory.searchAllUsers ? nil : requester.userID
        let users = try await accounts.database.accounts.searchUsers(term: term, serverName: accounts.serverName,
                                                                     limit: limit + 1, visibleTo: scope)
        let results: [JSON] = users.prefix(limit).map { user in
            var entry: [String: JSON] = ["user_id": .string(user.userID)]
            if let name = user.displayname { entry["display_name"] = .string(name) }
            if let avatar = user.avatarURL { entry["avatar_url"] = .string(avatar) }
            return .object(entry)
        }
        return .json(["results": .array(results), "limited": .bool(users.count > limit)])
    }
}
