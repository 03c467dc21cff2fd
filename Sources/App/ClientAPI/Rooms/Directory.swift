import Actors
import Matrix
import Persistence
import Transport

/// Room aliases, the room directory and reports (spec: client-server API, "Room aliases",
/// "Listing rooms", "Reporting content"). Aliases live in `room_aliases`; directory
/// visibility in `room_directory`; `publicRooms` reads each published room's current state
/// from its actor. Deleting an alias is allowed to its creator and to room admins (the power
/// to send `m.room.canonical_alias`), publishing to room admins, as Synapse does by default.
enum Directory {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.put, "/directory/room/{roomAlias}", createAlias)
        routes.client(.get, "/directory/room/alias/{roomAlias}", getAlias)
        routes.client(.get, "/directory/room/{roomAlias}", getAliasOrRoom)
        routes.client(.delete, "/directory/room/{roomAlias}", deleteAliasOrRoom)
        routes.client(.get, "/rooms/{roomId}/aliases", roomAliases)
        routes.client(.get, "/directory/list/room/{roomId}", getVisibility)
        routes.client(.put, "/directory/list/room/{roomId}", setVisibility)
        routes.client(.get, "/publicRooms", getPublicRooms)
        routes.client(.post, "/publicRooms", searchPublicRooms)
        routes.client(.get, "/room_summary/{roomIdOrAlias}", versions: ["v1"], roomSummary)
        routes.client(.post, "/rooms/{roomId}/report/{eventId}", reportEvent)
        routes.client(.post, "/rooms/{roomId}/report", reportRoom)
        routes.client(.post, "/users/{userId}/report", reportUser)
    }

    /// `PUT /directory/room/{roomAlias}` (spec: "Room aliases").
    static func createAlias(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let alias = try RoomAlias(parsing: context.parameter("roomAlias"))
        guard alias.serverName.rawValue == context.app.configuration.serverName else {
            throw MatrixError(.invalidParam, "Room alias must be local")
        }
        let body = try await context.jsonObject()
        guard let text = body["room_id"]?.stringValue else { throw MatrixError(.badJSON, "Missing room_id") }
        let roomID = try RoomID(parsing: text)
        _ = try await context.app.roomService.existingRoom(roomID)
        // Only members may name a room (Synapse checks the same): otherwise anyone could
        // squat aliases pointing at rooms they have never seen.
        guard try await context.app.roomService.membership(requester.userID, in: roomID)?.membership == MembershipState.join else {
            throw MatrixError(.forbidden, "You must be joined to the room to create an alias for it")
        }
        let created = try await context.app.database.directory.createAlias(alias, room: roomID, creator: requester.userID)
        guard created else { throw MatrixError(.unknown, "Room alias \(alias) already exists", status: 409) }
        return .json([:])
    }

    /// `GET /directory/room/alias/{roomAlias}`: an alternative path of `GET /directory/room/{roomAlias}`.
    static func getAlias(_ context: RequestContext) async throws -> HTTPResponse {
        try await resolveAlias(context, context.parameter("roomAlias"))
    }

    /// `GET /directory/room/{roomAlias}` (spec: "Room aliases"); with a room id (the seed's
    /// form), the room and the servers to join it through.
    static func getAliasOrRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let parameter = context.parameter("roomAlias")
        if parameter.hasPrefix("!") {
            let roomID = try RoomID(parsing: parameter)
            _ = try await context.app.roomService.existingRoom(roomID)
            return .json(["room_id": .string(roomID.rawValue), "servers": [.string(context.app.configuration.serverName)]])
        }
        return try await resolveAlias(context, parameter)
    }

    /// `DELETE /directory/room/{roomAlias}` (spec: "Room aliases"); with a room id, the seed's
    /// "delete room" form: a room admin takes the room out of the directory and removes its
    /// local aliases (the room and its history stay).
    static func deleteAliasOrRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let parameter = context.parameter("roomAlias")
        guard parameter.hasPrefix("!") else { return try await deleteAlias(context, requester, parameter) }
        let roomID = try RoomID(parsing: parameter)
        guard try await isRoomAdmin(context.app, requester.userID, roomID) else {
            throw MatrixError(.forbidden, "You don't have permission to remove this room from the directory")
        }
        try await context.app.database.directory.removeRoom(roomID)
        return .json([:])
    }

    /// `GET /rooms/{roomId}/aliases` (spec: "Room aliases").
    static func roomAliases(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        _ = try await context.app.roomService.readableState(requester.userID, roomID)
        let aliases = try await context.app.database.directory.aliases(of: roomID)
        return .json(["aliases": .array(aliases.map { .string($0) })])
    }

    /// `GET /directory/list/room/{roomId}` (spec: "Listing rooms").
    static func getVisibility(_ context: RequestContext) async throws -> HTTPResponse {
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        _ = try await context.app.roomService.existingRoom(roomID)
        let visibility = try await context.app.database.directory.visibility(of: roomID)
        return .json(["visibility": .string(visibility)])
    }

    /// `PUT /directory/list/room/{roomId}` (spec: "Listing rooms").
    static func setVisibility(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let body = try await context.jsonObject()
        let visibility = body["visibility"]?.stringValue ?? "public"
        guard visibility == "public" || visibility == "private" else {
            throw MatrixError(.invalidParam, "visibility must be public or private")
        }
        _ = try await context.app.roomService.existingRoom(roomID)
        guard try await isRoomAdmin(context.app, requester.userID, roomID) else {
            throw MatrixError(.forbidden, "You don't have permission to publish this room")
        }
        try await context.app.database.directory.setVisibility(visibility, of: roomID)
        return .json([:])
    }

    /// `GET /publicRooms` (spec: "Listing rooms").
    static func getPublicRooms(_ context: RequestContext) async throws -> HTTPResponse {
        let query = context.query
        let limit = Int(query["limit"] ?? "")
        if let server = try remoteServer(context) {
            // Only this server's own list is open without a token (as Synapse): asking another
            // server is a federation request made on the caller's behalf.
            _ = try await context.requireUser()
            var body: [String: JSON] = [:]
            if let limit { body["limit"] = .int(Int64(min(max(limit, 0), 1_000))) }
            if let since = query["since"] { body["since"] = .string(since) }
            return .json(try await FederationQueries.remotePublicRooms(context.app, server, body: .object(body)))
        }
        return try await publicRooms(context.app, limit: limit, since: query["since"], term: nil)
    }

    /// `POST /publicRooms` (spec: "Listing rooms"), with `filter.generic_search_term`.
    static func searchPublicRooms(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireUser()
        let body = try await Membership.optionalBody(context)
        if let server = try remoteServer(context) {
            var forwarded: [String: JSON] = [:]
            for key in ["limit", "since", "filter", "include_all_networks", "third_party_instance_id"] { forwarded[key] = body[key] }
            return .json(try await FederationQueries.remotePublicRooms(context.app, server, body: .object(forwarded)))
        }
        let limit = body["limit"]?.intValue.map { Int($0) }
        let term = body["filter"]?["generic_search_term"]?.stringValue
        return try await publicRooms(context.app, limit: limit, since: body["since"]?.stringValue, term: term)
    }

    /// `?server=` naming another server: its directory is asked over federation.
    static func remoteServer(_ context: RequestContext) throws -> ServerName? {
        guard let text = context.query["server"], !text.isEmpty else { return nil }
        let server = try ServerName(parsing: text)
        return server.rawValue == context.app.configuration.serverName ? nil : server
    }

    /// `GET /v1/room_summary/{roomIdOrAlias}` (spec v1.15: "Room summary"); authentication is optional.
    static func roomSummary(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = Accounts.accessToken(of: context) == nil ? nil : try await context.requireUser()
        let parameter = context.parameter("roomIdOrAlias")
        guard let roomID = try? await context.app.roomService.resolve(parameter), var entry = try await entry(context.app, roomID),
              let actor = try? await context.app.roomService.existingRoom(roomID) else {
            // A room this server is not in: previewed through the hierarchy of a server that is.
            return try await FederationHierarchy.remoteRoomSummary(context, parameter, requester: requester?.userID)
        }
        var membership: String?
        if let requester { membership = try await context.app.roomService.membership(requester.userID, in: roomID)?.membership }
        let joinRule = entry["join_rule"]?.stringValue ?? "invite"
        let peekable = entry["world_readable"] == true || ["public", "knock", "knock_restricted"].contains(joinRule)
        guard peekable || membership == MembershipState.join || membership == MembershipState.invite || membership == MembershipState.knock else {
            throw MatrixError(.notFound, "Room not found")
        }
        entry["room_version"] = .string(await actor.version?.id ?? "")
        if let membership { entry["membership"] = .string(membership) }
        if let algorithm = await actor.stateEvent(StateKey(EventType.roomEncryption, ""))?.content["algorithm"] {
            entry["encryption"] = algorithm
        }
        return .json(.object(entry))
    }

    /// `POST /rooms/{roomId}/report/{eventId}` (spec: "Reporting content").
    static func reportEvent(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let eventID = context.parameter("eventId")
        let body = try await Membership.optionalBody(context)
        // Reporting an event the reporter cannot see is a 404, as for reading it.
        _ = try await RoomEvents.visibleEvent(context.app, requester.userID, roomID, eventID)
        try await report(context.app, room: roomID, event: try EventID(parsing: eventID), user: nil, requester: requester,
                         reason: body["reason"]?.stringValue, score: body["score"]?.intValue)
        return .json([:])
    }

    /// `POST /rooms/{roomId}/report` (spec: "Reporting content").
    static func reportRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        _ = try await context.app.roomService.existingRoom(roomID)
        let body = try await Membership.optionalBody(context)
        try await report(context.app, room: roomID, event: nil, user: nil, requester: requester,
                         reason: body["reason"]?.stringValue, score: nil)
        return .json([:])
    }

    /// `POST /users/{userId}/report` (spec: "Reporting content").
    static func reportUser(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let target = try UserID(parsing: context.parameter("userId"))
        if target.serverName.rawValue == context.app.configuration.serverName {
            guard try await context.app.database.accounts.user(id: target) != nil else {
                throw MatrixError(.notFound, "User not found")
            }
        }
        let body = try await Membership.optionalBody(context)
        try await report(context.app, room: nil, event: nil, user: target, requester: requester,
                         reason: body["reason"]?.stringValue, score: nil)
        return .json([:])
    }

    static func resolveAlias(_ context: RequestContext, _ text: String) async throws -> HTTPResponse {
        let alias = try RoomAlias(parsing: text)
        if alias.serverName.rawValue != context.app.configuration.serverName {
            let (roomID, servers) = try await context.app.resolveRoomAlias(alias)
            return .json(["room_id": .string(roomID.rawValue), "servers": .array(servers.map { .string($0.rawValue) })])
        }
        guard let found = try await context.app.database.directory.alias(alias) else {
            throw MatrixError(.notFound, "Room alias \(alias) not found")
        }
        return .json(["room_id": .string(found.roomID.rawValue), "servers": [.string(context.app.configuration.serverName)]])
    }

    /// Allowed to the alias's creator and to room admins.
    static func deleteAlias(_ context: RequestContext, _ requester: Requester, _ text: String) async throws -> HTTPResponse {
        let alias = try RoomAlias(parsing: text)
        guard let found = try await context.app.database.directory.alias(alias) else {
            throw MatrixError(.notFound, "Room alias \(alias) not found")
        }
        if found.creator != requester.userID {
            guard try await isRoomAdmin(context.app, requester.userID, found.roomID) else {
                throw MatrixError(.forbidden, "You don't have permission to delete the alias.")
            }
        }
        try await context.app.database.directory.deleteAlias(alias)
        await removeFromCanonicalAlias(context.app, requester, alias, found.roomID)
        return .json([:])
    }

    /// A deleted alias leaves the room's `m.room.canonical_alias` too (as Synapse does): a new
    /// event without it, sent by the deleter when the power levels let them; else unchanged.
    static func removeFromCanonicalAlias(_ app: MyelinApp, _ requester: Requester, _ alias: RoomAlias, _ roomID: RoomID) async {
        guard let actor = try? await app.roomService.existingRoom(roomID),
              let current = await actor.stateEvent(StateKey(EventType.roomCanonicalAlias, ""))?.content else { return }
        var content = current
        if content["alias"]?.stringValue == alias.rawValue { content["alias"] = nil }
        if let alternatives = content["alt_aliases"]?.arrayValue {
            content["alt_aliases"] = .array(alternatives.filter { $0.stringValue != alias.rawValue })
        }
        guard content != current else { return }
        _ = try? await app.roomService.send(EventDraft(type: EventType.roomCanonicalAlias, sender: requester.userID,
                                                       stateKey: "", content: content), in: roomID)
    }

    static func report(_ app: MyelinApp, room: RoomID?, event: EventID?, user: UserID?, requester: Requester,
                       reason: String?, score: Int64?) async throws {
        if let reason, reason.utf8.count > 1000 { throw MatrixError(.invalidParam, "reason is too long") }
        try await app.database.reports.report(room: room, event: event, target: user, reporter: requester.userID,
                                              reason: reason, score: score, ts: Clock.nowMilliseconds())
    }

    /// Room admins: those who may send `m.room.canonical_alias` (Synapse's check for alias
    /// deletion and publication).
    /// A joined member with the power to set the canonical alias (a moderator who left keeps
    /// the power level but not the powers).
    static func isRoomAdmin(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID) async throws -> Bool {
        let actor = try await app.roomService.existingRoom(roomID)
        guard await actor.stateEvent(.member(user.rawValue))?.membership == MembershipState.join else { return false }
        guard let version = await actor.version else { return false }
        let power = PowerLevels(content: await actor.stateEvent(.powerLevels)?.content, roomVersion: version,
                                create: await actor.stateEvent(.create))
        return power.canSend(user.rawValue, eventType: EventType.roomCanonicalAlias, isState: true)
    }

    /// One directory entry from a room's current state, as Synapse shapes it.
    static func entry(_ app: MyelinApp, _ roomID: RoomID) async throws -> [String: JSON]? {
        guard let actor = try? await app.roomService.existingRoom(roomID), let state = await actor.currentState else { return nil }
        func content(_ type: String) -> [String: JSON]? { state[StateKey(type, "")]?.content }
        var entry: [String: JSON] = ["room_id": .string(roomID.rawValue)]
        entry["num_joined_members"] = .int(Int64(state.filter { $0.key.type == EventType.roomMember && $0.value.membership == MembershipState.join }.count))
        if let name = content(EventType.roomName)?["name"]?.stringValue { entry["name"] = .string(name) }
        if let topic = content(EventType.roomTopic)?["topic"]?.stringValue { entry["topic"] = .string(topic) }
        if let alias = content(EventType.roomCanonicalAlias)?["alias"]?.stringValue { entry["canonical_alias"] = .string(alias) }
        if let avatar = content(EventType.roomAvatar)?["url"]?.stringValue { entry["avatar_url"] = .string(avatar) }
        entry["world_readable"] = .bool(content(EventType.roomHistoryVisibility)?["history_visibility"]?.stringValue == HistoryVisibility.worldReadable.rawValue)
        entry["guest_can_join"] = .bool(content(EventType.roomGuestAccess)?["guest_access"]?.stringValue == "can_join")
        entry["join_rule"] = .string(content(EventType.roomJoinRules)?["join_rule"]?.stringValue ?? "invite")
        if let type = content(EventType.roomCreate)?["type"]?.stringValue { entry["room_type"] = .string(type) }
        return entry
    }

    static func publicRooms(_ app: MyelinApp, limit: Int?, since: String?, term: String?) async throws -> HTTPResponse {
        let ids = try await app.database.directory.publicRooms()
        var entries: [[String: JSON]] = []
        for roomID in ids {
            guard let entry = try await entry(app, roomID) else { continue }
            if let term, !term.isEmpty {
                let needle = term.lowercased()
                let haystack = ["name", "topic", "canonical_alias"].compactMap { entry[$0]?.stringValue?.lowercased() }
                guard haystack.contains(where: { $0.contains(needle) }) else { continue }
            }
            entries.append(entry)
        }
        // Largest rooms first, then by id, as Synapse orders them.
        entries.sort {
            let a = $0["num_joined_members"]?.intValue ?? 0, b = $1["num_joined_members"]?.intValue ?? 0
            return a != b ? a > b : ($0["room_id"]?.stringValue ?? "") < ($1["room_id"]?.stringValue ?? "")
        }
        var offset = 0
        if let since {
            guard since.hasPrefix("o"), let value = Int(since.dropFirst()), value >= 0, value <= RequestBounds.maxOffset else {
                throw MatrixError(.invalidParam, "Invalid since token")
            }
            offset = value
        }
        let pageSize = max(0, limit ?? entries.count)
        let page = entries.dropFirst(offset).prefix(pageSize)
        var body: [String: JSON] = ["chunk": .array(page.map { .object($0) }),
                                    "total_room_count_estimate": .int(Int64(entries.count))]
        if offset + page.count < entries.count { body["next_batch"] = .string("o\(offset + page.count)") }
        if offset > 0 { body["prev_batch"] = .string("o\(max(0, offset - pageSize))") }
        return .json(.object(body))
    }
}
