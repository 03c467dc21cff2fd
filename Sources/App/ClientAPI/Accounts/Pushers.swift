import Matrix
import Persistence
import Transport

/// `POST /pushers/set`, `GET /pushers` and `GET /notifications` (client-server API "Push
/// Notifications"): pushers are stored (`PusherStore`) and HTTP ones delivered to by
/// `PusherDeliveries`; notifications are the push pipeline's recorded outcomes
/// (`PushActionStore`). docs/push.md, "Pushers and notifications".
enum Pushers {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/pushers/set", setPusher)
        routes.client(.get, "/pushers", listPushers)
        routes.client(.get, "/notifications", notifications)
    }

    /// The only path a push gateway URL may have (push gateway API).
    static let notifyPath = "/_matrix/push/v1/notify"

    /// `POST /pushers/set`: adds, replaces, or (with `kind: null`) removes a pusher.
    static func setPusher(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let body = try await context.jsonObject()
        guard let appID = body["app_id"]?.stringValue, let pushkey = body["pushkey"]?.stringValue else {
            throw MatrixError(.missingParam, "Missing app_id or pushkey")
        }
        // The specification bounds app_id to 64 characters and pushkey to 512 bytes.
        guard !appID.isEmpty, appID.count <= 64, !pushkey.isEmpty, pushkey.utf8.count <= 512 else {
            throw MatrixError(.invalidParam, "app_id must be 1 to 64 characters and pushkey 1 to 512 bytes")
        }
        let app = context.app
        let store = app.database.pushers
        if body["kind"] == nil || body["kind"] == .null {
            try await store.deletePusher(user: requester.userID, appID: appID, pushkey: pushkey)
            await app.roomService.push.deliveries.reload(requester.userID)
            return .json([:])
        }
        guard let kind = body["kind"]?.stringValue else { throw MatrixError(.invalidParam, "kind must be a string or null") }
        switch kind {
        case "http": break
        case "email":
            // Synapse answers this when the address is not one of the account's: here no
            // address is, as this server sends no email.
            throw MatrixError("M_THREEPID_NOT_FOUND", "Email pushers are not supported: this server sends no email",
                              status: 400)
        default:
            throw MatrixError(.invalidParam, "Unknown pusher kind \(kind.prefix(32)): only http is supported")
        }
        var pusher: [String: JSON] = ["app_id": .string(appID), "pushkey": .string(pushkey), "kind": .string(kind)]
        for key in ["app_display_name", "device_display_name", "lang"] {
            guard let value = body[key]?.stringValue else { throw MatrixError(.missingParam, "Missing \(key)") }
            guard value.utf8.count <= 1024 else { throw MatrixError(.invalidParam, "\(key) too long") }
            pusher[key] = .string(value)
        }
        if let tag = body["profile_tag"], tag != .null {
            guard let tag = tag.stringValue, tag.utf8.count <= 1024 else { throw MatrixError(.invalidParam, "Bad profile_tag") }
            pusher["profile_tag"] = .string(tag)
        }
        guard let data = body["data"]?.objectValue else { throw MatrixError(.missingParam, "Missing data") }
        guard let url = data["url"] else { throw MatrixError(.missingParam, "'url' required in data for HTTP pusher") }
        try validateGatewayURL(url)
        if let format = data["format"], format != .null, format.stringValue != "event_id_only" {
            throw MatrixError(.invalidParam, "data.format must be event_id_only when present")
        }
        pusher["data"] = .object(data)
        let json = JSON.object(pusher).encodedString
        guard json.utf8.count <= 16_384 else { throw MatrixError(.tooLarge, "Pusher too large", status: 413) }
        let others = try await store.setPusher(user: requester.userID, appID: appID, pushkey: pushkey,
                                               device: requester.deviceID, json: json,
                                               append: body["append"]?.boolValue ?? false, now: Clock.nowMilliseconds())
        let deliveries = app.roomService.push.deliveries
        await deliveries.reload(requester.userID)
        for other in Set(others) { if let user = try? UserID(parsing: other) { await deliveries.reload(user) } }
        return .json([:])
    }

    /// An absolute http(s) URL whose path is the push gateway's notify path (as Synapse checks).
    static func validateGatewayURL(_ value: JSON) throws {
        guard let url = value.stringValue, url.utf8.count <= 2048 else {
            throw MatrixError(.invalidParam, "data.url must be a URL of at most 2048 bytes")
        }
        guard let request = HTTPClientRequest(url: url) else {
            throw MatrixError(.invalidParam, "data.url must be an absolute http(s) URL")
        }
        let path = request.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard path == notifyPath else { throw MatrixError(.invalidParam, "'url' must have a path of '\(notifyPath)'") }
    }

    /// `GET /pushers`: the requester's pushers.
    static func listPushers(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let stored = try await context.app.database.pushers.pushers(of: requester.userID)
        return .json(["pushers": .array(stored.compactMap { try? JSON.parse(Array($0.utf8)) })])
    }

    /// The pushers set from these devices go with them (logout, device deletion), as in Synapse.
    static func removePushers(of user: UserID, devices: [String], app: MyelinApp) async throws {
        guard try await app.database.pushers.deletePushers(of: user, devices: devices) > 0 else { return }
        await app.roomService.push.deliveries.reload(user)
    }

    /// Notifications a page holds at most.
    static let maxLimit = 1000

    /// `GET /notifications`: the events that notified the requester, newest first; `from` is
    /// a previous answer's `next_token`, `only=highlight` keeps the highlights.
    static func notifications(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let query = context.query
        var before: Int64?
        if let from = query["from"], !from.isEmpty {
            guard let position = Int64(from), position > 0 else { throw MatrixError(.invalidParam, "Invalid from token") }
            before = position
        }
        var limit = 50
        if let text = query["limit"] {
            guard let value = Int(text), value >= 0 else { throw MatrixError(.invalidParam, "limit must be a non-negative integer") }
            limit = min(max(value, 1), maxLimit)
        }
        let onlyHighlight = query["only"]?.split(separator: ",").contains("highlight") ?? false
        let found = try await context.app.database.pushActions.notifications(of: requester.userID, before: before, limit: limit,
                                                                              onlyHighlight: onlyHighlight)
        var notifications: [JSON] = []
        for notification in found {
            guard let event = try? JSON.parse(notification.clientJSON),
                  let actions = try? JSON.parse(Array(notification.action.actions.utf8)) else { continue }
            notifications.append([
                "actions": actions, "event": event, "read": .bool(notification.read),
                "room_id": .string(notification.action.roomID), "ts": .int(notification.action.ts),
            ])
        }
        var body: [String: JSON] = ["notifications": .array(notifications)]
        if found.count == limit, let last = found.last { body["next_token"] = .string(String(last.action.streamOrdering)) }
        return .json(.object(body))
    }
}
