import Actors
import Matrix
import Persistence
import Transport

/// `POST /search` (spec: "Server Side Search"), room events only: full-text matches of
/// message bodies, names and topics (SQLite FTS5, PostgreSQL full-text search) in the rooms
/// the user is joined to, ordered by rank or recency, each result checked against history
/// visibility, with optional context and profiles, paginated by `next_batch`.
enum Search {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/search") { context in
            try await search(context)
        }
    }

    static func search(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await app.accounts.authenticate(context)
        let body = try await context.jsonObject()
        guard let criteria = body["search_categories"]?["room_events"]?.objectValue else {
            return .json(["search_categories": .object([:])])
        }
        guard let term = criteria["search_term"]?.stringValue else { throw MatrixError(.badJSON, "Missing search_term") }
        let keys = criteria["keys"]?.arrayValue?.compactMap(\.stringValue) ?? ["content.body", "content.name", "content.topic"]
        let byRank: Bool
        switch criteria["order_by"]?.stringValue {
        case nil, "rank"?: byRank = true
        case "recent"?: byRank = false
        default: throw MatrixError(.invalidParam, "order_by must be rank or recent")
        }
        let filter = EventFilter(criteria["filter"])
        let limit = max(1, min(filter.limit ?? 10, RequestBounds.maxSearchLimit))
        var offset = 0
        if let batch = context.query["next_batch"] {
            guard batch.hasPrefix("o"), let value = Int(batch.dropFirst()), value >= 0, value <= RequestBounds.maxOffset else {
                throw MatrixError(.invalidParam, "Invalid next_batch")
            }
            offset = value
        }
        let user = requester.userID.rawValue
        let skip = offset
        let memberships = try await app.roomService.memberships(of: requester.userID)
        let rooms = memberships.values.filter { $0.membership == MembershipState.join && filter.allowsRoom($0.roomID) }.map(\.roomID).sorted()
        let contextSpec = criteria["event_context"]?.objectValue
        let before = try RequestBounds.count(contextSpec?["before_limit"], "event_context.before_limit", default: 5,
                                             max: RequestBounds.maxSearchContext)
        let after = try RequestBounds.count(contextSpec?["after_limit"], "event_context.after_limit", default: 5,
                                            max: RequestBounds.maxSearchContext)
        let result = try await app.database.read { db -> ([(Double, RoomEventStore.EventRow, [RoomEventStore.EventRow], [RoomEventStore.EventRow])], Int) in
            let (hits, count) = try SearchStore.search(db, term: term, rooms: rooms, keys: keys, byRank: byRank,
                                                       limit: limit, offset: skip)
            var visibility = RoomService.Visibility(user: user, joinedNow: true)
            var out: [(Double, RoomEventStore.EventRow, [RoomEventStore.EventRow], [RoomEventStore.EventRow])] = []
            for hit in hits {
                guard let row = try RoomEventStore.event(db, eventID: hit.eventID),
                      filter.allows(type: row.type, sender: row.sender), try visibility.visible(row, db) else { continue }
                var earlier: [RoomEventStore.EventRow] = [], later: [RoomEventStore.EventRow] = []
                if contextSpec != nil {
                    earlier = try RoomEventStore.events(db, roomID: row.roomID, after: 0, upTo: row.streamOrdering - 1,
                                                         backwards: true, limit: before).filter { try visibility.visible($0, db) }
                    later = try RoomEventStore.events(db, roomID: row.roomID, after: row.streamOrdering, upTo: .max,
                                                       backwards: false, limit: after).filter { try visibility.visible($0, db) }
                }
                out.append((hit.rank, row, earlier, later))
            }
            return (out, count)
        }
        var results: [JSON] = []
        for (rank, row, earlier, later) in result.0 {
            var entry: [String: JSON] = ["rank": .double(rank), "result": try JSON.parse(row.clientJSON)]
            if contextSpec != nil {
                var ctx: [String: JSON] = [
                    "events_before": .array(try earlier.map { try JSON.parse($0.clientJSON) }),
                    "events_after": .array(try later.map { try JSON.parse($0.clientJSON) }),
                    "start": .string("t\((earlier.last?.streamOrdering ?? row.streamOrdering) - 1)"),
                    "end": .string("t\(later.last?.streamOrdering ?? row.streamOrdering)"),
                ]
                if contextSpec?["include_profile"]?.boolValue == true {
                    var profiles: [String: JSON] = [:]
                    for sender in Set(([row] + earlier + later).map(\.sender)) {
                        let id = try? UserID(parsing: sender)
                        let record = if let id { try await app.database.accounts.user(id: id) } else { UserRecord?.none }
                        var profile: [String: JSON] = [:]
                        if let name = record?.displayname { profile["displayname"] = .string(name) }
                        if let avatar = record?.avatarURL { profile["avatar_url"] = .string(avatar) }
                        profiles[sender] = .object(profile)
                    }
                    ctx["profile_info"] = .object(profiles)
                }
                entry["context"] = .object(ctx)
            }
            results.append(.object(entry))
        }
        var roomEvents: [String: JSON] = [
            "count": .int(Int64(result.1)), "results": .array(results),
            "highlights": .array(term.split(whereSeparator: { !($0.isLetter || $0.isNumber) }).map { .string(String($0)) }),
        ]
        if offset + limit < result.1 && offset + limit <= RequestBounds.maxOffset {
            roomEvents["next_batch"] = .string("o\(offset + limit)")
        }
        return .json(["search_categories": ["room_events": .object(roomEvents)]])
    }
}
