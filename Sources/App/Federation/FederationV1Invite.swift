import Actors
import Matrix
import Transport

/// The v1 form of `invite` (server-server API, deprecated; still spoken by SyTest's mock
/// servers and by old servers for room versions 1 and 2). Inbound: the body is the event
/// itself, the room version is taken as "1" (v1 and v2 differ only in state resolution,
/// which an invite does not use; Synapse does the same), the answer is wrapped `[200, body]`.
/// Outbound: used only after a `v2/invite` the remote did not recognise, for rooms of
/// versions 1 and 2 (later versions need the v2 body's `room_version`); `send_join` likewise
/// falls back to v1.
enum FederationV1Invite {
    static func register(_ routes: inout RouteBuilder) {
        routes.put(FederationMembershipEndpoints.prefix + "/v1/invite/{roomId}/{eventId}", invite)
    }

    /// `PUT /_matrix/federation/v1/invite/{roomId}/{eventId}`.
    static func invite(_ context: RequestContext) async throws -> HTTPResponse {
        let event = try await context.jsonObject()
        // v1 carries the stripped state in the event's `unsigned.invite_room_state`.
        let stripped = event["unsigned"]?["invite_room_state"]?.arrayValue ?? []
        let answer = try await FederationMembershipEndpoints.acceptInvite(
            context, raw: .object(event), version: try RoomVersion.named("1"), strippedState: stripped)
        return FederationV1Membership.wrapped(answer)
    }

    /// Whether a remote's error answer means it does not serve the endpoint at all (404 or
    /// 405 with no body or `M_UNRECOGNIZED`, 400 with `M_UNRECOGNIZED`), as Synapse decides
    /// before falling back to a v1 endpoint.
    static func isUnknownEndpoint(_ reply: FederationReply) -> Bool {
        let errcode = reply.json?["errcode"]?.stringValue
        switch reply.status {
        case 404, 405: return reply.json == nil || errcode == MatrixError.Code.unrecognized.rawValue
        case 400: return errcode == MatrixError.Code.unrecognized.rawValue
        default: return false
        }
    }

    /// Sends an invite to `server`: `v2/invite`, then `v1/invite` (the event alone, the
    /// answer unwrapped from `[200, body]`) when the remote does not know v2 and the room
    /// version allows it. Returns the answer's object; errors as `FederationLink.call`.
    static func send(_ server: ServerName, roomID: RoomID, eventID: EventID, event: JSON, version: RoomVersion,
                     strippedState: [JSON], app: MyelinApp) async throws -> [String: JSON] {
        let tail = "\(FederationLink.segment(roomID.rawValue))/\(FederationLink.segment(eventID.rawValue))"
        let v2 = try await app.federationLink.reply(
            server, "PUT", "/_matrix/federation/v2/invite/" + tail,
            ["event": event, "room_version": .string(version.id), "invite_room_state": .array(strippedState)])
        guard isUnknownEndpoint(v2) else { return try FederationLink.checked(v2, from: server) }
        guard version.eventIDFormat == .opaqueWithDomain else {
            throw MatrixError(.unsupportedRoomVersion, "\(server) does not support room version \(version.id)", status: 400)
        }
        var v1Event = event
        if case .object(var object) = event {
            var unsigned = object["unsigned"]?.objectValue ?? [:]
            unsigned["invite_room_state"] = .array(strippedState)
            object["unsigned"] = .object(unsigned)
            v1Event = .object(object)
        }
        let v1 = try await app.federationLink.reply(server, "PUT", "/_matrix/federation/v1/invite/" + tail, v1Event)
        return try FederationLink.checked(unwrapped(v1), from: server)
    }

    /// A v1 answer without its `[200, {...}]` wrapper (a historical bug of the v1 API,
    /// matrix-org/synapse#1383, MSC1802).
    static func unwrapped(_ reply: FederationReply) -> FederationReply {
        var reply = reply
        if (200..<300).contains(reply.status), let array = reply.json?.arrayValue, array.count == 2 { reply.json = array[1] }
        return reply
    }

    /// `send_join` v2, then v1 when the remote does not know v2 (as Synapse; any room version).
    static func sendJoin(_ server: ServerName, roomID: RoomID, eventID: EventID, event: JSON, app: MyelinApp) async throws -> [String: JSON] {
        let tail = "\(FederationLink.segment(roomID.rawValue))/\(FederationLink.segment(eventID.rawValue))"
        let v2 = try await app.federationLink.reply(server, "PUT", "/_matrix/federation/v2/send_join/" + tail, event)
        guard isUnknownEndpoint(v2) else { return try FederationLink.checked(v2, from: server) }
        let v1 = try await app.federationLink.reply(server, "PUT", "/_matrix/federation/v1/send_join/" + tail, event)
        return try FederationLink.checked(unwrapped(v1), from: server)
    }
}
