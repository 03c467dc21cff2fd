import Matrix
import Persistence
import Transport

/// The seed's friend federation API (5.3), each request X-Matrix signed (`requireServer`).
/// A server learns only about friendships of its own users: `query` lists the user's friends
/// on the asking server, `relationship` answers for a pair with one user on each side.
enum FriendsFederation {
    static func localUser(_ context: RequestContext, _ text: String) throws -> UserID {
        let user = try Friends.userID(text)
        guard user.serverName == context.app.localServer else { throw MatrixError(.invalidParam, "\(text) is not a user of this server") }
        return user
    }

    /// `GET /_matrix/federation/v1/friends/query/{userId}`: `{user_id, friends}`.
    static func query(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await context.requireServer()
        let user = try localUser(context, context.parameter("userId"))
        let friends = try await context.app.database.friends.friends(of: user, limit: Friends.listLimit)
            .filter { (try? UserID(parsing: $0.friendID))?.serverName == origin }
        return .json(["user_id": .string(user.rawValue), "friends": .array(friends.map { .string($0.friendID) })])
    }

    /// `GET /_matrix/federation/v1/friends/relationship/{userId}/{friendId}`: `{are_friends, since?}`.
    static func relationship(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await context.requireServer()
        let a = try Friends.userID(context.parameter("userId"))
        let b = try Friends.userID(context.parameter("friendId"))
        let local = context.app.localServer
        guard (a.serverName == local && b.serverName == origin) || (b.serverName == local && a.serverName == origin) else {
            throw MatrixError(.forbidden, "One user must be of this server and the other of yours")
        }
        let (mine, theirs) = a.serverName == local ? (a, b) : (b, a)
        guard let record = try await context.app.database.friends.friendship(of: mine, with: theirs) else {
            return .json(["are_friends": false])
        }
        return .json(["are_friends": true, "since": .int(record.sinceTS)])
    }

    /// `POST /_matrix/federation/v1/friends/request` `{requester, target, message?, room_id?}`:
    /// a pending request from the origin's user to a local one, `{request_id, status: "pending"}`;
    /// when the local user had asked the remote one, an acceptance (`status: "accepted"`), the
    /// local user joining `room_id`, the direct room the acceptor made.
    static func request(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await context.requireServer()
        let body = try await context.jsonObject()
        let requester = try Friends.userID(body["requester"]?.stringValue, field: "requester")
        guard requester.serverName == origin else { throw MatrixError(.forbidden, "requester is not a user of your server") }
        let target = try localUser(context, body["target"]?.stringValue ?? "")
        let message = try Friends.text(body, "message")
        // With `room_id` (our extension): the direct room made by a remote acceptor.
        let room = try body["room_id"]?.stringValue.map { try RoomID(parsing: $0) }
        let record = try await Friends.sendRequest(context.app, from: requester, to: target, message: message, offeredRoom: room)
        return .json(["request_id": .string(record.requestID), "status": .string(record.state)])
    }
}
