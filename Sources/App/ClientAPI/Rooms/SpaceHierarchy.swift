import Actors
import Matrix
import Persistence
import Transport

/// `GET /v1/rooms/{roomId}/hierarchy` (spec: "Spaces"): a breadth-first walk of
/// `m.space.child` state from a space, listing every room the requester may see (joined,
/// invited, or previewable: world readable or with a public/knock join rule) with its
/// directory entry and its own `children_state`. Rooms this server is not in come from
/// the servers of their `via` (`FederationHierarchy`).
enum SpaceHierarchy {
    static let maxRooms = 1000
    static let maxVisits = 2000

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/rooms/{roomId}/hierarchy", versions: ["v1"], hierarchy)
    }

    /// `GET /v1/rooms/{roomId}/hierarchy` (spec: "Spaces").
    static func hierarchy(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let root = try RoomID(parsing: context.parameter("roomId"))
        let query = context.query
        let suggestedOnly = query["suggested_only"] == "true"
        let maxDepth = try context.limit("max_depth", default: 100, max: 100)
        let limit = try context.limit(default: 50, max: 100, min: 1)
        var offset = 0
        if let from = query["from"] {
            guard from.hasPrefix("o"), let value = Int(from.dropFirst()), value >= 0, value <= maxRooms else {
                throw MatrixError(.invalidParam, "Invalid from token")
            }
            offset = value
        }
        // A space this server is not in (an invite to it, or a link with `via`) is walked from
        // the servers that may hold it, as Synapse does; its root is then checked like a child.
        var rootVia: [ServerName] = []
        if try await Directory.entry(app, root) == nil, app.configuration.federation.enabled {
            rootVia = await FederationJoins.candidateServers(root, via: FederationRoomEndpoints.queryValues(context, "via"),
                                                             invitee: requester.userID, app: app)
        }
        if rootVia.isEmpty, try await !visible(app, requester.userID, root) {
            throw MatrixError(.forbidden, "You are not allowed to peek into room \(root)")
        }
        let rooms = try await walk(app, from: root, via: rootVia, user: requester.userID, suggestedOnly: suggestedOnly,
                                   maxDepth: maxDepth)
        if !rootVia.isEmpty, rooms.first?["room_id"]?.stringValue != root.rawValue {
            throw MatrixError(.forbidden, "You are not allowed to peek into room \(root)")
        }
        let page = Array(rooms.dropFirst(offset).prefix(limit))
        var body: [String: JSON] = ["rooms": .array(page)]
        if offset + page.count < rooms.count { body["next_batch"] = .string("o\(offset + page.count)") }
        return .json(.object(body))
    }

    /// Rooms of other servers asked about in one walk, at most (each is one federation request).
    static let maxRemoteRequests = 20

    /// The rooms under `root`, breadth first, each with its `children_state`; bounded by
    /// rooms visited, not only rooms found: a space may name thousands of children that do
    /// not exist or cannot be seen. A child this server is not in is asked of the servers in
    /// its `via` (server-server API "Spaces"), as Synapse does.
    static func walk(_ app: MyelinApp, from root: RoomID, via rootVia: [ServerName] = [], user: UserID, suggestedOnly: Bool,
                     maxDepth: Int) async throws -> [JSON] {
        let memberships = try await app.roomService.memberships(of: user)
        var rooms: [JSON] = []
        var seen: Set<RoomID> = [root]
        var queue: [(RoomID, Int, [ServerName])] = [(root, 0, rootVia)]
        var visits = 0
        var remoteRequests = 0
        // Summaries of children that came with a remote room's answer (not their children).
        var prefetched: [String: [String: JSON]] = [:]
        while !queue.isEmpty && rooms.count < maxRooms && visits < maxVisits {
            visits += 1
            let (roomID, depth, via) = queue.removeFirst()
            var entry: [String: JSON]
            var children: [FederationHierarchy.Child]
            if let actor = try? await app.roomService.existingRoom(roomID), let state = await actor.currentState,
               let local = try await Directory.entry(app, roomID) {
                entry = local
                children = FederationHierarchy.childrenState(state, suggestedOnly: suggestedOnly)
                entry["children_state"] = .array(children.map(\.event))
            } else if let known = prefetched[roomID.rawValue], known["room_type"]?.stringValue != "m.space" {
                entry = known
                entry["children_state"] = .array([])
                children = []
            } else if remoteRequests < maxRemoteRequests, !via.isEmpty {
                remoteRequests += 1
                guard let answer = await FederationHierarchy.remote(app, roomID, via: via, suggestedOnly: suggestedOnly) else { continue }
                entry = answer.room
                prefetched.merge(answer.children) { old, _ in old }
                children = (entry["children_state"]?.arrayValue ?? []).map { event in
                    let servers = (event["content"]?["via"]?.arrayValue ?? []).prefix(10)
                        .compactMap { $0.stringValue.flatMap { try? ServerName(parsing: $0) } }
                    return FederationHierarchy.Child(roomID: event["state_key"]?.stringValue.flatMap { try? RoomID(parsing: $0) },
                                                     via: servers, event: event)
                }
            } else {
                continue
            }
            let membership = memberships[roomID.rawValue]?.membership
            if roomID != root || !rootVia.isEmpty, !(membership == MembershipState.join || membership == MembershipState.invite
                                 || peekable(entry) || allowedByRestriction(entry, memberships)) { continue }
            for child in children where depth < maxDepth {
                guard let childID = child.roomID, !seen.contains(childID) else { continue }
                seen.insert(childID)
                queue.append((childID, depth + 1, child.via))
            }
            rooms.append(.object(entry))
        }
        return rooms
    }

    /// A restricted room the user may join because they are in one of its allowed rooms
    /// (spec "Spaces": such rooms are listed).
    static func allowedByRestriction(_ entry: [String: JSON], _ memberships: [String: MembershipService.Membership]) -> Bool {
        guard ["restricted", "knock_restricted"].contains(entry["join_rule"]?.stringValue ?? "") else { return false }
        return (entry["allowed_room_ids"]?.arrayValue ?? []).contains { id in
            id.stringValue.map { memberships[$0]?.membership == MembershipState.join } ?? false
        }
    }

    static func peekable(_ entry: [String: JSON]) -> Bool {
        entry["world_readable"] == true || ["public", "knock", "knock_restricted"].contains(entry["join_rule"]?.stringValue ?? "")
    }

    static func visible(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID) async throws -> Bool {
        guard let entry = try await Directory.entry(app, roomID) else { throw MatrixError(.notFound, "Unknown room") }
        let membership = try await app.roomService.membership(user, in: roomID)?.membership
        return membership == MembershipState.join || membership == MembershipState.invite || peekable(entry)
    }
}
