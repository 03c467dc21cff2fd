import Actors
import Matrix
import Persistence
import Transport

/// Spaces over federation (server-server API, "Spaces"): serves
/// `GET /_matrix/federation/v1/hierarchy/{roomId}` (one room, its children's stripped state,
/// and the summaries of its children known here), and asks other servers the same for
/// rooms this server is not in, on behalf of the client hierarchy walk (`SpaceHierarchy`).
enum FederationHierarchy {
    /// Children summarised in one answer, at most (a space's state may name thousands).
    static let maxChildren = 500

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/federation/v1/hierarchy/{roomId}", hierarchy)
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=`: 404 when the room is
    /// unknown here or the requesting server may neither peek into nor join it.
    static func hierarchy(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let app = context.app
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        try await context.requireServerAllowed(origin, in: roomID)
        let suggestedOnly = context.query["suggested_only"] == "true"
        guard var room = try await summary(app, roomID, for: origin),
              let state = await (try? await app.roomService.existingRoom(roomID))?.currentState else {
            throw MatrixError(.notFound, "Unknown room or room not accessible")
        }
        let children = childrenState(state, suggestedOnly: suggestedOnly)
        room["children_state"] = .array(children.map(\.event))
        var summaries: [JSON] = []
        var inaccessible: [JSON] = []
        for child in children.prefix(maxChildren) {
            guard let childID = child.roomID, childID != roomID,
                  (try? await app.roomService.existingRoom(childID)) != nil else { continue }
            if let entry = try await summary(app, childID, for: origin) {
                summaries.append(.object(entry))
            } else {
                inaccessible.append(.string(childID.rawValue))
            }
        }
        return .json(["room": .object(room), "children": .array(summaries), "inaccessible_children": .array(inaccessible)])
    }

    /// The directory entry of a local room with what a hierarchy chunk adds (`room_version`,
    /// `encryption`, `allowed_room_ids`), when `server` may see it: the room is world readable
    /// or open to join or knock, one of the server's users is joined or invited, or (restricted
    /// rooms) joined in one of the allowed rooms. Nil otherwise or when unknown.
    static func summary(_ app: MyelinApp, _ roomID: RoomID, for server: ServerName) async throws -> [String: JSON]? {
        guard let actor = try? await app.roomService.existingRoom(roomID), let state = await actor.currentState,
              var entry = try await Directory.entry(app, roomID) else { return nil }
        let allow = state[StateKey(EventType.roomJoinRules, "")]?.content["allow"]?.arrayValue ?? []
        let allowed = allow.prefix(50).compactMap { rule -> RoomID? in
            guard rule["type"]?.stringValue == "m.room_membership", let id = rule["room_id"]?.stringValue else { return nil }
            return try? RoomID(parsing: id)
        }
        var visible = SpaceHierarchy.peekable(entry) || hasMember(server, state, invited: true)
        if !visible { visible = try await serverIsIn(server, anyOf: allowed, app) }
        guard visible else { return nil }
        if let version = await actor.version { entry["room_version"] = .string(version.id) }
        if let algorithm = state[StateKey(EventType.roomEncryption, "")]?.content["algorithm"]?.stringValue {
            entry["encryption"] = .string(algorithm)
        }
        if !allowed.isEmpty { entry["allowed_room_ids"] = .array(allowed.map { .string($0.rawValue) }) }
        return entry
    }

    /// Whether a user of `server` is joined (or, with `invited`, invited) in `state`.
    static func hasMember(_ server: ServerName, _ state: AuthState, invited: Bool) -> Bool {
        state.contains { key, pdu in
            key.type == EventType.roomMember && (try? UserID(parsing: key.stateKey))?.serverName == server
                && (pdu.membership == MembershipState.join.rawValue || (invited && pdu.membership == MembershipState.invite.rawValue))
        }
    }

    /// A restricted room is visible to a server with a user joined in one of the rooms its
    /// join rule allows (as Synapse decides; the server then checks its own users).
    static func serverIsIn(_ server: ServerName, anyOf rooms: [RoomID], _ app: MyelinApp) async throws -> Bool {
        for room in rooms.prefix(10) {
            if let state = await (try? await app.roomService.existingRoom(room))?.currentState, hasMember(server, state, invited: false) {
                return true
            }
        }
        return false
    }

    /// One `m.space.child` of a room: the child (when its state key is a room ID), the
    /// servers to reach it through, and the stripped event a hierarchy chunk lists.
    struct Child {
        var roomID: RoomID?
        var via: [ServerName]
        var event: JSON
    }

    /// The room's `m.space.child` events with a non-empty `via` (spec "Spaces": others are
    /// ignored), in state key order; only `suggested` ones when asked.
    static func childrenState(_ state: AuthState, suggestedOnly: Bool) -> [Child] {
        var children: [Child] = []
        for (key, pdu) in state.sorted(by: { $0.key < $1.key }) where key.type == EventType.spaceChild {
            guard let via = pdu.content["via"]?.arrayValue, !via.isEmpty else { continue }
            if suggestedOnly && pdu.content["suggested"]?.boolValue != true { continue }
            let event: JSON = ["type": .string(EventType.spaceChild), "state_key": .string(key.stateKey),
                               "content": .object(pdu.content), "sender": .string(pdu.sender.rawValue),
                               "origin_server_ts": .int(pdu.originServerTS)]
            let servers = via.prefix(10).compactMap { $0.stringValue.flatMap { try? ServerName(parsing: $0) } }
            children.append(Child(roomID: try? RoomID(parsing: key.stateKey), via: servers, event: event))
        }
        return children
    }

    // MARK: Asked of other servers

    /// `GET /v1/room_summary/{roomIdOrAlias}` of a room this server is not in (MSC3266, as
    /// Synapse answers it): the room's hierarchy chunk from the servers of `via`, then those
    /// the alias resolves to, then the room ID's server; 404 when none answers or the room is
    /// neither previewable nor open to the requester.
    static func remoteRoomSummary(_ context: RequestContext, _ idOrAlias: String, requester: UserID?) async throws -> HTTPResponse {
        let app = context.app
        guard app.configuration.federation.enabled else { throw MatrixError(.notFound, "Room not found") }
        var servers = FederationRoomEndpoints.queryValues(context, "via").prefix(3).compactMap { try? ServerName(parsing: $0) }
        let roomID: RoomID
        if idOrAlias.hasPrefix("#") {
            let alias = try RoomAlias(parsing: idOrAlias)
            guard alias.serverName != app.localServer else { throw MatrixError(.notFound, "Room alias \(alias) not found") }
            let resolved = try await app.resolveRoomAlias(alias)
            roomID = resolved.roomID
            servers += resolved.servers.prefix(3)
        } else {
            roomID = try RoomID(parsing: idOrAlias)
            if let server = roomID.serverName { servers.append(server) }
        }
        guard var entry = await remote(app, roomID, via: servers, suggestedOnly: false)?.room else {
            throw MatrixError(.notFound, "Room not found")
        }
        entry["children_state"] = nil
        var membership: String?
        var memberships: [String: MembershipService.Membership] = [:]
        if let requester {
            memberships = try await app.roomService.memberships(of: requester)
            membership = memberships[roomID.rawValue]?.membership
        }
        guard SpaceHierarchy.peekable(entry) || SpaceHierarchy.allowedByRestriction(entry, memberships)
                || [MembershipState.invite.rawValue, MembershipState.knock.rawValue].contains(membership ?? "") else {
            throw MatrixError(.notFound, "Room not found")
        }
        if let membership { entry["membership"] = .string(membership) }
        return .json(.object(entry))
    }

    /// A remote room's hierarchy answer: its chunk (with `children_state`) and the summaries
    /// of its children that server knows. The servers of `via` are tried in order (at most
    /// three); nil when none answers with a usable room.
    static func remote(_ app: MyelinApp, _ roomID: RoomID, via: [ServerName], suggestedOnly: Bool)
        async -> (room: [String: JSON], children: [String: [String: JSON]])?
    {
        let path = "/_matrix/federation/v1/hierarchy/\(FederationLink.segment(roomID.rawValue))?suggested_only="
            + (suggestedOnly ? "true" : "false")
        for server in via.prefix(3) where server != app.localServer {
            guard let json = try? await FederationQueries.remote(app, server, method: "GET", path: path),
                  var room = json["room"]?.objectValue, room["room_id"]?.stringValue == roomID.rawValue else { continue }
            // What a client gets is bounded as a local room's would be.
            room["children_state"] = .array((room["children_state"]?.arrayValue ?? []).prefix(maxChildren).filter {
                $0["type"]?.stringValue == EventType.spaceChild && $0["state_key"]?.stringValue != nil
            })
            var children: [String: [String: JSON]] = [:]
            for child in (json["children"]?.arrayValue ?? []).prefix(maxChildren) {
                guard let entry = child.objectValue, let id = entry["room_id"]?.stringValue else { continue }
                children[id] = entry
            }
            return (room, children)
        }
        return nil
    }
}
