import Transport
import Actors
import Matrix
import Persistence

/// The room administration API, Synapse's paths and shapes (docs/admin_api/rooms.md,
/// purge_history_api.md, event_reports.md, server_notices.md) plus the seed's
/// (`shutdown_room`, `purge_history` with a body): listing and inspecting rooms, blocking,
/// deleting (`AdminRoomDeletion`), purging history (`AdminPurgeHistory`), event reports
/// (`AdminEventReports`) and server notices (`AdminServerNotices`). Every handler calls
/// `requireAdmin()` first. Documented in docs/admin.md, "Rooms".
enum AdminRooms {
    static let v1 = "/_synapse/admin/v1"
    static let maxLimit = 1000

    static func register(_ routes: inout RouteBuilder) {
        routes.get("\(v1)/rooms", list)
        routes.get("\(v1)/rooms/{roomId}", details)
        routes.get("\(v1)/rooms/{roomId}/members", members)
        routes.get("\(v1)/rooms/{roomId}/state", state)
        routes.get("\(v1)/rooms/{roomId}/messages", messages)
        routes.get("\(v1)/rooms/{roomId}/forward_extremities", forwardExtremities)
        routes.get("\(v1)/rooms/{roomId}/context/{eventId}", contextOf)
        routes.get("\(v1)/rooms/{roomId}/timestamp_to_event", timestampToEvent)
        routes.post("\(v1)/rooms/{roomId}/make_room_admin", makeRoomAdmin)
        routes.get("\(v1)/rooms/{roomId}/block", blockStatus)
        routes.put("\(v1)/rooms/{roomId}/block", block)
        AdminRoomDeletion.register(&routes)
        AdminPurgeHistory.register(&routes)
        AdminEventReports.register(&routes)
        AdminServerNotices.register(&routes)
    }

    /// The state types a room summary reads.
    static let summaryTypes: Set<String> = [
        EventType.roomCreate, EventType.roomName, EventType.roomCanonicalAlias, EventType.roomJoinRules,
        EventType.roomGuestAccess, EventType.roomHistoryVisibility, EventType.roomEncryption, EventType.roomTopic,
        EventType.roomAvatar,
    ]

    /// One room as Synapse's room list shows it (`room_stats_state` + `room_stats_current`).
    struct Summary {
        var row: AdminRoomStore.RoomRow
        var fields: [String: JSON]

        init(_ row: AdminRoomStore.RoomRow) {
            self.row = row
            func content(_ type: String) -> JSON? {
                row.stateEvents[type].flatMap { try? JSON.parse($0) }?["content"]
            }
            func string(_ type: String, _ key: String) -> JSON {
                content(type)?[key]?.stringValue.map { .string($0) } ?? .null
            }
            let createEvent = row.stateEvents[EventType.roomCreate].flatMap { try? JSON.parse($0) }
            let create = createEvent?["content"]
            let creator = create?["creator"]?.stringValue ?? createEvent?["sender"]?.stringValue
            fields = [
                "room_id": .string(row.roomID),
                "name": string(EventType.roomName, "name"),
                "topic": string(EventType.roomTopic, "topic"),
                "avatar": string(EventType.roomAvatar, "url"),
                "canonical_alias": string(EventType.roomCanonicalAlias, "alias"),
                "joined_members": .int(row.joinedMembers),
                "joined_local_members": .int(row.joinedLocalMembers),
                "version": .string(row.version),
                "creator": creator.map { .string($0) } ?? .null,
                "encryption": string(EventType.roomEncryption, "algorithm"),
                "federatable": .bool(create?["m.federate"]?.boolValue ?? true),
                "public": .bool(row.isPublic),
                "join_rules": string(EventType.roomJoinRules, "join_rule"),
                "guest_access": string(EventType.roomGuestAccess, "guest_access"),
                "history_visibility": string(EventType.roomHistoryVisibility, "history_visibility"),
                "state_events": .int(Int64(row.stateCount)),
                "room_type": create?["type"]?.stringValue.map { .string($0) } ?? .null,
            ]
        }

        /// The sort key of `order_by` (Synapse's names, with its deprecated aliases).
        func key(_ order: String) -> SortKey {
            switch order {
            case "joined_members", "size": return .int(row.joinedMembers)
            case "joined_local_members": return .int(row.joinedLocalMembers)
            case "state_events": return .int(Int64(row.stateCount))
            case "federatable", "public": return .int(fields[order]?.boolValue == true ? 1 : 0)
            case "name", "alphabetical": return .text(fields["name"]?.stringValue ?? "")
            default: return .text(fields[order]?.stringValue ?? "")
            }
        }
    }

    enum SortKey: Comparable {
        case int(Int64)
        case text(String)
    }

    static let orders: Set<String> = [
        "name", "alphabetical", "size", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
        "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility", "state_events",
    ]

    /// `GET /_synapse/admin/v1/rooms`: every room, paged by offset (`from`, `limit`), sorted
    /// by `order_by` in `dir`, filtered by `search_term` (a substring of the name or the
    /// canonical alias, or the room id).
    static func list(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        let query = context.query
        let from = try context.limit("from", default: 0, max: Int(Int32.max))
        let limit = try context.limit(default: 100, max: maxLimit)
        let order = query["order_by"] ?? "name"
        guard orders.contains(order) else { throw MatrixError(.invalidParam, "Unknown value for order_by: \(order)") }
        let backwards: Bool
        switch query["dir"] ?? "f" {
        case "f": backwards = false
        case "b": backwards = true
        default: throw MatrixError(.invalidParam, "Unknown direction: \(query["dir"] ?? "")")
        }
        let search = query["search_term"]
        if let search, search.isEmpty { throw MatrixError(.invalidParam, "search_term cannot be empty") }
        let ids = try await app.database.adminRooms.rooms().map(\.roomID)
        var summaries = try await app.database.adminRooms.summaries(ids, serverName: app.configuration.serverName,
                                                                    types: summaryTypes).map(Summary.init)
        // Synapse's `public_rooms` and `empty_rooms` filters.
        for (key, keep) in [("public_rooms", { (s: Summary, flag: Bool) in s.row.isPublic == flag }),
                            ("empty_rooms", { (s: Summary, flag: Bool) in (s.row.joinedMembers == 0) == flag })] {
            guard let text = query[key] else { continue }
            guard let flag = Bool(text) else { throw MatrixError(.invalidParam, "\(key) must be true or false") }
            summaries = summaries.filter { keep($0, flag) }
        }
        if let search {
            let needle = search.lowercased()
            summaries = summaries.filter {
                $0.row.roomID == search
                    || ($0.fields["name"]?.stringValue?.lowercased().contains(needle) ?? false)
                    || ($0.fields["canonical_alias"]?.stringValue?.lowercased().contains(needle) ?? false)
            }
        }
        summaries.sort { a, b in
            let (ka, kb) = (a.key(order), b.key(order))
            // Synapse lists the biggest rooms first for the counts, names A-Z; `dir=b` reverses.
            let descending = ["joined_members", "size", "joined_local_members", "state_events"].contains(order)
            if ka != kb { return (ka < kb) != (descending != backwards) }
            return a.row.roomID < b.row.roomID
        }
        let total = summaries.count
        let page = from < total ? Array(summaries[from..<min(total, from + limit)]) : []
        var body: [String: JSON] = [
            "rooms": .array(page.map { .object($0.fields) }), "offset": .int(Int64(from)),
            "total_rooms": .int(Int64(total)),
        ]
        if from + page.count < total { body["next_batch"] = .int(Int64(from + page.count)) }
        if from > 0 { body["prev_batch"] = .int(Int64(max(0, from - limit))) }
        return .json(.object(body))
    }

    /// The room of the path, 404 `M_NOT_FOUND` when the store has none.
    static func existingRoom(_ context: RequestContext) async throws -> RoomID {
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        guard try await context.app.database.roomEvents.roomVersion(of: roomID) != nil else {
            throw MatrixError(.notFound, "Room not found")
        }
        return roomID
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}`: the room's summary with its topic, avatar,
    /// `joined_local_devices` and `forgotten` (false: rooms are forgotten per user here).
    static func details(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        let roomID = try await existingRoom(context)
        guard let row = try await app.database.adminRooms.summaries([roomID.rawValue], serverName: app.configuration.serverName,
                                                                    types: summaryTypes).first else {
            throw MatrixError(.notFound, "Room not found")
        }
        var fields = Summary(row).fields
        fields["joined_local_devices"] = .int(try await app.database.adminRooms.joinedLocalDevices(roomID, serverName: app.configuration.serverName))
        fields["forgotten"] = false
        fields["blocked"] = .bool(try await app.database.adminRooms.isBlocked(roomID) != nil)
        return .json(.object(fields))
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/members`: the joined members.
    static func members(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let roomID = try await existingRoom(context)
        let joined = try await context.app.database.memberships.members(of: roomID)
            .filter { $0.membership == MembershipState.join.rawValue }.map(\.userID).sorted()
        return .json(["members": .array(joined.map { .string($0) }), "total": .int(Int64(joined.count))])
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/state`: the current state events.
    static func state(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let roomID = try await existingRoom(context)
        let events = try await context.app.database.adminRooms.currentState(roomID)
        var body = RawJSONObject(capacity: events.reduce(64) { $0 + $1.count + 1 })
        body.raw("state", RawJSONObject.array(events))
        return .rawJSON(body.finish())
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/messages`: `/messages` without membership or
    /// history-visibility checks (`from`, `to`, `dir`, `limit`, `filter`).
    static func messages(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let app = context.app
        let roomID = try await existingRoom(context)
        let query = context.query
        let backwards: Bool
        switch query["dir"] ?? "f" {
        case "b": backwards = true
        case "f": backwards = false
        default: throw MatrixError(.invalidParam, "dir must be f or b")
        }
        let filter = try Messages.eventFilter(query["filter"])
        let limit = try context.limit(default: 10, max: Messages.maxLimit)
        let head = Int64.max - 1
        let from = try context.position("from") ?? (backwards ? head : 0)
        var request = Messages.PageRequest(room: roomID.rawValue, user: admin.userID.rawValue, joinedNow: true,
                                           backwards: backwards, from: from, to: try context.position("to"), ceiling: head,
                                           limit: limit, filter: filter)
        request.checksVisibility = false
        let pageRequest = request
        let page = try await app.database.read { db in try Messages.readPage(db, pageRequest) }
        var body = RawJSONObject(capacity: page.events.reduce(64) { $0 + $1.clientJSON.count + 1 })
        body.raw("chunk", RawJSONObject.array(page.events.map(\.clientJSON)))
        body.value("start", .string("t\(from == head ? (page.events.first?.streamOrdering ?? 0) : from)"))
        if let end = page.end { body.value("end", .string("t\(end)")) }
        if !page.members.isEmpty {
            body.raw("state", RawJSONObject.array(try await app.roomService.clientEvents(page.members)))
        }
        return .rawJSON(body.finish())
    }

    /// `GET /_synapse/admin/v1/rooms/{roomIdOrAlias}/forward_extremities`: the room's forward
    /// extremities (`received_ts` is the event's `origin_server_ts`: arrival times are not kept).
    static func forwardExtremities(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        let roomID = try await app.roomService.resolve(context.parameter("roomId"))
        guard try await app.database.roomEvents.roomVersion(of: roomID) != nil else { throw MatrixError(.notFound, "Room not found") }
        let room = roomID.rawValue
        let rows = try await app.database.read { db in
            try RoomEventStore.events(db, ids: try RoomEventStore.extremities(db, roomID: room))
        }
        let results: [JSON] = rows.sorted { $0.streamOrdering < $1.streamOrdering }.map { row in
            let ts = (try? JSON.parse(row.json))?["origin_server_ts"]?.intValue ?? 0
            return ["event_id": .string(row.eventID), "state_group": .int(row.stateGroup), "depth": .int(row.depth),
                    "received_ts": .int(ts)]
        }
        return .json(["count": .int(Int64(results.count)), "results": .array(results)])
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/context/{eventId}`: the client's `/context`
    /// without membership or visibility checks (`limit`, default 10, at most 100).
    static func contextOf(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        let roomID = try await existingRoom(context)
        let eventID = try EventID(parsing: context.parameter("eventId")).rawValue
        let limit = try context.limit(default: 10, max: 100)
        let before = limit / 2, after = limit - before
        let room = roomID.rawValue
        let found = try await app.database.read { db -> (RoomEventStore.EventRow, [RoomEventStore.EventRow], [RoomEventStore.EventRow], [String])? in
            guard let target = try RoomEventStore.event(db, eventID: eventID), target.roomID == room else { return nil }
            let earlier = try RoomEventStore.events(db, roomID: room, after: RoomEventStore.backfillFloor - 1,
                                                     upTo: target.streamOrdering - 1, backwards: true, limit: before)
            let later = try RoomEventStore.events(db, roomID: room, after: target.streamOrdering, upTo: .max,
                                                   backwards: false, limit: after)
            let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: later.last?.streamOrdering ?? target.streamOrdering)
            let state = try group.map { try RoomEventStore.state(db, group: $0) } ?? []
            return (target, earlier, later, state.map(\.eventID))
        }
        guard let (target, earlier, later, stateIDs) = found else { throw MatrixError(.notFound, "Event not found.") }
        var body = RawJSONObject()
        body.raw("event", target.clientJSON)
        body.raw("events_before", RawJSONObject.array(earlier.map(\.clientJSON)))
        body.raw("events_after", RawJSONObject.array(later.map(\.clientJSON)))
        body.value("start", .string("t\((earlier.last?.streamOrdering ?? target.streamOrdering) - 1)"))
        body.value("end", .string("t\(later.last?.streamOrdering ?? target.streamOrdering)"))
        body.raw("state", RawJSONObject.array(try await app.roomService.clientEvents(stateIDs)))
        return .rawJSON(body.finish())
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/timestamp_to_event?ts=&dir=`: the event nearest
    /// to `ts` in direction `dir` (default `f`), without membership checks.
    static func timestampToEvent(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let roomID = try await existingRoom(context)
        let query = context.query
        guard let ts = query["ts"].flatMap({ Int64($0) }), ts >= 0 else { throw MatrixError(.invalidParam, "ts must be a non-negative integer") }
        let direction = query["dir"] ?? "f"
        guard direction == "f" || direction == "b" else { throw MatrixError(.invalidParam, "dir must be f or b") }
        guard let row = try await context.app.database.roomEvents.event(in: roomID, near: ts, forwards: direction == "f") else {
            throw MatrixError(.notFound, "Unable to find event from \(ts) in direction \(direction)")
        }
        let eventTS = (try? JSON.parse(row.json))?["origin_server_ts"]?.intValue ?? 0
        return .json(["event_id": .string(row.eventID), "origin_server_ts": .int(eventTS)])
    }

    /// `POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin` `{"user_id"?}`: gives a
    /// local user (the caller by default) the power of the most powerful local member able to
    /// change the power levels, who sends the change; a user not in a room that is not public
    /// is invited by that member (Synapse's "Make Room Admin API"). 400 when no local member
    /// has that power.
    static func makeRoomAdmin(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let app = context.app
        let service = app.roomService
        let roomID = try await service.resolve(context.parameter("roomId"))
        let body = try await Membership.optionalBody(context)
        var target = admin.userID
        if let value = body["user_id"] {
            guard let text = value.stringValue else { throw MatrixError(.badJSON, "user_id must be a string") }
            target = try UserID(parsing: text)
        }
        guard target.serverName == app.localServer else {
            throw MatrixError(.invalidParam, "This endpoint can only be used with local users", status: 400)
        }
        let actor = try await service.existingRoom(roomID)
        guard let state = await actor.currentState, let version = await actor.version else { throw MatrixError(.notFound, "Room not found") }
        let powerEvent = state[StateKey(EventType.roomPowerLevels, "")]
        let power = PowerLevels(content: powerEvent?.content, roomVersion: version,
                                create: state[StateKey(EventType.roomCreate, "")])
        let localSuffix = ":" + app.configuration.serverName
        let required = power.requiredLevel(eventType: EventType.roomPowerLevels, isState: true)
        let granter = state.filter { $0.key.type == EventType.roomMember && $0.key.stateKey.hasSuffix(localSuffix)
            && $0.value.membership == MembershipState.join.rawValue }
            .map(\.key.stateKey).filter { power.level(of: $0) >= required }
            .sorted { (power.level(of: $0), $1) > (power.level(of: $1), $0) }.first
        guard let granter, let granterID = try? UserID(parsing: granter) else {
            throw MatrixError(.invalidParam, "No local admin user in room with power to update power levels.", status: 400)
        }
        if power.level(of: target.rawValue) < power.level(of: granter) || power.level(of: target.rawValue) < 100 {
            var content = powerEvent?.content ?? (PowerLevels.defaultContent(creator: granter, roomVersion: version).objectValue ?? [:])
            var users = content["users"]?.objectValue ?? [:]
            // A v12 creator's power is infinite: the new admin gets 100, or more than anyone listed.
            let level = power.level(of: granter) == PowerLevels.infinite ? max(100, users.values.compactMap(\.intValue).max() ?? 0)
                                                                          : power.level(of: granter)
            if !power.creators.contains(target.rawValue) {
                users[target.rawValue] = .int(level)
                content["users"] = .object(users)
                _ = try await service.send(EventDraft(type: EventType.roomPowerLevels, sender: granterID, stateKey: "", content: content),
                                           in: roomID)
            }
        }
        let membership = state[.member(target.rawValue)]?.membership
        let joinRule = state[StateKey(EventType.roomJoinRules, "")]?.content["join_rule"]?.stringValue
        if membership != MembershipState.join.rawValue && membership != MembershipState.invite.rawValue && joinRule != "public" {
            let content = try await service.memberContent(target, membership: MembershipState.invite.rawValue)
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: granterID, stateKey: target.rawValue,
                                                  content: content), in: roomID)
        }
        return .json([:])
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/block`: `block` and, when blocked, by whom.
    static func blockStatus(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        guard let by = try await context.app.database.adminRooms.isBlocked(roomID) else { return .json(["block": false]) }
        return .json(["block": true, "user_id": .string(by)])
    }

    /// `PUT /_synapse/admin/v1/rooms/{roomId}/block` `{"block": bool}`: a blocked room refuses
    /// the joins and invites of local users (403). The room need not exist (as Synapse).
    static func block(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let body = try await context.jsonObject()
        guard let block = body["block"]?.boolValue else { throw MatrixError(.badJSON, "block must be a boolean") }
        try await context.app.database.adminRooms.setBlocked(roomID, block, by: admin.userID, ts: Clock.nowMilliseconds())
        return .json(["block": .bool(block)])
    }
}

extension RoomService {
    /// 403 `M_FORBIDDEN` when an admin blocked the room (`PUT .../rooms/{roomId}/block`, or a
    /// deletion with `block`): no local user joins, is invited or knocks any more.
    func refuseIfBlocked(_ roomID: RoomID) async throws {
        if try await database.adminRooms.isBlocked(roomID) != nil {
            throw MatrixError(.forbidden, "This room has been blocked on this server")
        }
    }
}
