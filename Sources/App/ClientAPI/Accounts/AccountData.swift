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
        routes.client(.put, "/user/{userId}/account_data/{type}") { context in
            try await put(context, room: false)
        }
        routes.client(.get, "/user/{userId}/account_data/{type}") { context in
            try await get(context, room: false)
        }
        routes.client(.put, "/user/{userId}/rooms/{roomId}/account_data/{type}") { context in
            try await put(context, room: true)
        }
        routes.client(.get, "/user/{userId}/rooms/{roomId}/account_data/{type}") { context in
            try await get(context, room: true)
        }
        routes.client(.get, "/user/{userId}/rooms/{roomId}/tags") { context in
            let (accounts, user, room) = try await owner(context, room: true, verb: "read")
            let stored = try await accounts.database.accountData.accountData(userID: user, roomID: room, type: EventType.tag)
            let tags = try stored.map { try JSON.parse(Array($0.utf8))["tags"] } ?? nil
            return .json(["tags": tags ?? .object([:])])
        }
        routes.client(.put, "/user/{userId}/rooms/{roomId}/tags/{tag}") { context in
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
        routes.client(.delete, "/user/{userId}/rooms/{roomId}/tags/{tag}") { context in
            let (accounts, user, room) = try await owner(context, room: true, verb: "remove tags for")
            let tag = context.parameter("tag")
            try await updateTags(accounts, user: user, room: room) { $0[tag] = nil }
            return .json([:])
        }
    }

    /// Authenticates and checks that the path's user is the requester; validates the room id.
    static func owner(_ context: RequestContext, room: Bool, verb: String) async throws
        -> (Accounts, UserID, RoomID?) {
        let accounts = context.app.accounts
        let requester = try await accounts.authenticate(context)
        let target = try UserID(parsing: context.parameter("userId"))
        guard target == requester.userID else {
            throw MatrixError(.forbidden, "Cannot \(verb) account data for other users.")
        }
        let roomID = room ? try RoomID(parsing: context.parameter("roomId")) : nil
        return (accounts, target, roomID)
    }

    static func put(_ context: RequestContext, room: Bool) async throws -> HTTPResponse {
        let (accounts, user, roomID) = try await owner(context, room: room, verb: "add")
        let type = context.parameter("type")
        guard !type.isEmpty, type.utf8.count <= 255 else { throw MatrixError(.invalidParam, "Invalid account data type") }
        if type == EventType.fullyRead && room {
            throw MatrixError(.badJSON, "Cannot set m.fully_read through this API; use /rooms/{roomId}/read_markers",
                              status: 405)
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
