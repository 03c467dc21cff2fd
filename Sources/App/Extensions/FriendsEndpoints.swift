import Matrix
import Persistence
import Transport

/// The seed's friend API over `Friends`: the client API (`/_matrix/client/v1/friends...`),
/// the enhanced API (`/_synapse/enhanced/friends...`) and the federation API
/// (`/_matrix/federation/v1/friends...`, X-Matrix signed). docs/extensions.md, "Friends".
enum FriendsEndpoints {
    static let client = "/_matrix/client/v1/friends"
    static let enhanced = "/_synapse/enhanced/friends"
    static let federation = "/_matrix/federation/v1/friends"

    static func register(_ routes: inout RouteBuilder) {
        // Client API (seed 6.1).
        routes.get(client, list)
        routes.post(client + "/request", request)
        routes.post(client + "/request/{userId}/accept", acceptFromPath)
        routes.post(client + "/request/{userId}/reject", rejectFromPath)
        routes.post(client + "/request/{userId}/cancel", cancelFromPath)
        routes.get(client + "/requests/incoming", incoming)
        routes.get(client + "/requests/outgoing", outgoing)
        routes.delete(client + "/{userId}", remove)
        routes.put(client + "/{userId}/note", note)
        routes.put(client + "/{userId}/status", status)
        routes.get(client + "/{userId}/info", info)
        // Enhanced API (seed "Friend API").
        routes.get(enhanced, list)
        routes.post(enhanced + "/request", request)
        routes.post(enhanced + "/accept", acceptFromBody)
        routes.post(enhanced + "/reject", rejectFromBody)
        routes.delete(enhanced + "/{userId}", remove)
        routes.get(enhanced + "/requests", requests)
        routes.post(enhanced + "/block", block)
        routes.delete(enhanced + "/block/{userId}", unblock)
        routes.get(enhanced + "/blocked", blocked)
        routes.get(enhanced + "/categories", FriendCategories.list)
        routes.post(enhanced + "/categories", FriendCategories.create)
        routes.put(enhanced + "/categories/{categoryId}", FriendCategories.update)
        routes.delete(enhanced + "/categories/{categoryId}", FriendCategories.delete)
        routes.put(enhanced + "/{userId}/category", FriendCategories.move)
        // Federation API (seed 5.3).
        routes.get(federation + "/query/{userId}", FriendsFederation.query)
        routes.get(federation + "/relationship/{userId}/{friendId}", FriendsFederation.relationship)
        routes.post(federation + "/request", FriendsFederation.request)
    }

    static func me(_ context: RequestContext) async throws -> UserID {
        try await context.requireUser(allowGuests: false).userID
    }

    static func pathUser(_ context: RequestContext, _ name: String = "userId") throws -> UserID {
        try Friends.userID(context.parameter(name))
    }

    /// `GET /friends`: `{friends: [...], total}`.
    static func list(_ context: RequestContext) async throws -> HTTPResponse {
        try await Friends.friendsList(context.app, try await me(context))
    }

    /// `POST /friends/request` `{user_id, message?}`: `{request_id, status: "pending"}` (or,
    /// when the other side had asked first, `accepted` with the direct room).
    static func request(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        // A request notifies its target: it draws on the sender's message budget.
        try context.rateLimit("message", context.app.configuration.rateLimits.messages, user: user)
        let body = try await context.jsonObject()
        if let value = body["user_id"], value.stringValue == nil { throw MatrixError(.badJSON, "user_id must be a string") }
        let target = try Friends.userID(body["user_id"]?.stringValue)
        let message = try Friends.text(body, "message")
        let record = try await Friends.sendRequest(context.app, from: user, to: target, message: message)
        return try await requestReply(context.app, record, user)
    }

    static func requestReply(_ app: MyelinApp, _ record: FriendRequestRecord, _ user: UserID) async throws -> HTTPResponse {
        var reply: [String: JSON] = ["request_id": .string(record.requestID), "status": .string(record.state)]
        let other = try UserID(parsing: record.sender == user.rawValue ? record.target : record.sender)
        if record.state == FriendStore.accepted, let room = try await app.database.friends.friendship(of: user, with: other)?.roomID {
            reply["room_id"] = .string(room)
        }
        return .json(.object(reply))
    }

    /// `POST /friends/request/{userId}/accept`: `{room_id, status: "accepted"}`.
    static func acceptFromPath(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        return try await accept(context.app, requester: try pathUser(context), by: user)
    }

    static func accept(_ app: MyelinApp, requester: UserID, by user: UserID) async throws -> HTTPResponse {
        let record = try await Friends.accept(app, requester: requester, by: user)
        return try await requestReply(app, record, user)
    }

    /// `POST /friends/request/{userId}/reject`: `{status: "rejected"}`.
    static func rejectFromPath(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        _ = try await Friends.settle(context.app, from: try pathUser(context), to: user, as: FriendStore.rejected)
        return .json(["status": .string(FriendStore.rejected)])
    }

    /// `POST /friends/request/{userId}/cancel`: the requester withdraws, `{status: "cancelled"}`.
    static func cancelFromPath(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        _ = try await Friends.settle(context.app, from: user, to: try pathUser(context), as: FriendStore.cancelled)
        return .json(["status": .string(FriendStore.cancelled)])
    }

    /// The other user of an enhanced accept/reject body: `user_id` (the requester), or
    /// `request_id` of a request to the caller.
    static func requesterFromBody(_ context: RequestContext, _ user: UserID) async throws -> UserID {
        let body = try await context.jsonObject()
        if let id = body["request_id"]?.stringValue {
            guard id.utf8.count <= 255, let record = try await context.app.database.friends.request(id: id),
                  record.target == user.rawValue else {
                throw MatrixError(.notFound, "No such friend request")
            }
            return try UserID(parsing: record.sender)
        }
        return try Friends.userID(body["user_id"]?.stringValue)
    }

    /// `POST /_synapse/enhanced/friends/accept` `{user_id | request_id}`.
    static func acceptFromBody(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        return try await accept(context.app, requester: try await requesterFromBody(context, user), by: user)
    }

    /// `POST /_synapse/enhanced/friends/reject` `{user_id | request_id}`.
    static func rejectFromBody(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        _ = try await Friends.settle(context.app, from: try await requesterFromBody(context, user), to: user, as: FriendStore.rejected)
        return .json(["status": .string(FriendStore.rejected)])
    }

    /// `GET /friends/requests/incoming`: `{requests: [...]}`.
    static func incoming(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        return .json(["requests": .array(try await Friends.incomingList(context.app, user))])
    }

    /// `GET /friends/requests/outgoing`: `{requests: [...]}`.
    static func outgoing(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        return .json(["requests": .array(try await Friends.outgoingList(context.app, user))])
    }

    /// `GET /_synapse/enhanced/friends/requests`: the pending requests, `{requests: incoming,
    /// incoming, outgoing}`.
    static func requests(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let incoming = try await Friends.incomingList(context.app, user)
        return .json(["requests": .array(incoming), "incoming": .array(incoming),
                      "outgoing": .array(try await Friends.outgoingList(context.app, user))])
    }

    /// `DELETE /friends/{userId}`: ends the friendship on both sides; 404 when there is none.
    /// The direct room stays (as leaving a DM is the user's choice).
    static func remove(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let friend = try pathUser(context)
        guard try await context.app.database.friends.remove(user, friend) else {
            throw MatrixError(.notFound, "Not a friend")
        }
        await Friends.publish(context.app, [user, friend])
        return .json([:])
    }

    /// `PUT /friends/{userId}/note` `{note}` (at most 1000 characters; null clears).
    static func note(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let friend = try pathUser(context)
        let body = try await context.jsonObject()
        guard body["note"] != nil else { throw MatrixError(.missingParam, "note is required") }
        let note = try Friends.text(body, "note")
        guard try await context.app.database.friends.setNote(note, of: user, on: friend) else {
            throw MatrixError(.notFound, "Not a friend")
        }
        await Friends.publish(context.app, [user])
        return .json([:])
    }

    /// `PUT /friends/{userId}/status` `{status}`: `favorite`, `normal`, `blocked` (which
    /// also blocks the user, ending the friendship) or `hidden`.
    static func status(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let friend = try pathUser(context)
        let body = try await context.jsonObject()
        guard let status = body["status"]?.stringValue else { throw MatrixError(.missingParam, "status is required") }
        guard Friends.statuses.contains(status) else {
            throw MatrixError(.invalidParam, "status must be one of favorite, normal, blocked, hidden")
        }
        let store = context.app.database.friends
        guard try await store.setStatus(status, of: user, on: friend) else { throw MatrixError(.notFound, "Not a friend") }
        if status == "blocked" {
            try await store.block(friend, by: user, reason: nil, now: Clock.nowMilliseconds())
        }
        await Friends.publish(context.app, [user, friend])
        return .json([:])
    }

    /// `GET /friends/{userId}/info`: the friend with `dm_room_id`; 404 when not a friend.
    static func info(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let friend = try pathUser(context)
        guard let record = try await context.app.database.friends.friendship(of: user, with: friend) else {
            throw MatrixError(.notFound, "Not a friend")
        }
        return .json(await Friends.friendJSON(context.app, record))
    }

    /// `POST /_synapse/enhanced/friends/block` `{user_id, reason?}`.
    static func block(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let body = try await context.jsonObject()
        let other = try Friends.userID(body["user_id"]?.stringValue)
        guard other != user else { throw MatrixError(.invalidParam, "You cannot block yourself") }
        let reason = try Friends.text(body, "reason")
        try await context.app.database.friends.block(other, by: user, reason: reason, now: Clock.nowMilliseconds())
        await Friends.publish(context.app, [user, other])
        return .json(["user_id": .string(other.rawValue), "blocked": true])
    }

    /// `DELETE /_synapse/enhanced/friends/block/{userId}`; 404 when not blocked.
    static func unblock(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let other = try pathUser(context)
        guard try await context.app.database.friends.unblock(other, by: user) else {
            throw MatrixError(.notFound, "User is not blocked")
        }
        await Friends.publish(context.app, [user])
        return .json([:])
    }

    /// `GET /_synapse/enhanced/friends/blocked`: `{blocked: [{user_id, reason, blocked_at}], total}`.
    static func blocked(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await me(context)
        let list = try await context.app.database.friends.blocked(by: user, limit: Friends.listLimit).map { b -> JSON in
            .object(["user_id": .string(b.blockedID), "reason": b.reason.map { .string($0) } ?? .null, "blocked_at": .int(b.createdTS)])
        }
        return .json(["blocked": .array(list), "total": .int(Int64(list.count))])
    }
}
