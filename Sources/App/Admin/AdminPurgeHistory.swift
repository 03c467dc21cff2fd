import Transport
import Actors
import Matrix
import Persistence

/// Purging a room's history (Synapse: docs/admin_api/purge_history_api.md; the seed's
/// `POST /_synapse/admin/v1/purge_history` with `room_id` in the body): the events before a
/// point leave the store, except what the room needs to go on (its current state events and
/// its forward extremities, as Synapse never purges the latest events) and, unless
/// `delete_local_events`, the events of local users. Runs in the background; its status is
/// kept in `admin_room_tasks` (`purge_history_status`).
enum AdminPurgeHistory {
    static let v1 = "/_synapse/admin/v1"
    static let taskKind = "purge_history"

    static func register(_ routes: inout RouteBuilder) {
        routes.post("\(v1)/purge_history", purgeSeed)
        routes.post("\(v1)/purge_history/{roomId}", purgeSynapse)
        routes.post("\(v1)/purge_history/{roomId}/{eventId}", purgeSynapse)
        routes.get("\(v1)/purge_history_status/{purgeId}", status)
    }

    /// `POST /_synapse/admin/v1/purge_history` (the seed): `room_id` in the body; the point is
    /// `purge_up_to_event_id` or `purge_up_to_ts` when given, else now (all but what the
    /// room needs).
    static func purgeSeed(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let body = try await context.jsonObject()
        guard let text = body["room_id"]?.stringValue else { throw MatrixError(.badJSON, "room_id is required") }
        return try await start(context.app, try RoomID(parsing: text), eventID: nil, body: body, pointRequired: false)
    }

    /// `POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]` (Synapse).
    static func purgeSynapse(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let eventID = context.parameters["eventId"]
        let body = try await Membership.optionalBody(context)
        return try await start(context.app, roomID, eventID: eventID, body: body, pointRequired: true)
    }

    /// Resolves the purge point (a position: events before it go) and starts the purge.
    static func start(_ app: MyelinApp, _ roomID: RoomID, eventID pathEvent: String?, body: [String: JSON],
                      pointRequired: Bool) async throws -> HTTPResponse {
        guard try await app.database.roomEvents.roomVersion(of: roomID) != nil else {
            throw MatrixError(.notFound, "Unknown room \(roomID)")
        }
        var deleteLocal = false
        if let value = body["delete_local_events"] {
            guard let flag = value.boolValue else { throw MatrixError(.badJSON, "delete_local_events must be a boolean") }
            deleteLocal = flag
        }
        let before: Int64
        if let id = pathEvent ?? body["purge_up_to_event_id"]?.stringValue {
            guard let row = try await app.database.roomEvents.event(try EventID(parsing: id).rawValue), row.roomID == roomID.rawValue else {
                throw MatrixError(.notFound, "Event \(id) not found in room \(roomID)")
            }
            before = row.streamOrdering
        } else if let value = body["purge_up_to_ts"] {
            guard let ts = value.intValue, ts >= 0 else { throw MatrixError(.badJSON, "purge_up_to_ts must be a non-negative integer") }
            // The first event at or after `ts`: everything older goes.
            before = try await app.database.roomEvents.event(in: roomID, near: ts, forwards: true)?.streamOrdering ?? .max
        } else if pointRequired {
            throw MatrixError(.unknown, "must specify purge_up_to_event_id or purge_up_to_ts", status: 400)
        } else {
            before = .max
        }
        let store = app.database.adminRooms
        try await AdminRoomDeletion.settleInterruptedTasks(app)
        if try await store.tasks(room: roomID, kind: taskKind).contains(where: { $0.status == "scheduled" || $0.status == "active" }) {
            throw MatrixError(.unknown, "History purge already in progress for \(roomID)", status: 400)
        }
        let id = SHA256Hasher.hex(Sodium.randomBytes(12))
        try await store.createTask(id: id, kind: taskKind, room: roomID, status: "active", ts: Clock.nowMilliseconds())
        let serverName = app.configuration.serverName
        let rooms = app.roomService.rooms
        Task.detached {
            do {
                let removed = try await store.purgeHistory(roomID, before: before, deleteLocalEvents: deleteLocal, serverName: serverName)
                // The actor's ring of recent events may hold purged events: rebuild it from the store.
                await rooms.registry.remove(roomID)
                try await store.updateTask(id: id, status: "complete", result: JSON.object(["removed": .int(Int64(removed))]).encodedString,
                                           ts: Clock.nowMilliseconds())
            } catch {
                AdminRoomDeletion.logger.error("purging the history of \(roomID) failed: \(error)")
                try? await store.updateTask(id: id, status: "failed", error: (error as? MatrixError)?.message ?? "Internal error",
                                            ts: Clock.nowMilliseconds())
            }
        }
        return .json(["purge_id": .string(id)])
    }

    /// `GET /_synapse/admin/v1/purge_history_status/{purgeId}`: `active`, `complete` or
    /// `failed` (with `error`).
    static func status(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let id = context.parameter("purgeId")
        try await AdminRoomDeletion.settleInterruptedTasks(context.app)
        guard id.utf8.count <= 64, let task = try await context.app.database.adminRooms.task(id: id, kind: taskKind) else {
            throw MatrixError(.notFound, "purge id '\(id)' not found")
        }
        var body: [String: JSON] = ["status": .string(task.status)]
        if let error = task.error { body["error"] = .string(error) }
        return .json(.object(body))
    }
}
