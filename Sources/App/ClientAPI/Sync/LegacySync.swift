import Actors
import Matrix
import Persistence
import Transport

/// The deprecated pre-sync endpoints Synapse still serves (spec: "Legacy" / removed in
/// v1.x but used by old clients and bots): `GET /events` (a long-poll of new events across
/// rooms, `from`/`timeout`, returning `chunk`, `start`, `end`) and `GET /initialSync`
/// (every room with its state and recent messages). Both reuse the sync machinery and
/// reshape its response; they are not on any hot path.
enum LegacySync {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/events", versions: ["r0", "v3"]) { context in
            let requester = try await context.app.accounts.authenticate(context)
            let query = context.query
            let since = try query["from"].map { try StreamToken(parsing: $0) }
            let timeout = try context.integer("timeout", in: 0...Int64.max).map { min($0, Sync.maxTimeout) } ?? 30_000
            let request = Sync.Request(user: requester.userID, device: requester.deviceID ?? "", since: since ?? Sync.currentToken(context.app),
                                       timeoutMs: max(timeout, 0), filter: nil, fullState: false)
            let bytes = try await Sync.respond(context.app, request, SyncFilter.none)
            let response = try JSON.parse(bytes)
            var chunk: [JSON] = []
            for (roomID, room) in response["rooms"]?["join"]?.objectValue ?? [:] {
                chunk += room["timeline"]?["events"]?.arrayValue ?? []
                for var event in room["ephemeral"]?["events"]?.arrayValue ?? [] {
                    event["room_id"] = .string(roomID)
                    chunk.append(event)
                }
            }
            return .json(["chunk": .array(chunk), "start": .string((since ?? request.since!).serialized),
                          "end": response["next_batch"] ?? .null])
        }
        routes.client(.get, "/initialSync", versions: ["r0", "v3"]) { context in
            let requester = try await context.app.accounts.authenticate(context)
            let limit = try context.limit(default: 10, max: RequestBounds.maxTimelineLimit)
            let filter = SyncFilter(["room": ["timeline": ["limit": .int(Int64(limit))], "include_leave": false]])
            let request = Sync.Request(user: requester.userID, device: requester.deviceID ?? "", since: nil, timeoutMs: 0,
                                       filter: ObjectIdentifier(filter), fullState: false)
            let response = try JSON.parse(try await Sync.respond(context.app, request, filter))
            var rooms: [JSON] = []
            for (membership, section) in [(MembershipState.join.rawValue, "join"), (MembershipState.invite.rawValue, "invite")] {
                for (roomID, room) in response["rooms"]?[section]?.objectValue ?? [:] {
                    var entry: [String: JSON] = ["room_id": .string(roomID), "membership": .string(membership)]
                    if membership == MembershipState.join {
                        let timeline = room["timeline"]
                        entry["messages"] = ["chunk": timeline?["events"] ?? .array([]),
                                             "start": timeline?["prev_batch"] ?? .null, "end": response["next_batch"] ?? .null]
                        var state = room["state"]?["events"]?.arrayValue ?? []
                        state += (timeline?["events"]?.arrayValue ?? []).filter { $0["state_key"] != nil }
                        entry["state"] = .array(state)
                        entry["account_data"] = room["account_data"]?["events"] ?? .array([])
                    } else {
                        entry["invite_state"] = room["invite_state"] ?? .null
                    }
                    rooms.append(.object(entry))
                }
            }
            return .json(["end": response["next_batch"] ?? .null, "rooms": .array(rooms), "presence": .array([]),
                          "account_data": response["account_data"]?["events"] ?? .array([])])
        }
    }
}
