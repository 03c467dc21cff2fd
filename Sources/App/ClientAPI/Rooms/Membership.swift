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
        routes.client(.post, "/rooms/{roomId}/join") { context in
            try await join(context, try RoomID(parsing: context.parameter("roomId")))
        }
        routes.client(.post, "/join/{roomIdOrAlias}") { context in
            try await join(context, try await context.app.roomService.resolve(context.parameter("roomIdOrAlias")))
        }
        routes.client(.post, "/knock/{roomIdOrAlias}") { context in
            let requester = try await context.app.accounts.authenticate(context, allowGuests: false)
            let service = context.app.roomService
            let roomID = try await service.resolve(context.parameter("roomIdOrAlias"))
            let body = try await optionalBody(context)
            var extra: [String: JSON] = [:]
            if let reason = body["reason"]?.stringValue { extra["reason"] = .string(reason) }
            let content = try await service.memberContent(requester.userID, membership: MembershipState.knock.rawValue, extra: extra)
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                                  stateKey: requester.userID.rawValue, content: content), in: roomID)
            return .json(["room_id": .string(roomID.rawValue)])
        }
        routes.client(.post, "/rooms/{roomId}/invite") { context in
            let requester = try await context.app.accounts.authenticate(context, allowGuests: false)
            let body = try await context.jsonObject()
            guard let target = body["user_id"]?.stringValue else {
                throw MatrixError(.badJSON, "Missing user_id (third-party invites are not supported)")
            }
            let invitee = try UserID(parsing: target)
            let service = context.app.roomService
            let roomID = try RoomID(parsing: context.parameter("roomId"))
            var extra: [String: JSON] = [:]
            if let reason = body["reason"]?.stringValue { extra["reason"] = .string(reason) }
            let current = try await service.membership(invitee, in: roomID)?.membership
            if current == MembershipState.join { throw MatrixError(.forbidden, "\(invitee) is already in the room.") }
            if current == MembershipState.ban { throw MatrixError(.forbidden, "\(invitee) is banned from the room") }
            let content = try await service.memberContent(invitee, membership: MembershipState.invite.rawValue, extra: extra)
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                                  stateKey: invitee.rawValue, content: content), in: roomID)
            return .json([:])
        }
        routes.client(.post, "/rooms/{roomId}/leave") { context in
            let requester = try await context.app.accounts.authenticate(context)
            let service = context.app.roomService
            let roomID = try RoomID(parsing: context.parameter("roomId"))
            let body = try await optionalBody(context)
            guard let current = try await service.membership(requester.userID, in: roomID)?.membership,
                  current != MembershipState.leave else {
                throw MatrixError(.notFound, "You are not in room \(roomID)", status: 404)
            }
            if current == MembershipState.ban { return .json([:]) }
            var content: [String: JSON] = ["membership": MembershipState.leave.json]
            if let reason = body["reason"]?.stringValue { content["reason"] = .string(reason) }
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                                  stateKey: requester.userID.rawValue, content: content), in: roomID)
            return .json([:])
        }
        routes.client(.post, "/rooms/{roomId}/forget") { context in
            let requester = try await context.app.accounts.authenticate(context)
            let roomID = try RoomID(parsing: context.parameter("roomId"))
            let membership = try await context.app.roomService.membership(requester.userID, in: roomID)?.membership
            if membership == MembershipState.join || membership == MembershipState.invite || membership == MembershipState.knock {
                throw MatrixError(.unknown, "User \(requester.userID) is in room \(roomID)", status: 400)
            }
            try await context.app.database.memberships.forget(roomID, by: requester.userID)
            context.app.roomService.membershipService.forget(requester.userID)
            return .json([:])
        }
        for action in ["kick", "ban", "unban"] {
            routes.client(.post, "/rooms/{roomId}/\(action)") { context in
                let requester = try await context.app.accounts.authenticate(context, allowGuests: false)
                let body = try await context.jsonObject()
                guard let target = body["user_id"]?.stringValue else { throw MatrixError(.badJSON, "Missing user_id") }
                let user = try UserID(parsing: target)
                let service = context.app.roomService
                let roomID = try RoomID(parsing: context.parameter("roomId"))
                let current = try await service.membership(user, in: roomID)?.membership
                if action == "unban" && current != MembershipState.ban {
                    throw MatrixError(.forbidden, "\(user) is not banned")
                }
                if action == "kick" && (current == nil || current == MembershipState.leave || current == MembershipState.ban) {
                    throw MatrixError(.forbidden, "The target user is not in the room")
                }
                var content: [String: JSON] = ["membership": action == "ban" ? MembershipState.ban.json : MembershipState.leave.json]
                if let reason = body["reason"]?.stringValue { content["reason"] = .string(reason) }
                _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                                      stateKey: user.rawValue, content: content), in: roomID)
                return .json([:])
            }
        }
        routes.client(.get, "/joined_rooms") { context in
            let requester = try await context.app.accounts.authenticate(context)
            let rooms = try await context.app.database.memberships.rooms(of: requester.userID, membership: MembershipState.join.rawValue)
            return .json(["joined_rooms": .array(rooms.map(\.roomID).sorted().map { JSON.string($0) })])
        }
        // The seed's form: the user's rooms by membership (own only).
        routes.client(.get, "/user/{userId}/rooms") { context in
            let requester = try await context.app.accounts.authenticate(context)
            let target = try UserID(parsing: context.parameter("userId"))
            guard target == requester.userID else { throw MatrixError(.forbidden, "You may only list your own rooms") }
            let rooms = try await context.app.database.memberships.rooms(of: target)
            func list(_ states: Set<MembershipState>) -> JSON {
                .array(rooms.filter { MembershipState(rawValue: $0.membership).map(states.contains) == true }.map(\.roomID).sorted().map { .string($0) })
            }
            return .json(["joined": list([.join]), "invited": list([.invite]), "left": list([.leave, .ban])])
        }
        routes.client(.get, "/rooms/{roomId}/joined_members") { context in
            let requester = try await context.app.accounts.authenticate(context)
            let roomID = try RoomID(parsing: context.parameter("roomId"))
            let (actor, membership) = try await context.app.roomService.readableState(requester.userID, roomID)
            guard membership?.membership == MembershipState.join else {
                throw MatrixError(.forbidden, "User \(requester.userID) not in room \(roomID)")
            }
            var joined: [String: JSON] = [:]
            for (key, pdu) in await actor.currentState ?? [:] where key.type == EventType.roomMember && pdu.membership == MembershipState.join {
                var entry: [String: JSON] = ["display_name": pdu.content["displayname"] ?? .null,
                                             "avatar_url": pdu.content["avatar_url"] ?? .null]
                if entry["display_name"] == .null { entry["display_name"] = nil }
                if entry["avatar_url"] == .null { entry["avatar_url"] = nil }
                joined[key.stateKey] = .object(entry)
            }
            return .json(["joined": .object(joined)])
        }
        routes.client(.get, "/rooms/{roomId}/members") { context in
            let requester = try await context.app.accounts.authenticate(context)
            let roomID = try RoomID(parsing: context.parameter("roomId"))
            let service = context.app.roomService
            let (actor, membership) = try await service.readableState(requester.userID, roomID)
            let query = context.query
            let wanted = query["membership"]
            let excluded = query["not_membership"]
            var ids: [String]
            if membership?.membership == MembershipState.join || membership == nil, query["at"] == nil {
                ids = (await actor.currentState ?? [:]).filter { $0.key.type == EventType.roomMember }.map(\.value.eventID.rawValue)
            } else {
                // At a token, or at the user's leave: the state of that point.
                var position = membership?.streamOrdering ?? Int64.max
                if let at = try context.position("at") { position = min(position, at) }
                ids = try await context.app.database.roomEvents.state(of: roomID, atOrBefore: position)
                    .filter { $0.type == EventType.roomMember }.map(\.eventID)
            }
            var chunk: [[UInt8]] = []
            for bytes in try await service.clientEvents(ids.sorted()) {
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
    }

    static func join(_ context: RequestContext, _ roomID: RoomID) async throws -> HTTPResponse {
        let requester = try await context.app.accounts.authenticate(context)
        let service = context.app.roomService
        // Guests join only rooms that allow them (spec: "Guest access", m.room.guest_access).
        if requester.isGuest {
            let access = try? await service.existingRoom(roomID).stateEvent(StateKey(EventType.roomGuestAccess, ""))?
                .content["guest_access"]?.stringValue
            guard access == "can_join" else {
                throw MatrixError(.forbidden, "Guest access is not allowed in this room")
            }
        }
        let body = try await optionalBody(context)
        var extra: [String: JSON] = [:]
        if let reason = body["reason"]?.stringValue { extra["reason"] = .string(reason) }
        var content = try await service.memberContent(requester.userID, membership: MembershipState.join.rawValue, extra: extra)
        if let via = try await restrictedJoinAuthoriser(context.app, requester.userID, roomID) {
            content["join_authorised_via_users_server"] = .string(via)
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
