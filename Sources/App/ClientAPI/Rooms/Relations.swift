import Actors
import Matrix
import Persistence
import Transport

/// `GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` and
/// `GET /v1/rooms/{roomId}/threads` (spec: "Relationships", "Threading"). Children come
/// from `event_relations`, written with each event; every event served passes the history
/// visibility check, and the parent must be visible to the requester.
enum Relations {
    static func register(_ routes: inout RouteBuilder) {
        for suffix in ["", "/{relType}", "/{relType}/{eventType}"] {
            routes.client(.get, "/rooms/{roomId}/relations/{eventId}\(suffix)", versions: ["v1"], relations)
        }
        routes.client(.get, "/rooms/{roomId}/threads", versions: ["v1"], threads)
    }

    /// `GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` (spec: "Relationships").
    static func relations(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let parent = try await RoomEvents.visibleEvent(app, requester.userID, roomID, context.parameter("eventId"))
        let relType = context.parameters["relType"], eventType = context.parameters["eventType"]
        let query = context.query
        let backwards = query["dir"] != "f"
        let count = try context.limit(default: 50, max: 100, min: 1)
        let from = try context.position("from")
        let to = try context.position("to")
        let joinedNow = try await app.roomService.membership(requester.userID, in: roomID)?.membership == MembershipState.join
        let user = requester.userID.rawValue, parentID = try EventID(parsing: parent.eventID)
        let rows = try await app.database.read { db -> [RoomEventStore.EventRow] in
            var visibility = RoomService.Visibility(user: user, joinedNow: joinedNow)
            let after = backwards ? (to ?? 0) : (from ?? 0)
            let upTo = backwards ? (from ?? .max) : (to ?? .max)
            return try RelationStore.children(db, parent: parentID, relType: relType, eventType: eventType, after: after,
                                              upTo: upTo, backwards: backwards, limit: count + 1)
                .filter { try visibility.visible($0, db) }
        }
        let page = Array(rows.prefix(count))
        var body = RawJSONObject()
        body.raw("chunk", RawJSONObject.array(page.map(\.clientJSON)))
        if rows.count > count, let last = page.last {
            body.value("next_batch", .string("t\(backwards ? last.streamOrdering - 1 : last.streamOrdering)"))
        }
        if let from { body.value("prev_batch", .string("t\(from)")) }
        return .rawJSON(body.finish())
    }

    /// `GET /v1/rooms/{roomId}/threads` (spec: "Threading").
    static func threads(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        _ = try await app.roomService.readableState(requester.userID, roomID)
        let participatedOnly: Bool
        switch context.query["include"] {
        case nil, "all"?: participatedOnly = false
        case "participated"?: participatedOnly = true
        default: throw MatrixError(.invalidParam, "include must be all or participated")
        }
        // At least one thread per page: a page of none could never advance.
        let count = try context.limit(default: 50, max: 100, min: 1)
        let before = try context.position("from") ?? .max
        let membership = try await app.roomService.membership(requester.userID, in: roomID)
        let reader = ThreadReader(roomID: roomID, user: requester.userID, joinedNow: membership?.membership == MembershipState.join,
                                  participatedOnly: participatedOnly, ceiling: RoomService.readCeiling(membership))
        let (entries, more) = try await app.database.read { db in try reader.page(db, before: before, count: count) }
        var body = RawJSONObject()
        body.raw("chunk", RawJSONObject.array(try entries.compactMap { try $0.clientBytes() }))
        if let more { body.value("next_batch", .string("t\(more)")) }
        return .rawJSON(body.finish())
    }

    /// A thread as `/threads` lists it: the root with its newest visible reply.
    struct ThreadSummary: Sendable {
        var root: RoomEventStore.EventRow
        var latest: RoomEventStore.EventRow
        var count: Int64
        var participated: Bool

        /// The root's client event with the thread in `unsigned.m.relations`.
        func clientBytes() throws -> [UInt8]? {
            guard var object = try JSON.parse(root.clientJSON).objectValue else { return nil }
            var unsigned = object["unsigned"]?.objectValue ?? [:]
            var relations = unsigned["m.relations"]?.objectValue ?? [:]
            relations["m.thread"] = ["latest_event": try JSON.parse(latest.clientJSON), "count": .int(count),
                                     "current_user_participated": .bool(participated)]
            unsigned["m.relations"] = .object(relations)
            object["unsigned"] = .object(unsigned)
            return JSON.object(object).encoded()
        }
    }

    /// Reads a page of a room's threads as one user may see them.
    struct ThreadReader: Sendable {
        var roomID: RoomID
        var user: UserID
        var joinedNow: Bool
        var participatedOnly: Bool
        /// A user who left sees the threads as they were when they left.
        var ceiling: Int64

        /// Up to `count` threads whose latest reply is at or before `before`, and the token
        /// of the next page.
        func page(_ db: any SQLConnection, before: Int64, count: Int) throws -> ([ThreadSummary], Int64?) {
            var visibility = RoomService.Visibility(user: user.rawValue, joinedNow: joinedNow)
            var out: [ThreadSummary] = []
            let threads = try RelationStore.threads(db, roomID: roomID, user: user, before: before, limit: count + 1)
            let page = threads.prefix(count)
            for thread in page {
                guard let root = try RoomEventStore.event(db, eventID: thread.root), root.roomID == roomID.rawValue,
                      try visibility.visible(root, db) else { continue }
                let participated = thread.participated || root.sender == user.rawValue
                if participatedOnly && !participated { continue }
                // The newest reply this user may see (history visibility, and nothing after
                // their leave).
                let replies = try RelationStore.children(db, parent: try EventID(parsing: root.eventID), relType: "m.thread", eventType: nil,
                                                         after: 0, upTo: ceiling, backwards: true, limit: 20)
                guard let latest = try replies.first(where: { try visibility.visible($0, db) }) else { continue }
                out.append(ThreadSummary(root: root, latest: latest, count: thread.count, participated: participated))
            }
            return (out, threads.count > count ? page.last.map { $0.latest - 1 } : nil)
        }
    }
}
