import Matrix
import Persistence
import Transport

/// `POST /pushers/set` and `GET /pushers` (client-server API "Push Notifications"): the
/// pushers are stored (`PusherStore`) and listed; nothing is sent to push gateways yet.
enum Pushers {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/pushers/set", setPusher)
        routes.client(.get, "/pushers", listPushers)
    }

    /// `POST /pushers/set`: adds, replaces, or (with `kind: null`) removes a pusher.
    static func setPusher(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let body = try await context.jsonObject()
        guard let appID = body["app_id"]?.stringValue, let pushkey = body["pushkey"]?.stringValue else {
            throw MatrixError(.missingParam, "Missing app_id or pushkey")
        }
        guard appID.utf8.count <= 64, pushkey.utf8.count <= 512 else { throw MatrixError(.invalidParam, "app_id or pushkey too long") }
        let store = context.app.database.pushers
        if body["kind"] == nil || body["kind"] == .null {
            try await store.deletePusher(user: requester.userID, appID: appID, pushkey: pushkey)
            return .json([:])
        }
        guard let kind = body["kind"]?.stringValue, kind == "http" || kind == "email" else {
            throw MatrixError(.invalidParam, "kind must be http or email")
        }
        var pusher: [String: JSON] = ["app_id": .string(appID), "pushkey": .string(pushkey), "kind": .string(kind)]
        for key in ["app_display_name", "device_display_name", "lang"] {
            guard let value = body[key]?.stringValue, value.utf8.count <= 1024 else { throw MatrixError(.missingParam, "Missing \(key)") }
            pusher[key] = .string(value)
        }
        if let tag = body["profile_tag"]?.stringValue, tag.utf8.count <= 1024 { pusher["profile_tag"] = .string(tag) }
        guard let data = body["data"], data.objectValue != nil else { throw MatrixError(.missingParam, "Missing data") }
        if kind == "http" {
            guard let url = data["url"]?.stringValue, url.hasPrefix("https://") || url.hasPrefix("http://") else {
                throw MatrixError(.invalidParam, "data.url must be an http(s) URL")
            }
        }
        pusher["data"] = data
        let json = JSON.object(pusher).encodedString
        guard json.utf8.count <= 16_384 else { throw MatrixError(.tooLarge, "Pusher too large", status: 413) }
        try await store.setPusher(user: requester.userID, appID: appID, pushkey: pushkey, device: requester.deviceID, json: json,
                                  append: body["append"]?.boolValue ?? false, now: Clock.nowMilliseconds())
        return .json([:])
    }

    /// `GET /pushers`: the requester's pushers.
    static func listPushers(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let stored = try await context.app.database.pushers.pushers(of: requester.userID)
        return .json(["pushers": .array(stored.compactMap { try? JSON.parse(Array($0.utf8)) })])
    }
}
