import Actors
import Matrix
import Persistence
import Transport

/// The deprecated pre-sync endpoints Synapse still serves (spec: "Legacy" / removed in
/// v1.x but used by old clients and bots): `GET /events` (a long-poll of new events across
/// rooms, `from`/`timeout`, returning `chunk`, `start`, `end`) and `GET /initialSync`
/// (every room with its state and recent messages). Both reuse the sync machinery
/// (`SyncService.respond`) and shape its `SyncResult` their own way, concatenating the
/// stored event bytes as `/sync` does; they are not on any hot path.
enum LegacySync {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/events", events)
        routes.client(.get, "/initialSync", initialSync)
        routes.client(.get, "/rooms/{roomId}/initialSync", roomInitialSync)
    }

    /// `GET /events`: the joined rooms' new timeline events, then their ephemeral events
    /// with a `room_id`.
    static func events(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        if requester.isGuest && context.query["room_id"] == nil {
            // Synapse: guests stream one room at a time (SyTest "Guest user cannot call /events globally").
            throw MatrixError(.guestAccessForbidden, "Guest access not allowed")
        }
        _ = try context.limit(default: 10, max: RequestBounds.maxTimelineLimit)  // checked (a 400 when not a count)
        let onlyRoom = try context.query["room_id"].map { try RoomID(parsing: $0) }
        if let onlyRoom {
            // One room: the requester must be able to read it (joined, or world readable);
            // the stream itself carries joined rooms only.
            _ = try await app.roomService.readableState(requester.userID, onlyRoom)
        }
        let since = try context.query["from"].map { try StreamToken(parsing: $0) } ?? app.sync.currentToken()
        let timeout = try context.integer("timeout", in: 0...Int64.max).map { min($0, Sync.maxTimeout) } ?? 30_000
        let request = Sync.Request(user: requester.userID, device: requester.deviceID ?? "", since: since,
                                   timeoutMs: max(timeout, 0), filter: nil, fullState: false)
        let result = try await app.sync.respond(app, request, SyncFilter.none)
        var chunk: [[UInt8]] = []
        for plan in result.rooms where plan.section == .join && (onlyRoom == nil || onlyRoom?.rawValue == plan.roomID) {
            chunk += plan.timeline.map { LegacyFormat.withUserID(SyncResult.clientBytes($0, for: request)) }
            chunk += plan.ephemeral.map { withRoomID($0, plan.roomID) }
            chunk += plan.accountData.map { withRoomID($0, plan.roomID) }
        }
        // Global account data changes too (Synapse streams them; SyTest reads tags and
        // account data from /events).
        if onlyRoom == nil { chunk += result.accountData }
        var out = RawJSONObject(capacity: chunk.reduce(128) { $0 + $1.count + 1 })
        out.raw("chunk", RawJSONObject.array(chunk))
        out.value("start", .string(since.serialized))
        out.value("end", .string(result.token.serialized))
        return .rawJSON(out.finish())
    }

    /// `GET /initialSync`: joined rooms with their recent messages and state, invites with
    /// their stripped state, and the global account data.
    static func initialSync(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let limit = try context.limit(default: 10, max: RequestBounds.maxTimelineLimit)
        // `archived=true`: the rooms the user left too, as they were at the leave.
        let archived = context.query["archived"] == "true"
        let filter = SyncFilter(["room": ["timeline": ["limit": .int(Int64(limit))], "include_leave": .bool(archived)]])
        let request = Sync.Request(user: requester.userID, device: requester.deviceID ?? "", since: nil, timeoutMs: 0,
                                   filter: ObjectIdentifier(filter), fullState: false)
        let result = try await app.sync.respond(app, request, filter)
        let end = JSON.string(result.token.serialized)
        var rooms: [[UInt8]] = []
        for plan in result.rooms where plan.section == .join {
            rooms.append(try await joinedRoom(plan, result, request, app).finish())
        }
        for plan in result.rooms where plan.section == .leave {
            guard let roomID = try? RoomID(parsing: plan.roomID),
                  let entry = try? await readableRoom(app, requester.userID, roomID, limit: limit) else { continue }
            rooms.append(entry.finish())
        }
        for plan in result.rooms where plan.section == .invite {
            var entry = RawJSONObject()
            entry.value("room_id", .string(plan.roomID))
            entry.value("membership", MembershipState.invite.json)
            entry.value("invite_state", ["events": .array(plan.strippedState)])
            rooms.append(entry.finish())
        }
        var out = RawJSONObject(capacity: rooms.reduce(256) { $0 + $1.count + 1 })
        out.value("end", end)
        out.raw("rooms", RawJSONObject.array(rooms))
        let joined = result.rooms.filter { $0.section == .join }.map(\.roomID)
        // The rooms' read receipts, each `m.receipt` event with its `room_id` (Synapse's shape).
        let receipts = result.rooms.filter { $0.section == .join }.flatMap { plan in
            plan.ephemeral.filter { (try? JSON.parse($0))?["type"]?.stringValue == EventType.receipt }.map { withRoomID($0, plan.roomID) }
        }
        out.raw("receipts", RawJSONObject.array(receipts))
        out.raw("presence", RawJSONObject.array(try await LegacyFormat.presence(app, requester.userID, rooms: joined)))
        out.raw("account_data", RawJSONObject.array(result.accountData))
        return .rawJSON(out.finish())
    }

    /// `GET /rooms/{roomId}/initialSync`: one joined room as `/initialSync` shows it, with
    /// `presence` and `receipts` lists (empty).
    static func roomInitialSync(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let limit = try context.limit(default: 10, max: RequestBounds.maxTimelineLimit)
        let filter = SyncFilter(["room": ["rooms": [.string(roomID.rawValue)], "timeline": ["limit": .int(Int64(limit))],
                                          "include_leave": false]])
        let request = Sync.Request(user: requester.userID, device: requester.deviceID ?? "", since: nil, timeoutMs: 0,
                                   filter: ObjectIdentifier(filter), fullState: false)
        let result = try await app.sync.respond(app, request, filter)
        guard let plan = result.rooms.first(where: { $0.section == .join && $0.roomID == roomID.rawValue }) else {
            return .rawJSON(try await readableRoom(app, requester.userID, roomID, limit: limit).finish())
        }
        var entry = try await joinedRoom(plan, result, request, app)
        entry.raw("presence", RawJSONObject.array(try await LegacyFormat.presence(app, requester.userID, rooms: [plan.roomID])))
        entry.raw("receipts", RawJSONObject.array([]))
        return .rawJSON(entry.finish())
    }

    /// `/rooms/{roomId}/initialSync` of a room the user is not in but may read (world
    /// readable, or left: then as it was at the leave), as Synapse serves it for peeking.
    static func readableRoom(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID, limit: Int) async throws -> RawJSONObject {
        let (actor, membership) = try await app.roomService.readableState(user, roomID)
        let ceiling = RoomService.readCeiling(membership, head: await actor.lastStreamOrdering)
        let request = Messages.PageRequest(room: roomID.rawValue, user: user.rawValue, joinedNow: false, backwards: true,
                                           from: ceiling, to: nil, ceiling: ceiling, limit: limit, filter: .all)
        let page = try await app.database.read { db in try Messages.readPage(db, request) }
        let stateIDs: [String]
        let left = membership.map { $0.membership == MembershipState.leave || $0.membership == MembershipState.ban } ?? false
        if left {
            stateIDs = try await app.database.roomEvents.state(of: roomID, atOrBefore: ceiling).map(\.eventID)
        } else {
            stateIDs = (await actor.currentState ?? [:]).values.map(\.eventID.rawValue)
        }
        var messages = RawJSONObject()
        messages.raw("chunk", RawJSONObject.array(page.events.reversed().map { LegacyFormat.withUserID($0.clientJSON) }))
        messages.value("start", .string("t\(page.end ?? 0)"))
        // A stream token, so that `/events?from=` can continue from it (as from the joined form).
        messages.value("end", .string(app.sync.currentToken().serialized))
        var entry = RawJSONObject()
        entry.value("room_id", .string(roomID.rawValue))
        entry.value("membership", .string(membership?.membership ?? MembershipState.leave.rawValue))
        entry.value("visibility", .string(try await app.database.directory.visibility(of: roomID)))
        entry.object("messages", messages)
        entry.raw("state", RawJSONObject.array(try await app.roomService.clientEvents(stateIDs.sorted()).map(LegacyFormat.withUserID)))
        // No presence of a room the user left (it would be news from after the leave).
        entry.raw("presence", RawJSONObject.array(left ? [] : try await LegacyFormat.presence(app, user, rooms: [roomID.rawValue])))
        entry.raw("receipts", RawJSONObject.array([]))
        entry.raw("account_data", RawJSONObject.array([]))
        return entry
    }

    /// A joined room's entry of `/initialSync`: its recent messages, state and visibility in
    /// the directory.
    static func joinedRoom(_ plan: SyncBuilder.RoomPlan, _ result: SyncResult, _ request: Sync.Request,
                           _ app: MyelinApp) async throws -> RawJSONObject {
        let timeline = plan.timeline.map { LegacyFormat.withUserID(SyncResult.clientBytes($0, for: request)) }
        var messages = RawJSONObject()
        messages.raw("chunk", RawJSONObject.array(timeline))
        messages.value("start", .string("t\(plan.prevBatch)"))
        messages.value("end", .string(result.token.serialized))
        let stateInTimeline = zip(plan.timeline, timeline).filter { $0.0.stateKey != nil }.map(\.1)
        var entry = RawJSONObject()
        entry.value("room_id", .string(plan.roomID))
        entry.value("membership", MembershipState.join.json)
        entry.value("visibility", .string(try await app.database.directory.visibility(of: RoomID(parsing: plan.roomID))))
        entry.object("messages", messages)
        entry.raw("state", RawJSONObject.array(result.stateEvents(of: plan).map(LegacyFormat.withUserID) + stateInTimeline))
        entry.raw("account_data", RawJSONObject.array(plan.accountData))
        return entry
    }

    /// An encoded event object with `room_id` as its first member.
    static func withRoomID(_ event: [UInt8], _ roomID: String) -> [UInt8] {
        guard event.first == UInt8(ascii: "{"), event.count > 2 else { return event }
        var out: [UInt8] = Array("{\"room_id\":".utf8)
        out.reserveCapacity(event.count + roomID.utf8.count + 16)
        JSON.string(roomID).encode(into: &out)
        out.append(UInt8(ascii: ","))
        out += event.dropFirst()
        return out
    }
}
