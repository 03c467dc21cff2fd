import Actors
import Matrix
import Persistence
import Transport

/// The room part of the server-server API: transactions (`/send`), event, state and
/// history retrieval, and membership (`make_join`/`send_join` v2, `make_leave`/`send_leave`
/// v2, `invite` v2, `make_knock`/`send_knock`). Every handler authenticates the calling
/// server first (`requireServer`) and applies the room's server ACL.
enum FederationRoomEndpoints {
    static let prefix = "/_matrix/federation"

    static func register(_ routes: inout RouteBuilder) {
        routes.put(prefix + "/v1/send/{txnId}", send)
        routes.get(prefix + "/v1/event/{eventId}", event)
        routes.get(prefix + "/v1/state/{roomId}", state)
        routes.get(prefix + "/v1/state_ids/{roomId}", stateIDs)
        routes.post(prefix + "/v1/get_missing_events/{roomId}", getMissingEvents)
        routes.get(prefix + "/v1/event_auth/{roomId}/{eventId}", eventAuth)
        routes.get(prefix + "/v1/backfill/{roomId}", backfill)
        FederationMembershipEndpoints.register(&routes)
        FederationSeedEndpoints.register(&routes)
    }

    /// `PUT /_matrix/federation/v1/send/{txnId}`: at most 50 PDUs and 100 EDUs; idempotent
    /// per origin and transaction id (the recorded answer is replayed, nothing re-applied).
    static func send(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let app = context.app
        let txnID = context.parameter("txnId")
        guard !txnID.isEmpty, txnID.utf8.count <= 255 else { throw MatrixError(.invalidParam, "Bad transaction id") }
        let store = FederationInboundStore(database: app.database)
        if let replay = try await store.transactionResponse(origin: origin.rawValue, txnID: txnID) {
            return HTTPResponse(contentType: "application/json", bytes: replay)
        }
        let body = try await context.jsonObject()
        let pdus = body["pdus"]?.arrayValue ?? []
        let edus = body["edus"]?.arrayValue ?? []
        guard pdus.count <= 50, edus.count <= 100 else {
            throw MatrixError(.badJSON, "A transaction holds at most 50 PDUs and 100 EDUs")
        }
        // Group by room, keeping the order of arrival within each room.
        var order: [RoomID] = []
        var byRoom: [RoomID: [JSON]] = [:]
        var results: [String: JSON] = [:]
        for raw in pdus {
            guard let text = raw["room_id"]?.stringValue, let roomID = try? RoomID(parsing: text) else {
                if let id = FederationInbound.eventID(of: raw, app: app) { results[id] = ["error": "missing room_id"] }
                continue
            }
            if byRoom[roomID] == nil { order.append(roomID) }
            byRoom[roomID, default: []].append(raw)
        }
        for roomID in order {
            let roomResults = await FederationInbound.receive(byRoom[roomID] ?? [], roomID: roomID, origin: origin, app: app)
            results.merge(roomResults) { _, new in new }
        }
        await app.receiveEDUs(edus, origin: origin)
        let response = JSON.object(["pdus": .object(results)]).encoded()
        try await store.recordTransaction(origin: origin.rawValue, txnID: txnID, response: response, now: Clock.nowMilliseconds())
        return HTTPResponse(contentType: "application/json", bytes: response)
    }

    /// A room the caller may read: resident here, and its ACL allows the caller.
    static func readableRoom(_ context: RequestContext, _ origin: ServerName) async throws -> (RoomID, RoomActor, RoomVersion) {
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let actor = try await context.app.roomService.existingRoom(roomID)
        guard let version = await actor.version else { throw MatrixError(.notFound, "Unknown room") }
        try await FederationPDUs.requireACL(origin, actor)
        return (roomID, actor, version)
    }

    /// A room whose history and state the caller may read: `readableRoom`, and the caller has a
    /// member joined (as Synapse's `assert_host_in_room`: history is for the room's servers).
    static func roomOfHost(_ context: RequestContext, _ origin: ServerName) async throws -> (RoomID, RoomActor, RoomVersion) {
        let room = try await readableRoom(context, origin)
        guard await room.1.joinedServers.contains(origin) else { throw MatrixError(.forbidden, "Host not in room") }
        return room
    }

    /// `GET /_matrix/federation/v1/event/{eventId}`.
    static func event(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let app = context.app
        let id = context.parameter("eventId")
        // Rejected events are kept only to recognise them; never served (server-server API, "Rejection").
        guard let row = try await app.database.roomEvents.event(id),
              try await app.database.read({ db in try EventStateStore.rejected(db, ids: [id]).isEmpty }) else {
            throw MatrixError(.notFound, "Unknown event")
        }
        let roomID = try RoomID(parsing: row.roomID)
        let actor = try await app.roomService.existingRoom(roomID)
        try await FederationPDUs.requireACL(origin, actor)
        guard await actor.joinedServers.contains(origin), let version = await actor.version,
              let id = try? EventID(parsing: row.eventID) else { throw MatrixError(.forbidden, "Host not in room") }
        let pdu = try PDU(bytes: row.json, roomVersion: version, eventID: id)
        let served = try await FederationVisibility.filter([pdu], for: origin, version: version, app: app)
        return .json(["origin": .string(app.localServer.rawValue), "origin_server_ts": .int(Clock.nowMilliseconds()),
                      "pdus": FederationPDUs.wire(served)])
    }

    /// The `event_id` query parameter of `/state` and `/state_ids`.
    static func stateAnswer(_ context: RequestContext) async throws -> (state: [PDU], chain: [PDU]) {
        let origin = try await requireServer(context)
        let (roomID, _, version) = try await roomOfHost(context, origin)
        guard let id = context.query["event_id"] else { throw MatrixError(.missingParam, "Missing event_id") }
        let eventID = try EventID(parsing: id)
        guard let state = try await FederationPDUs.stateBefore(eventID, roomID: roomID, version: version, app: context.app) else {
            throw MatrixError(.notFound, "Unknown event")
        }
        let chain = try await FederationPDUs.authChain(of: state, roomID: roomID, version: version, app: context.app)
        return (state, chain)
    }

    /// `GET /_matrix/federation/v1/state/{roomId}?event_id=`: the state before the event and its auth chain.
    static func state(_ context: RequestContext) async throws -> HTTPResponse {
        let (state, chain) = try await stateAnswer(context)
        return .json(["pdus": FederationPDUs.wire(state), "auth_chain": FederationPDUs.wire(chain)])
    }

    /// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`.
    static func stateIDs(_ context: RequestContext) async throws -> HTTPResponse {
        let (state, chain) = try await stateAnswer(context)
        return .json(["pdu_ids": .array(state.map { .string($0.eventID.rawValue) }),
                      "auth_chain_ids": .array(chain.map { .string($0.eventID.rawValue) })])
    }

    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}` (limit at most 100).
    static func getMissingEvents(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let (roomID, _, version) = try await roomOfHost(context, origin)
        let body = try await context.jsonObject()
        func ids(_ name: String) -> [EventID] {
            (body[name]?.arrayValue ?? []).prefix(100).compactMap { $0.stringValue.flatMap { try? EventID(parsing: $0) } }
        }
        let limit = Int(max(1, min(body["limit"]?.intValue ?? 10, 100)))
        let events = try await FederationPDUs.walkBack(from: ids("latest_events"), earliest: Set(ids("earliest_events")),
                                                      minDepth: body["min_depth"]?.intValue ?? 0, limit: limit,
                                                      includeLatest: false, roomID: roomID, version: version, app: context.app)
        let served = try await FederationVisibility.filter(events, for: origin, version: version, app: context.app)
        return .json(["events": FederationPDUs.wire(served)])
    }

    /// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`.
    static func eventAuth(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let (roomID, _, version) = try await roomOfHost(context, origin)
        let eventID = try EventID(parsing: context.parameter("eventId"))
        guard let (row, pdu) = try await FederationPDUs.load([eventID.rawValue], version: version, app: context.app).first,
              row.roomID == roomID.rawValue else { throw MatrixError(.notFound, "Unknown event") }
        let chain = try await FederationPDUs.authChain(of: [pdu], roomID: roomID, version: version, app: context.app)
        return .json(["auth_chain": FederationPDUs.wire(chain)])
    }

    /// `GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=` (limit at most 100, at most 50 `v`).
    static func backfill(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let (roomID, _, version) = try await roomOfHost(context, origin)
        let from = queryValues(context, "v").compactMap { try? EventID(parsing: $0) }
        let limit = Int(max(1, min(Int64(context.query["limit"] ?? "") ?? 10, 100)))
        let events = try await FederationPDUs.walkBack(from: from, earliest: [], minDepth: 0, limit: limit, includeLatest: true,
                                                      roomID: roomID, version: version, app: context.app)
        let served = try await FederationVisibility.filter(events.reversed(), for: origin, version: version, app: context.app)
        return .json(["origin": .string(context.app.localServer.rawValue), "origin_server_ts": .int(Clock.nowMilliseconds()),
                      "pdus": FederationPDUs.wire(served)])
    }

    /// Every value of a repeated query parameter (`ver`, `v`, `via`), percent-decoded, at most 50.
    static func queryValues(_ context: RequestContext, _ name: String) -> [String] {
        guard let query = context.request.head.query else { return [] }
        var values: [String] = []
        for pair in query.split(separator: "&").prefix(200) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            values.append(PercentDecoding.decode(parts[1], plusAsSpace: true) ?? String(parts[1]))
            if values.count == 50 { break }
        }
        return values
    }
}
