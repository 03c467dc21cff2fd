import Transport
import Actors
import Matrix
import Persistence

/// History: `GET /rooms/{roomId}/messages`, `/context/{eventId}` and
/// `/v1/rooms/{roomId}/timestamp_to_event` (spec: "Getting events for a room"). Events are
/// ordered by their stream position, the one order sync uses too, so `/sync`'s `prev_batch`
/// and these tokens interoperate: a token names the gap after position N (`tN`, or a sync
/// token whose room-events position is N). Pages are concatenated stored client bytes.
enum Messages {
    static let maxLimit = 1000
    /// Rows one `/messages` request reads at most, whatever its filter lets through.
    static let maxScanned = 5000

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/rooms/{roomId}/messages", messages)
        routes.client(.get, "/rooms/{roomId}/timestamp_to_event", versions: ["v1"], timestampToEvent)
        routes.client(.get, "/rooms/{roomId}/context/{eventId}", contextOf)
    }

    /// `GET /rooms/{roomId}/messages` (spec: "Getting events for a room").
    static func messages(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let query = context.query
        let backwards: Bool
        switch query["dir"] {
        case "b"?: backwards = true
        case "f"?: backwards = false
        default: throw MatrixError(.invalidParam, "dir must be f or b")
        }
        let filter = try eventFilter(query["filter"])
        let limit = try context.limit(default: 10, max: maxLimit)
        let (actor, membership) = try await app.roomService.readableState(requester.userID, roomID)
        let head = await actor.lastStreamOrdering
        // A user who left sees history up to their leave.
        let ceiling = RoomService.readCeiling(membership, head: head)
        let from = try context.position("from") ?? (backwards ? ceiling : 0)
        let request = PageRequest(room: roomID.rawValue, user: requester.userID.rawValue,
                                  joinedNow: membership?.membership == MembershipState.join, backwards: backwards,
                                  from: from, to: try context.position("to"), ceiling: ceiling, limit: limit, filter: filter)
        var page = try await app.database.read { db in try readPage(db, request) }
        if backwards && page.reachedBottom && request.to == nil {
            // The oldest event held here: older history may be on the room's other servers.
            page = try await withBackfill(page, request, roomID: roomID, app: app)
        }
        var body = RawJSONObject(capacity: page.events.reduce(64) { $0 + $1.clientJSON.count + 1 })
        body.raw("chunk", RawJSONObject.array(page.events.map(\.clientJSON)))
        body.value("start", .string("t\(from)"))
        if let end = page.end { body.value("end", .string("t\(end)")) }
        if !page.members.isEmpty {
            body.raw("state", RawJSONObject.array(try await app.roomService.clientEvents(page.members)))
        }
        return .rawJSON(body.finish())
    }

    /// The `filter` query parameter of `/messages`: a `RoomEventFilter` as JSON, or all events.
    static func eventFilter(_ text: String?) throws -> EventFilter {
        guard let text else { return .all }
        guard let value = try? JSON.parse(Array(text.utf8)), value.objectValue != nil else {
            throw MatrixError(.badJSON, "filter is not a JSON object")
        }
        try Filters.roomEventFilter(value, "filter")
        return EventFilter(value)
    }

    /// What one `/messages` page reads: the room, who reads it, where, and through which filter.
    struct PageRequest: Sendable {
        var room: String
        var user: String
        var joinedNow: Bool
        var backwards: Bool
        var from: Int64
        var to: Int64?
        /// The newest position the user may read.
        var ceiling: Int64
        var limit: Int
        var filter: EventFilter
        /// False for the admin API, which reads every event of the room.
        var checksVisibility = true
    }

    /// One `/messages` page: its events, the token to continue from (nil at the end of the
    /// room), and the senders' member events when the filter lazy-loads members.
    struct Page: Sendable {
        var events: [RoomEventStore.EventRow]
        var end: Int64?
        var members: [String]
        /// Where the read stopped (the next page starts after it).
        var cursor: Int64 = 0
        /// A short page that read the oldest event held here: a room joined over federation
        /// has older history on its other servers, so `/messages` backfills (even when the
        /// page already holds the join and so has an `end`).
        var reachedBottom = false
    }

    /// Pages of the store filtered by visibility and the request's filter until `limit` pass,
    /// reading at most `maxScanned` rows: a filter that matches nothing must not read the
    /// whole room in one transaction; the client continues from `end`.
    static func readPage(_ db: any SQLConnection, _ request: PageRequest) throws -> Page {
        let backwards = request.backwards, limit = request.limit, filter = request.filter
        var visibility = RoomService.Visibility(user: request.user, joinedNow: request.joinedNow)
        var out: [RoomEventStore.EventRow] = []
        var cursor = backwards ? min(request.from, request.ceiling) : request.from
        // Backwards, past the live timeline into backfilled history (`RoomEventStore.backfillCeiling`).
        let stop = request.to ?? (backwards ? RoomEventStore.backfillFloor - 1 : request.ceiling)
        var exhausted = false
        var scanned = 0
        while out.count < limit && !exhausted && scanned < maxScanned {
            let batch = backwards
                ? try RoomEventStore.events(db, roomID: request.room, after: stop, upTo: cursor, backwards: true, limit: max(limit, 50))
                : try RoomEventStore.events(db, roomID: request.room, after: cursor, upTo: min(stop, request.ceiling), backwards: false,
                                            limit: max(limit, 50))
            if batch.count < max(limit, 50) { exhausted = true }
            scanned += batch.count
            for row in batch {
                cursor = backwards ? row.streamOrdering - 1 : row.streamOrdering
                guard filter.passesAll || filter.allows(type: row.type, sender: row.sender, clientBytes: row.clientJSON) else { continue }
                guard try !request.checksVisibility || visibility.visible(row, db) else { continue }
                out.append(row)
                if out.count == limit { break }
            }
            if batch.isEmpty { exhausted = true }
        }
        let end: Int64? = out.isEmpty && exhausted ? nil : cursor
        let members = filter.lazyLoadMembers ? try senderMembers(db, request.room, out) : []
        // `end` whenever the page has events, as Synapse answers (SyTest expects it even on the
        // page that reaches the room's start); the following page is then empty, without one.
        // A page ending at the create event holds the whole room's start: nothing to backfill.
        let reachedBottom = exhausted && out.count < limit && out.last?.type != EventType.roomCreate
        return Page(events: out, end: end, members: members, cursor: cursor, reachedBottom: reachedBottom)
    }

    /// The senders' member events as of a page (the state at its newest event).
    static func senderMembers(_ db: any SQLConnection, _ room: String, _ events: [RoomEventStore.EventRow]) throws -> [String] {
        guard let newest = events.map(\.streamOrdering).max(),
              let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: newest) else { return [] }
        let senders = Set(events.map(\.sender))
        return try RoomEventStore.state(db, group: group)
            .filter { $0.type == EventType.roomMember && senders.contains($0.stateKey) }.map(\.eventID)
    }

    /// `GET /v1/rooms/{roomId}/timestamp_to_event` (spec: "Getting events for a room").
    static func timestampToEvent(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let query = context.query
        guard let ts = query["ts"].flatMap({ Int64($0) }) else { throw MatrixError(.invalidParam, "ts must be an integer") }
        let forwards = query["dir"] == "f"
        guard query["dir"] == "f" || query["dir"] == "b" else { throw MatrixError(.invalidParam, "dir must be f or b") }
        let (_, membership) = try await context.app.roomService.readableState(requester.userID, roomID)
        // A user who left finds nothing sent after they left.
        let ceiling = RoomService.readCeiling(membership)
        guard let row = try await context.app.database.roomEvents.event(in: roomID, near: ts, forwards: forwards,
                                                                        ceiling: ceiling) else {
            throw MatrixError(.notFound, "Unable to find event from \(ts) in direction \(forwards ? "f" : "b")")
        }
        let eventTS = (try? JSON.parse(row.json)["origin_server_ts"]?.intValue) ?? nil
        return .json(["event_id": .string(row.eventID), "origin_server_ts": .int(eventTS ?? 0)])
    }

    /// `GET /rooms/{roomId}/context/{eventId}` (spec: "Event context").
    static func contextOf(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        // Not readable at all is 403 (as Synapse), before "no such event" is 404.
        _ = try await app.roomService.readableState(requester.userID, roomID)
        let target = try await RoomEvents.visibleEvent(app, requester.userID, roomID, context.parameter("eventId"))
        let limit = try context.limit(default: 10, max: 100)
        let before = limit / 2, after = limit - before
        let joinedNow = try await app.roomService.membership(requester.userID, in: roomID)?.membership == MembershipState.join
        let room = roomID.rawValue, user = requester.userID.rawValue
        let result = try await app.database.read { db in
            var visibility = RoomService.Visibility(user: user, joinedNow: joinedNow)
            let earlier = try RoomEventStore.events(db, roomID: room, after: 0, upTo: target.streamOrdering - 1,
                                                     backwards: true, limit: before).filter { try visibility.visible($0, db) }
            let later = try RoomEventStore.events(db, roomID: room, after: target.streamOrdering, upTo: .max,
                                                   backwards: false, limit: after).filter { try visibility.visible($0, db) }
            let lastPosition = later.last?.streamOrdering ?? target.streamOrdering
            let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: lastPosition)
            let state = try group.map { try RoomEventStore.state(db, group: $0) } ?? []
            return (earlier, later, state.map(\.eventID))
        }
        var body = RawJSONObject()
        body.raw("event", target.clientJSON)
        body.raw("events_before", RawJSONObject.array(result.0.map(\.clientJSON)))
        body.raw("events_after", RawJSONObject.array(result.1.map(\.clientJSON)))
        body.value("start", .string("t\((result.0.last?.streamOrdering ?? target.streamOrdering) - 1)"))
        body.value("end", .string("t\(result.1.last?.streamOrdering ?? target.streamOrdering)"))
        body.raw("state", RawJSONObject.array(try await app.roomService.clientEvents(result.2)))
        return .rawJSON(body.finish())
    }
}
