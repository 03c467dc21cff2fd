import Actors
import Matrix
import Persistence
import Transport

/// Membership over federation, resident side (server-server API, "Joining Rooms",
/// "Knocking", "Inviting to a room", "Leaving Rooms"): templates (`make_*`) built by the
/// room actor on its current state, completed events (`send_*`) verified and received like
/// any remote event, invites of local users countersigned and stored for `/sync`.
enum FederationMembershipEndpoints {
    static let prefix = "/_matrix/federation"

    static func register(_ routes: inout RouteBuilder) {
        routes.get(prefix + "/v1/make_join/{roomId}/{userId}", makeJoin)
        routes.put(prefix + "/v2/send_join/{roomId}/{eventId}", sendJoin)
        routes.get(prefix + "/v1/make_leave/{roomId}/{userId}", makeLeave)
        routes.put(prefix + "/v2/send_leave/{roomId}/{eventId}", sendLeave)
        routes.get(prefix + "/v1/make_knock/{roomId}/{userId}", makeKnock)
        routes.put(prefix + "/v1/send_knock/{roomId}/{eventId}", sendKnock)
        routes.put(prefix + "/v2/invite/{roomId}/{eventId}", invite)
    }

    // MARK: make_*

    /// A template of `membership` for the path's user, who must belong to the calling server.
    static func template(_ context: RequestContext, _ membership: MembershipState) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let (roomID, actor, version) = try await FederationRoomEndpoints.readableRoom(context, origin)
        let user = try UserID(parsing: context.parameter("userId"))
        guard user.serverName == origin else { throw MatrixError(.forbidden, "The user does not belong to the requesting server") }
        if membership == .join, !(await actor.joinedServers.contains(context.app.localServer)) {
            // Nobody of ours is left to vouch for the room (Synapse's `is_host_in_room` check).
            throw MatrixError(.notFound, "Not an active room on this server")
        }
        if membership != .leave {
            // Default "1" (server-server API, make_join: `ver` defaults to ["1"]).
            let supported = FederationRoomEndpoints.queryValues(context, "ver")
            guard (supported.isEmpty ? ["1"] : supported).contains(version.id) else {
                throw MatrixError("M_INCOMPATIBLE_ROOM_VERSION", "Room version \(version.id) is not supported by your server",
                                  status: 400, extra: ["room_version": .string(version.id)])
            }
        }
        var content: [String: JSON] = ["membership": membership.json]
        if membership == .join, let via = try await Membership.restrictedJoinAuthoriser(context.app, user, roomID) {
            content["join_authorised_via_users_server"] = .string(via)
        }
        let event = try await actor.eventTemplate(type: EventType.roomMember, sender: user, stateKey: user.rawValue, content: content)
        return .json(["event": .object(event), "room_version": .string(version.id)])
    }

    /// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=`.
    static func makeJoin(_ context: RequestContext) async throws -> HTTPResponse { try await template(context, .join) }
    /// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`.
    static func makeLeave(_ context: RequestContext) async throws -> HTTPResponse { try await template(context, .leave) }
    /// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=`.
    static func makeKnock(_ context: RequestContext) async throws -> HTTPResponse { try await template(context, .knock) }

    // MARK: send_*

    /// A completed membership event from the calling server: verified, for its own user,
    /// countersigned when it names a local authoriser, then received into the room.
    static func receiveMembership(_ context: RequestContext, _ membership: MembershipState)
        async throws -> (roomID: RoomID, actor: RoomActor, version: RoomVersion, event: PDU, json: JSON)
    {
        let origin = try await requireServer(context)
        let app = context.app
        let (roomID, actor, version) = try await FederationRoomEndpoints.readableRoom(context, origin)
        var json = JSON.object(try await context.jsonObject())
        var pdu = try await verifySigned(json, version: version, app: app)
        guard pdu.sender.serverName == origin else {
            throw MatrixError(.forbidden, "Not allowed to send a \(membership.rawValue) for a user of another server")
        }
        guard pdu.eventID.rawValue == context.parameter("eventId"), pdu.effectiveRoomID == roomID,
              pdu.type == EventType.roomMember, pdu.stateKey == pdu.sender.rawValue, pdu.sender.serverName == origin,
              pdu.membership == membership.rawValue else {
            throw MatrixError(.badJSON, "Not a \(membership.rawValue) event of the requesting server for this room")
        }
        if membership == .join, let via = pdu.content["join_authorised_via_users_server"]?.stringValue,
           let authoriser = try? UserID(parsing: via), authoriser.serverName == app.localServer {
            // Restricted rooms: the resident server of the authorising user signs the join.
            json = try FederationPDUs.countersigned(json, version: version, app: app)
            pdu = try PDU(json: json, roomVersion: version)
        }
        let outcome = try await actor.receive([pdu])[pdu.eventID]
        if case .rejected(let reason) = outcome { throw MatrixError(.forbidden, reason) }
        if case .softFailed(let reason) = outcome { throw MatrixError(.forbidden, reason) }
        return (roomID, actor, version, pdu, json)
    }

    /// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`: the state before the join,
    /// its auth chain and the (countersigned) event. `omit_members` is not honoured: the
    /// answer always carries every member (`members_omitted: false`).
    static func sendJoin(_ context: RequestContext) async throws -> HTTPResponse {
        let joined = try await receiveMembership(context, .join)
        let app = context.app
        let state = try await FederationPDUs.stateBefore(joined.event.eventID, roomID: joined.roomID, version: joined.version, app: app)
            ?? []
        let chain = try await FederationPDUs.authChain(of: state + [joined.event], roomID: joined.roomID, version: joined.version, app: app)
        return .json(["origin": .string(app.localServer.rawValue), "state": FederationPDUs.wire(state),
                      "auth_chain": FederationPDUs.wire(chain), "event": joined.json, "members_omitted": false])
    }

    /// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`.
    static func sendLeave(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await receiveMembership(context, .leave)
        return .json([:])
    }

    /// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: the stripped state for the knocker.
    static func sendKnock(_ context: RequestContext) async throws -> HTTPResponse {
        let knocked = try await receiveMembership(context, .knock)
        let state = await knocked.actor.currentState ?? [:]
        return .json(["knock_room_state": .array(strippedState(state))])
    }

    /// The state a user outside the room may see (client-server API, "Stripped state").
    static func strippedState(_ state: AuthState) -> [JSON] {
        let keys = [EventType.roomCreate, EventType.roomJoinRules, EventType.roomName, EventType.roomAvatar,
                    EventType.roomCanonicalAlias, EventType.roomEncryption, EventType.roomTopic].map { StateKey($0, "") }
        return keys.compactMap { key in
            state[key].map { pdu in
                ["type": .string(pdu.type), "state_key": .string(pdu.stateKey ?? ""), "content": .object(pdu.content),
                 "sender": .string(pdu.sender.rawValue)]
            }
        }
    }

    // MARK: invite

    /// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: an invite of a local user by
    /// another server. Countersigned, stored with its `invite_room_state`, and shown to the
    /// invitee by `/sync` under `rooms.invite`. A room resident here receives the event too.
    static func invite(_ context: RequestContext) async throws -> HTTPResponse {
        let body = try await context.jsonObject()
        let version = try RoomVersion.named(body["room_version"]?.stringValue ?? "1")
        guard let raw = body["event"] else { throw MatrixError(.badJSON, "Missing event") }
        return try await acceptInvite(context, raw: raw, version: version, strippedState: body["invite_room_state"]?.arrayValue ?? [])
    }

    /// An invite event of either API version, checked, countersigned and stored.
    static func acceptInvite(_ context: RequestContext, raw: JSON, version: RoomVersion, strippedState: [JSON])
        async throws -> HTTPResponse
    {
        let origin = try await requireServer(context)
        let app = context.app
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let pdu = try await verifySigned(raw, version: version, app: app)
        guard pdu.eventID.rawValue == context.parameter("eventId"), pdu.effectiveRoomID == roomID,
              pdu.type == EventType.roomMember, pdu.membership == MembershipState.invite.rawValue,
              pdu.sender.serverName == origin, let stateKey = pdu.stateKey, let invitee = try? UserID(parsing: stateKey),
              invitee.serverName == app.localServer else {
            throw MatrixError(.badJSON, "Not an invite of a local user by the requesting server")
        }
        try await app.roomService.refuseIfBlocked(roomID)
        try await Friends.refuseInvite(app, from: pdu.sender, to: invitee)
        if let actor = try? await app.roomService.existingRoom(roomID) {
            try await FederationPDUs.requireACL(origin, actor)
        }
        let signed = try FederationPDUs.countersigned(raw, version: version, app: app)
        var stripped = strippedState.prefix(50).map { $0 }
        stripped.append(["type": .string(pdu.type), "state_key": .string(stateKey), "content": .object(pdu.content),
                         "sender": .string(pdu.sender.rawValue)])
        try await FederationJoins.storeInvite(FederationInboundStore.Invite(
            roomID: roomID.rawValue, userID: invitee.rawValue, eventID: pdu.eventID.rawValue, roomVersion: version.id,
            eventJSON: signed.encoded(), strippedStateJSON: JSON.array(Array(stripped)).encoded()), invitee: invitee, app: app)
        return .json(["event": signed])
    }
}
