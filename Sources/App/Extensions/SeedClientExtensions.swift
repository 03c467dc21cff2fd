import Matrix
import Transport

/// The seed's client extensions this part of issue 21 serves (docs/extensions.md): its
/// compatibility paths, VoIP, and private chat sessions. One registration line in
/// `Endpoints.register` reaches all three.
enum SeedClientExtensions {
    static func register(_ routes: inout RouteBuilder) {
        CompatibilityPaths.register(&routes)
        VoIPEndpoints.register(&routes)
        PrivateChat.register(&routes)
    }
}

/// The seed's `nonstandard:client` paths, each mapped onto the specification's handler that
/// does its job (the `nonstandard:e2ee` ones are `SeedKeyAliases`; `r0` forms of standard
/// paths the router already shares with `v3`).
enum CompatibilityPaths {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/client/r0/versions", Discovery.versionsList)
        routes.post("/_matrix/client/r0/refresh", Login.refresh)
        // `/account/profile/{userId}[/displayname|/avatar_url]`: the profile API under another name.
        routes.client(.get, "/account/profile/{userId}", Profiles.getProfile)
        routes.client(.get, "/account/profile/{userId}/displayname", Profiles.getDisplayname)
        routes.client(.put, "/account/profile/{userId}/displayname", Profiles.setDisplayname)
        routes.client(.get, "/account/profile/{userId}/avatar_url", Profiles.getAvatarURL)
        routes.client(.put, "/account/profile/{userId}/avatar_url", Profiles.setAvatarURL)
        // A redaction without a transaction id (each call redacts; the POST form exists already).
        routes.client(.put, "/rooms/{roomId}/redact/{eventId}", RoomEvents.redactEventWithoutTransaction)
        routes.client(.get, "/rooms/{roomId}/join", joinState)
        routes.client(.post, "/user_directory/list", listUsers)
    }

    /// `GET /rooms/{roomId}/join`: the seed's "room join stream" (a WebSocket there). Here a
    /// single answer, without side effects: the requester's membership of the room now
    /// (`leave` when they never had one). Joining stays `POST`.
    static func joinState(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let current = try await context.app.roomService.membership(requester.userID, in: roomID)
        var body: [String: JSON] = ["room_id": .string(roomID.rawValue), "user_id": .string(requester.userID.rawValue),
                                    "membership": .string(current?.membership ?? MembershipState.leave.rawValue)]
        if let current { body["event_id"] = .string(current.eventID) }
        return .json(.object(body))
    }

    /// The deepest `from` offset of `user_directory/list` (each page reads the rows before it).
    static let maxListOffset = 10_000

    /// `POST /user_directory/list` (`{"limit", "from"}`): the users the requester may find in
    /// the user directory (the same visibility as `user_directory/search`), in user-id order,
    /// `next_batch` while more follow.
    static func listUsers(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        let limit = try RequestBounds.count(body["limit"], "limit", default: 10, max: 100, lenient: true)
        var offset = 0
        if let from = body["from"], !from.isNull {
            guard let text = from.stringValue, let value = Int(text), value >= 0, value <= maxListOffset else {
                throw MatrixError(.invalidParam, "from must be a next_batch token of this endpoint")
            }
            offset = value
        }
        let accounts = context.app.accounts
        let scope = context.app.configuration.userDirectory.searchAllUsers ? nil : requester.userID
        let users = try await accounts.database.accounts.searchUsers(term: "", serverName: accounts.serverName,
                                                                     limit: offset + limit + 1, visibleTo: scope)
        let page = users.dropFirst(offset).prefix(limit)
        let results: [JSON] = page.map { user in
            var entry: [String: JSON] = ["user_id": .string(user.userID)]
            if let name = user.displayname { entry["display_name"] = .string(name) }
            if let avatar = user.avatarURL { entry["avatar_url"] = .string(avatar) }
            return .object(entry)
        }
        var answer: [String: JSON] = ["results": .array(results)]
        if users.count > offset + limit, offset + limit <= maxListOffset { answer["next_batch"] = .string(String(offset + limit)) }
        return .json(.object(answer))
    }
}
