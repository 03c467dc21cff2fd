import Actors
import Matrix
import Persistence
import Transport

/// `GET /v1/rooms/{roomId}/hierarchy` (spec: "Spaces"): a breadth-first walk of
/// `m.space.child` state from a space, listing every room the requester may see (joined,
/// invited, or previewable: world readable or with a public/knock join rule) with its
/// directory entry and its own `children_state`. Local rooms only (federation comes later).
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
        guard try await visible(app, requester.userID, root) else {
            throw MatrixError(.forbidden, "You are not allowed to peek into room \(root)")
        }
        let rooms = try await walk(app, from: root, user: requester.userID, suggestedOnly: suggestedOnly, maxDepth: maxDepth)
        let page = Array(rooms.dropFirst(offset).prefix(limit))
        var body: [String: JSON] = ["rooms": .array(page)]
        if offset + page.count < rooms.count { body["next_batch"] = .string("o\(offset + page.count)") }
        return .json(.object(body))
    }

    /// The rooms under `root`, breadth first, each with its `children_state`; bounded by
    /// rooms visited, not only rooms found: a space may name thousands of children that do
    /// not exist or cannot be seen.
    static func walk(_ app: MyelinApp, from root: RoomID, user: UserID, suggestedOnly: Bool, maxDepth: Int) async throws -> [JSON] {
        let memberships = try await app.roomService.memberships(of: user)
        var rooms: [JSON] = []
        var seen: Set<RoomID> = [root]
        var queue: [(RoomID, Int)] = [(root, 0)]
        var visits = 0
        while !queue.isEmpty && rooms.count < maxRooms && visits < maxVisits {
            visits += 1
            let (roomID, depth) = queue.removeFirst()
            guard let actor = try? await app.roomService.existingRoom(roomID), let state = await actor.currentState,
                  var entry = try await Directory.entry(app, roomID) else { continue }
            let membership = memberships[roomID.rawValue]?.membership
            if roomID != root, !(membership == MembershipState.join || membership == MembershipState.invite || peekable(entry)) { continue }
            var children: [JSON] = []
            for (key, pdu) in state.sorted(by: { $0.key < $1.key }) where key.type == EventType.spaceChild {
                guard let via = pdu.content["via"]?.arrayValue, !via.isEmpty else { continue }
                if suggestedOnly && pdu.content["suggested"]?.boolValue != true { continue }
                children.append(["type": .string(EventType.spaceChild), "state_key": .string(key.stateKey), "content": .object(pdu.content),
                                 "sender": .string(pdu.sender.rawValue), "origin_server_ts": .int(pdu.originServerTS)])
                if depth < maxDepth, let child = try? RoomID(parsing: key.stateKey), !seen.contains(child) {
                    seen.insert(child)
                    queue.append((child, depth + 1))
                }
            }
            entry["children_state"] = .array(children)
            rooms.append(.object(entry))
        }
        return rooms
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
