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
        routes.client(.post, "/search", search)
    }

    /// `POST /search` (spec: "Server Side Search"): the `room_events` category.
    static func search(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        guard let criteria = body["search_categories"]?["room_events"]?.objectValue else {
            return .json(["search_categories": .object([:])])
        }
        let request = try Criteria(criteria, nextBatch: context.query["next_batch"])
        let memberships = try await app.roomService.memberships(of: requester.userID)
        let rooms = try memberships.values.filter { $0.membership == MembershipState.join && request.filter.allowsRoom($0.roomID) }
            .map(\.roomID).sorted().map { try RoomID(parsing: $0) }
        let window = try ContextWindow(criteria["event_context"]?.objectValue)
        let user = requester.userID.rawValue
        let found = try await app.database.read { db in try readHits(db, request, window, rooms: rooms, user: user) }
        var results: [JSON] = []
        for hit in found.hits { results.append(try await resultJSON(app, hit, window)) }
        var roomEvents: [String: JSON] = [
            "count": .int(Int64(found.count)), "results": .array(results),
            "highlights": .array(request.term.split(whereSeparator: { !($0.isLetter || $0.isNumber) }).map { .string(String($0)) }),
        ]
        let offset = request.offset, limit = request.limit
        if offset + limit < found.count && offset + limit <= RequestBounds.maxOffset {
            roomEvents["next_batch"] = .string("o\(offset + limit)")
        }
        return .json(["search_categories": ["room_events": .object(roomEvents)]])
    }

    /// The `room_events` criteria of a search request, validated.
    struct Criteria: Sendable {
        var term: String
        var keys: [String]
        var byRank: Bool
        var filter: EventFilter
        var limit: Int
        /// Results skipped: the `next_batch` token (`oN`) of the previous page.
        var offset: Int

        init(_ criteria: [String: JSON], nextBatch: String?) throws {
            guard let term = criteria["search_term"]?.stringValue else { throw MatrixError(.badJSON, "Missing search_term") }
            self.term = term
            keys = criteria["keys"]?.arrayValue?.compactMap(\.stringValue) ?? ["content.body", "content.name", "content.topic"]
            switch criteria["order_by"]?.stringValue {
            case nil, "rank"?: byRank = true
            case "recent"?: byRank = false
            default: throw MatrixError(.invalidParam, "order_by must be rank or recent")
            }
            filter = EventFilter(criteria["filter"])
            limit = max(1, min(filter.limit ?? 10, RequestBounds.maxSearchLimit))
            offset = 0
            if let batch = nextBatch {
                guard batch.hasPrefix("o"), let value = Int(batch.dropFirst()), value >= 0, value <= RequestBounds.maxOffset else {
                    throw MatrixError(.invalidParam, "Invalid next_batch")
                }
                offset = value
            }
        }
    }

    /// `event_context`: how many events around each result, and whether with profiles;
    /// `wanted` is false when the request asks for no context.
    struct ContextWindow: Sendable {
        var wanted: Bool
        var before: Int
        var after: Int
        var includeProfile: Bool

        init(_ spec: [String: JSON]?) throws {
            wanted = spec != nil
            before = try RequestBounds.count(spec?["before_limit"], "event_context.before_limit", default: 5,
                                             max: RequestBounds.maxSearchContext)
            after = try RequestBounds.count(spec?["after_limit"], "event_context.after_limit", default: 5,
                                            max: RequestBounds.maxSearchContext)
            includeProfile = spec?["include_profile"]?.boolValue == true
        }
    }

    /// One result the user may see, with the visible events around it.
    struct Hit: Sendable {
        var rank: Double
        var row: RoomEventStore.EventRow
        var earlier: [RoomEventStore.EventRow]
        var later: [RoomEventStore.EventRow]
    }

    /// The page of matches in `rooms`, each checked against the filter and history visibility.
    static func readHits(_ db: any SQLConnection, _ request: Criteria, _ window: ContextWindow, rooms: [RoomID],
                         user: String) throws -> (hits: [Hit], count: Int) {
        let (matches, count) = try SearchStore.search(db, term: request.term, rooms: rooms, keys: request.keys,
                                                      byRank: request.byRank, limit: request.limit, offset: request.offset)
        var visibility = RoomService.Visibility(user: user, joinedNow: true)
        var hits: [Hit] = []
        for match in matches {
            guard let row = try RoomEventStore.event(db, eventID: match.eventID),
                  request.filter.allows(type: row.type, sender: row.sender), try visibility.visible(row, db) else { continue }
            var hit = Hit(rank: match.rank, row: row, earlier: [], later: [])
            if window.wanted {
                hit.earlier = try RoomEventStore.events(db, roomID: row.roomID, after: 0, upTo: row.streamOrdering - 1,
                                                        backwards: true, limit: window.before).filter { try visibility.visible($0, db) }
                hit.later = try RoomEventStore.events(db, roomID: row.roomID, after: row.streamOrdering, upTo: .max,
                                                      backwards: false, limit: window.after).filter { try visibility.visible($0, db) }
            }
            hits.append(hit)
        }
        return (hits, count)
    }

    /// A result as the response lists it: rank, event, and its `context` when asked for.
    static func resultJSON(_ app: MyelinApp, _ hit: Hit, _ window: ContextWindow) async throws -> JSON {
        var entry: [String: JSON] = ["rank": .double(hit.rank), "result": try JSON.parse(hit.row.clientJSON)]
        guard window.wanted else { return .object(entry) }
        let row = hit.row
        var ctx: [String: JSON] = [
            "events_before": .array(try hit.earlier.map { try JSON.parse($0.clientJSON) }),
            "events_after": .array(try hit.later.map { try JSON.parse($0.clientJSON) }),
            "start": .string("t\((hit.earlier.last?.streamOrdering ?? row.streamOrdering) - 1)"),
            "end": .string("t\(hit.later.last?.streamOrdering ?? row.streamOrdering)"),
        ]
        if window.includeProfile {
            ctx["profile_info"] = try await profiles(app, Set(([row] + hit.earlier + hit.later).map(\.sender)))
        }
        entry["context"] = .object(ctx)
        return .object(entry)
    }

    /// `profile_info`: each sender's display name and avatar.
    static func profiles(_ app: MyelinApp, _ senders: Set<String>) async throws -> JSON {
        var profiles: [String: JSON] = [:]
        for sender in senders {
            let id = try? UserID(parsing: sender)
            let record = if let id { try await app.database.accounts.user(id: id) } else { UserRecord?.none }
            var profile: [String: JSON] = [:]
            if let name = record?.displayname { profile["displayname"] = .string(name) }
            if let avatar = record?.avatarURL { profile["avatar_url"] = .string(avatar) }
            profiles[sender] = .object(profile)
        }
        return .object(profiles)
    }
}
