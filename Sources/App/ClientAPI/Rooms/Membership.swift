import Transport
import Actors
import Matrix
import Persistence

/// Room membership (spec: client-server API, "Room membership"): join by id or alias,
/// invite, leave, forget, kick, ban, unban, knock, and the member lists. Every change is an
/// `m.room.member` event built and authorised by the room's actor: the auth rules of the room
/// version decide (join rules, bans, power levels), and refusals are 403 `M_FORBIDDEN`.
enum Membership {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/joined_rooms", joinedRooms)
        routes.client(.get, "/user/{userId}/rooms", userRooms)
        routes.client(.post, "/rooms/{roomId}/invite", invite)
        routes.client(.post, "/join/{roomIdOrAlias}", joinByIDOrAlias)
        routes.client(.post, "/rooms/{roomId}/join", joinRoom)
        routes.client(.post, "/knock/{roomIdOrAlias}", knock)
        routes.client(.post, "/rooms/{roomId}/forget", forget)
        routes.client(.post, "/rooms/{roomId}/leave", leave)
        routes.client(.post, "/rooms/{roomId}/kick", kick)
        routes.client(.post, "/rooms/{roomId}/ban", ban)
        routes.client(.post, "/rooms/{roomId}/unban", unban)
        routes.client(.get, "/rooms/{roomId}/joined_members", joinedMembers)
        routes.client(.get, "/rooms/{roomId}/members", members)
    }

    /// `GET /joined_rooms` (spec: "Room membership").
    static func joinedRooms(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let rooms = try await context.app.database.memberships.rooms(of: requester.userID, membership: MembershipState.join.rawValue)
        return .json(["joined_rooms": .array(rooms.map(\.roomID).sorted().map { JSON.string($0) })])
    }

    /// `GET /user/{userId}/rooms`: the seed's form, the user's own rooms by membership.
    static func userRooms(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireSelf("You may only list your own rooms")
        let rooms = try await context.app.database.memberships.rooms(of: requester.userID)
        func list(_ states: Set<MembershipState>) -> JSON {
            .array(rooms.filter { MembershipState(rawValue: $0.membership).map(states.contains) == true }.map(\.roomID).sorted().map { .string($0) })
        }
        return .json(["joined": list([.join]), "invited": list([.invite]), "left": list([.leave, .ban])])
    }

    /// `POST /rooms/{roomId}/invite` (spec: "Joining rooms"); third-party invites are not supported.
    static func invite(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let body = try await context.jsonObject()
        guard let target = body["user_id"]?.stringValue else {
            throw MatrixError(.badJSON, "Missing user_id (third-party invites are not supported)")
        }
        let invitee = try UserID(parsing: target)
        let service = context.app.roomService
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        if invitee.serverName == context.app.localServer { try await service.refuseIfBlocked(roomID) }
        try await Friends.refuseInvite(context.app, from: requester.userID, to: invitee)
        let current = try await service.membership(invitee, in: roomID)?.membership
        if current == MembershipState.join { throw MatrixError(.forbidden, "\(invitee) is already in the room.") }
        if current == MembershipState.ban { throw MatrixError(.forbidden, "\(invitee) is banned from the room") }
        let content = try await service.memberContent(invitee, membership: MembershipState.invite.rawValue, extra: reason(body))
        if invitee.serverName != context.app.localServer {
            // Server-server API "Inviting to a room": the invitee's server signs first.
            try await FederationJoins.inviteRemote(invitee, by: requester.userID, roomID: roomID, content: content, app: context.app)
            return .json([:])
        }
        _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                              stateKey: invitee.rawValue, content: content), in: roomID)
        return .json([:])
    }

    /// `POST /join/{roomIdOrAlias}` (spec: "Joining rooms").
    static func joinByIDOrAlias(_ context: RequestContext) async throws -> HTTPResponse {
        let idOrAlias = context.parameter("roomIdOrAlias")
        if idOrAlias.hasPrefix("#"), let alias = try? RoomAlias(parsing: idOrAlias),
           alias.serverName != context.app.localServer {
            // An alias of another server: `query/directory` there names the room and the
            // servers to join it through.
            _ = try await context.requireUser()
            let (roomID, servers) = try await context.app.resolveRoomAlias(alias)
            return try await join(context, roomID, via: servers)
        }
        return try await join(context, try await context.app.roomService.resolve(idOrAlias))
    }

    /// `POST /rooms/{roomId}/join` (spec: "Joining rooms").
    static func joinRoom(_ context: RequestContext) async throws -> HTTPResponse {
        try await join(context, try RoomID(parsing: context.parameter("roomId")))
    }

    /// `POST /knock/{roomIdOrAlias}` (spec: "Knocking on rooms").
    static func knock(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let service = context.app.roomService
        let roomID = try await service.resolve(context.parameter("roomIdOrAlias"))
        try await service.refuseIfBlocked(roomID)
        let body = try await optionalBody(context)
        let content = try await service.memberContent(requester.userID, membership: MembershipState.knock.rawValue, extra: reason(body))
        _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                              stateKey: requester.userID.rawValue, content: content), in: roomID)
        return .json(["room_id": .string(roomID.rawValue)])
    }

    /// `POST /rooms/{roomId}/forget` (spec: "Leaving rooms").
    static func forget(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let membership = try await context.app.roomService.membership(requester.userID, in: roomID)?.membership
        if membership == MembershipState.join || membership == MembershipState.invite || membership == MembershipState.knock {
            throw MatrixError(.unknown, "User \(requester.userID) is in room \(roomID)", status: 400)
        }
        try await context.app.database.memberships.forget(roomID, by: requester.userID)
        context.app.roomService.membershipService.forget(requester.userID)
        return .json([:])
    }

    /// `POST /rooms/{roomId}/leave` (spec: "Leaving rooms").
    static func leave(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let service = context.app.roomService
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let body = try await optionalBody(context)
        guard let current = try await service.membership(requester.userID, in: roomID)?.membership,
              current != MembershipState.leave else {
            throw MatrixError(.notFound, "You are not in room \(roomID)", status: 404)
        }
        if current == MembershipState.ban { return .json([:]) }
        if current == MembershipState.invite, (try? await service.existingRoom(roomID)) == nil,
           let invite = try await FederationInboundStore(database: context.app.database)
               .invite(roomID: roomID.rawValue, userID: requester.userID.rawValue) {
            // An invite to a room of another server: rejected through the inviting server.
            try await FederationJoins.rejectRemoteInvite(requester.userID, roomID: roomID, invite: invite, app: context.app)
            return .json([:])
        }
        var content: [String: JSON] = ["membership": MembershipState.leave.json]
        content.merge(reason(body)) { _, new in new }
        _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                              stateKey: requester.userID.rawValue, content: content), in: roomID)
        // The remote users no local user shares a room with now send us no more updates: their
        // cached lists go now, not at the next sweep (a rejoin before it would read them stale).
        await context.app.sweepDeviceLists()
        return .json([:])
    }

    /// `POST /rooms/{roomId}/kick` (spec: "Leaving rooms").
    static func kick(_ context: RequestContext) async throws -> HTTPResponse {
        try await moderate(context, .kick)
    }

    /// `POST /rooms/{roomId}/ban` (spec: "Banning users in a room").
    static func ban(_ context: RequestContext) async throws -> HTTPResponse {
        try await moderate(context, .ban)
    }

    /// `POST /rooms/{roomId}/unban` (spec: "Banning users in a room").
    static func unban(_ context: RequestContext) async throws -> HTTPResponse {
        try await moderate(context, .unban)
    }

    /// What a moderator does to another member.
    enum Moderation { case kick, ban, unban }

    /// Kick, ban or unban the body's `user_id`: a `leave` (or `ban`) member event sent by the
    /// moderator; the auth rules check the moderator's power.
    static func moderate(_ context: RequestContext, _ action: Moderation) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let body = try await context.jsonObject()
        guard let target = body["user_id"]?.stringValue else { throw MatrixError(.badJSON, "Missing user_id") }
        let user = try UserID(parsing: target)
        let service = context.app.roomService
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let current = try await service.membership(user, in: roomID)?.membership
        if action == .unban && current != MembershipState.ban {
            throw MatrixError(.forbidden, "\(user) is not banned")
        }
        if action == .kick && (current == nil || current == MembershipState.leave || current == MembershipState.ban) {
            throw MatrixError(.forbidden, "The target user is not in the room")
        }
        var content: [String: JSON] = ["membership": action == .ban ? MembershipState.ban.json : MembershipState.leave.json]
        content.merge(reason(body)) { _, new in new }
        _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                              stateKey: user.rawValue, content: content), in: roomID)
        return .json([:])
    }

    /// `GET /rooms/{roomId}/joined_members` (spec: "Getting events for a room").
    static func joinedMembers(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let (actor, membership) = try await context.app.roomService.readableState(requester.userID, roomID)
        guard membership?.membership == MembershipState.join else {
            throw MatrixError(.forbidden, "User \(requester.userID) not in room \(roomID)")
        }
        var joined: [String: JSON] = [:]
        for (key, pdu) in await actor.currentState ?? [:] where key.type == EventType.roomMember && pdu.membership == MembershipState.join {
            // Strings only (the specification's schema): an unset or non-string field is left out.
            var entry: [String: JSON] = [:]
            if let name = pdu.content["displayname"]?.stringValue { entry["display_name"] = .string(name) }
            if let avatar = pdu.content["avatar_url"]?.stringValue { entry["avatar_url"] = .string(avatar) }
            joined[key.stateKey] = .object(entry)
        }
        return .json(["joined": .object(joined)])
    }

    /// `GET /rooms/{roomId}/members` (spec: "Getting events for a room"), filtered by
    /// `membership` / `not_membership`.
    static func members(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let query = context.query
        let ids = try await memberEventIDs(context, requester.userID, roomID)
        let wanted = query["membership"]
        let excluded = query["not_membership"]
        var chunk: [[UInt8]] = []
        for bytes in try await context.app.roomService.clientEvents(ids.sorted()) {
            if wanted != nil || excluded != nil {
                let value = try JSON.parse(bytes)["content"]?["membership"]?.stringValue
                if let wanted, value != wanted { continue }
                if let excluded, value == excluded { continue }
            }
            chunk.append(bytes)
        }
        var out = RawJSONObject()
        out.raw("chunk", RawJSONObject.array(chunk))
        return .rawJSON(out.finish())
    }

    /// The member events `members` lists: current for a joined (or peeking) user without
    /// `at`; else the state at the token, or at the user's leave, whichever is earlier.
    static func memberEventIDs(_ context: RequestContext, _ user: UserID, _ roomID: RoomID) async throws -> [String] {
        let (actor, membership) = try await context.app.roomService.readableState(user, roomID)
        if membership?.membership == MembershipState.join || membership == nil, context.query["at"] == nil {
            return (await actor.currentState ?? [:]).filter { $0.key.type == EventType.roomMember }.map(\.value.eventID.rawValue)
        }
        var position = membership?.streamOrdering ?? Int64.max
        if let at = try context.position("at") { position = min(position, at) }
        return try await context.app.database.roomEvents.state(of: roomID, atOrBefore: position)
            .filter { $0.type == EventType.roomMember }.map(\.eventID)
    }

    /// A join body's own content for the member event (custom keys are kept, as Synapse
    /// does); the keys the server sets or checks itself are dropped.
    static func joinExtras(_ body: [String: JSON]) -> [String: JSON] {
        var extra = body.filter { key, _ in
            !["membership", "reason", "third_party_signed", "join_authorised_via_users_server", "displayname", "avatar_url"].contains(key)
        }
        extra.merge(reason(body)) { _, new in new }
        return extra
    }

    /// The body's `reason`, if it is a string, as member-event content.
    static func reason(_ body: [String: JSON]) -> [String: JSON] {
        guard let reason = body["reason"]?.stringValue else { return [:] }
        return ["reason": .string(reason)]
    }

    /// Joins the requester to `roomID`: guests only where guest access allows it, through a
    /// local authoriser in a restricted room.
    static func join(_ context: RequestContext, _ roomID: RoomID, via resolved: [ServerName] = []) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let service = context.app.roomService
        try await service.refuseIfBlocked(roomID)
        // Guests join only rooms that allow them (spec: "Guest access", m.room.guest_access).
        if requester.isGuest {
            let access = try? await service.existingRoom(roomID).stateEvent(StateKey(EventType.roomGuestAccess, ""))?
                .content["guest_access"]?.stringValue
            guard access == "can_join" else {
                throw MatrixError(.forbidden, "Guest access is not allowed in this room")
            }
        }
        let body = try await optionalBody(context)
        var content = try await service.memberContent(requester.userID, membership: MembershipState.join.rawValue, extra: joinExtras(body))
        if let current = try? await service.existingRoom(roomID).stateEvent(.member(requester.userID.rawValue)),
           current.membership == MembershipState.join, current.content == content {
            // Already joined with the same content: no new event (as Synapse; SyTest
            // "Joining room twice is idempotent").
            return .json(["room_id": .string(roomID.rawValue)])
        }
        if let via = try await restrictedJoinAuthoriser(context.app, requester.userID, roomID) {
            content["join_authorised_via_users_server"] = .string(via)
        }
        if (try? await service.existingRoom(roomID)) == nil {
            // Not resident here: join through another server (`server_name`/`via`, the room
            // id's server); an alias of another server resolves before this, to an id and servers.
            let via = FederationRoomEndpoints.queryValues(context, "server_name") + FederationRoomEndpoints.queryValues(context, "via")
                + resolved.map(\.rawValue)
            let servers = await FederationJoins.candidateServers(roomID, via: via, invitee: requester.userID, app: context.app)
            if !servers.isEmpty {
                try await FederationJoins.join(requester.userID, roomID: roomID, servers: servers, content: content, app: context.app)
                return .json(["room_id": .string(roomID.rawValue)])
            }
        }
        do {
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                                  stateKey: requester.userID.rawValue, content: content), in: roomID)
        } catch let error as MatrixError where error.code == .notFound {
            throw MatrixError(.notFound, "No known servers", status: 404)
        }
        return .json(["room_id": .string(roomID.rawValue)])
    }

    /// For a `restricted` / `knock_restricted` room the user is not invited to: a local
    /// member able to invite, if the user is joined to one of the rooms the join rule allows
    /// (spec: "Restricted rooms"); the auth rules check it.
    static func restrictedJoinAuthoriser(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID) async throws -> String? {
        guard let actor = try? await app.roomService.existingRoom(roomID), let state = await actor.currentState,
              let version = await actor.version,
              let rule = state[.joinRules]?.content, let joinRule = rule["join_rule"]?.stringValue,
              joinRule == "restricted" || joinRule == "knock_restricted" else { return nil }
        let current = state[.member(user.rawValue)]?.membership
        if current == MembershipState.join || current == MembershipState.invite { return nil }
        let memberships = try await app.roomService.memberships(of: user)
        let allowed = (rule["allow"]?.arrayValue ?? []).contains { entry in
            entry["type"]?.stringValue == "m.room_membership"
                && entry["room_id"]?.stringValue.map { memberships[$0]?.membership == MembershipState.join } == true
        }
        guard allowed else { return nil }
        let power = PowerLevels(content: state[.powerLevels]?.content, roomVersion: version, create: state[.create])
        let candidates = state.filter { key, pdu in
            key.type == EventType.roomMember && pdu.membership == MembershipState.join && key.stateKey.hasSuffix(":" + app.configuration.serverName)
                && power.canInvite(key.stateKey)
        }.map(\.key.stateKey).sorted { power.level(of: $0) > power.level(of: $1) }
        return candidates.first
    }

    /// The body as an object; an empty body is an empty object (`leave`, `join` may omit it).
    static func optionalBody(_ context: RequestContext) async throws -> [String: JSON] {
        let bytes = try await context.request.body.collect()
        if bytes.isEmpty { return [:] }
        return try RequestContext.jsonObject(from: bytes)
    }
}
