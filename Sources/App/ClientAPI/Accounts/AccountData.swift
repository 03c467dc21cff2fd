import Actors
import Matrix
import Persistence
import Transport

/// Global and per-room account data (`/user/{userId}/account_data/{type}`,
/// `/user/{userId}/rooms/{roomId}/account_data/{type}`) and room tags
/// (`/user/{userId}/rooms/{roomId}/tags`), spec: client-server API, "Client config" and
/// "Room tagging". Each write takes a position on the account-data stream, which sync reads;
/// tags are the room's `m.tag` account data, as sync delivers them.
enum AccountData {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.put, "/user/{userId}/account_data/{type}", setAccountData)
        routes.client(.get, "/user/{userId}/account_data/{type}", getAccountData)
        routes.client(.put, "/user/{userId}/rooms/{roomId}/account_data/{type}", setRoomAccountData)
        routes.client(.get, "/user/{userId}/rooms/{roomId}/account_data/{type}", getRoomAccountData)
        routes.client(.get, "/user/{userId}/rooms/{roomId}/tags", getTags)
        routes.client(.put, "/user/{userId}/rooms/{roomId}/tags/{tag}", setTag)
        routes.client(.delete, "/user/{userId}/rooms/{roomId}/tags/{tag}", deleteTag)
    }

    /// `PUT /user/{userId}/account_data/{type}`: sets global account data.
    static func setAccountData(_ context: RequestContext) async throws -> HTTPResponse {
        try await put(context, room: false)
    }

    /// `GET /user/{userId}/account_data/{type}`: one of the requester's global account data.
    static func getAccountData(_ context: RequestContext) async throws -> HTTPResponse {
        try await get(context, room: false)
    }

    /// `PUT /user/{userId}/rooms/{roomId}/account_data/{type}`: sets room account data.
    static func setRoomAccountData(_ context: RequestContext) async throws -> HTTPResponse {
        try await put(context, room: true)
    }

    /// `GET /user/{userId}/rooms/{roomId}/account_data/{type}`: one of the requester's room account data.
    static func getRoomAccountData(_ context: RequestContext) async throws -> HTTPResponse {
        try await get(context, room: true)
    }

    /// `GET /user/{userId}/rooms/{roomId}/tags`: the requester's tags on a room.
    static func getTags(_ context: RequestContext) async throws -> HTTPResponse {
        let (accounts, user, room) = try await owner(context, room: true, verb: "read")
        let stored = try await accounts.database.accountData.accountData(userID: user, roomID: room, type: EventType.tag)
        let tags = try stored.map { try JSON.parse(Array($0.utf8))["tags"] } ?? nil
        return .json(["tags": tags ?? .object([:])])
    }

    /// `PUT /user/{userId}/rooms/{roomId}/tags/{tag}`: adds (or updates) a tag on a room.
    static func setTag(_ context: RequestContext) async throws -> HTTPResponse {
        let (accounts, user, room) = try await owner(context, room: true, verb: "add tags for")
        let tag = context.parameter("tag")
        guard tag.utf8.count <= 255 else { throw MatrixError(.invalidParam, "Tag is too long") }
        let content = try await context.jsonObject()
        if let order = content["order"], order.doubleValue == nil {
            throw MatrixError(.badJSON, "order must be a number")
        }
        try await updateTags(accounts, user: user, room: room) { $0[tag] = .object(content) }
        return .json([:])
    }

    /// `DELETE /user/{userId}/rooms/{roomId}/tags/{tag}`: removes a tag from a room.
    static func deleteTag(_ context: RequestContext) async throws -> HTTPResponse {
        let (accounts, user, room) = try await owner(context, room: true, verb: "remove tags for")
        let tag = context.parameter("tag")
        try await updateTags(accounts, user: user, room: room) { $0[tag] = nil }
        return .json([:])
    }

    /// Authenticates and checks that the path's user is the requester; validates the room id.
    static func owner(_ context: RequestContext, room: Bool, verb: String) async throws
        -> (Accounts, UserID, RoomID?) {
        let requester = try await context.requireSelf("Cannot \(verb) account data for other users.")
        let roomID = room ? try RoomID(parsing: context.parameter("roomId")) : nil
        return (context.app.accounts, requester.userID, roomID)
    }

    static func put(_ context: RequestContext, room: Bool) async throws -> HTTPResponse {
        let (accounts, user, roomID) = try await owner(context, room: room, verb: "add")
        let type = context.parameter("type")
        guard !type.isEmpty, type.utf8.count <= 255 else { throw MatrixError(.invalidParam, "Invalid account data type") }
        if type == EventType.fullyRead && room {
            throw MatrixError(.badJSON, "Cannot set m.fully_read through this API; use /rooms/{roomId}/read_markers",
                              status: 405)
        }
        if type == PushRulesService.accountDataType && !room {
            // The push rules API keeps the rules valid and its cache true (as Synapse).
            throw MatrixError(.badJSON, "Cannot set m.push_rules through this API; use /pushrules", status: 405)
        }
        let content = try await context.jsonObject()
        let text = JSON.object(content).encodedString
        let position = try await accounts.accountDataStream.withNextPosition { position in
            try await accounts.database.accountData.putAccountData(userID: user, roomID: roomID, type: type,
                                                                  content: text, position: position)
            return position
        }
        // Wakes the user's long-polls (sync delivers account data).
        context.app.roomService.fanout.notify([user], of: StreamChange(.accountData, position))
        return .json([:])
    }

    static func get(_ context: RequestContext, room: Bool) async throws -> HTTPResponse {
        let (accounts, user, roomID) = try await owner(context, room: room, verb: "get")
        if roomID == nil && context.parameter("type") == PushRulesService.accountDataType {
            // The effective rules, defaults included, stored or not (as Synapse).
            return .json(["global": .object(try await context.app.pushRules.ruleSet(for: user).clientJSON)])
        }
        guard let stored = try await accounts.database.accountData.accountData(
            userID: user, roomID: roomID, type: context.parameter("type")) else {
            throw MatrixError(.notFound, "Account data not found")
        }
        return HTTPResponse(contentType: "application/json", bytes: Array(stored.utf8))
    }

    static func updateTags(_ accounts: Accounts, user: UserID, room: RoomID?,
                           _ change: @escaping @Sendable (inout [String: JSON]) -> Void) async throws {
        try await accounts.accountDataStream.withNextPosition { position in
            try await accounts.database.accountData.updateAccountData(userID: user, roomID: room, type: EventType.tag,
                                                                     position: position) { current in
                var tags = try current.map { try JSON.parse(Array($0.utf8))["tags"]?.objectValue ?? [:] } ?? [:]
                change(&tags)
                return JSON.object(["tags": .object(tags)]).encodedString
            }
        }
    }
}
