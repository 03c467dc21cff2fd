import Transport
import Actors
import Matrix
import Persistence

/// Event reports for the admins (Synapse: docs/admin_api/event_reports.md): the reports users
/// made with `POST /rooms/{roomId}/report/{eventId}` (stored by `ReportStore`), listed newest
/// first by default, one with its event's JSON, and deleted.
enum AdminEventReports {
    static let v1 = "/_synapse/admin/v1"

    static func register(_ routes: inout RouteBuilder) {
        routes.get("\(v1)/event_reports", list)
        routes.get("\(v1)/event_reports/{reportId}", details)
        routes.delete("\(v1)/event_reports/{reportId}", delete)
    }

    /// A report as Synapse lists it: the report, the event's sender, the room's name and alias.
    static func fields(_ report: AdminRoomStore.Report, app: MyelinApp,
                       rooms: inout [String: (name: JSON, alias: JSON)]) async throws -> ([String: JSON], [UInt8]?) {
        var object: [String: JSON] = [
            "id": .int(report.id), "received_ts": .int(report.receivedTS), "room_id": .string(report.roomID),
            "event_id": report.eventID.map { .string($0) } ?? .null, "user_id": .string(report.userID),
            "reason": report.reason.map { .string($0) } ?? .null, "score": report.score.map { .int($0) } ?? .null,
            "name": .null, "canonical_alias": .null, "sender": .null,
        ]
        var eventJSON: [UInt8]?
        if let eventID = report.eventID, let row = try await app.database.roomEvents.event(eventID) {
            object["sender"] = .string(row.sender)
            eventJSON = row.json
        }
        // The room's name and alias, read once per room of a page.
        if rooms[report.roomID] == nil {
            var found: (name: JSON, alias: JSON) = (.null, .null)
            if let room = try? RoomID(parsing: report.roomID),
               let summary = try await app.database.adminRooms.summaries([room.rawValue], serverName: app.configuration.serverName,
                                                                        types: [EventType.roomName, EventType.roomCanonicalAlias]).first {
                let fields = AdminRooms.Summary(summary).fields
                found = (fields["name"] ?? .null, fields["canonical_alias"] ?? .null)
            }
            rooms[report.roomID] = found
        }
        object["name"] = rooms[report.roomID]?.name ?? .null
        object["canonical_alias"] = rooms[report.roomID]?.alias ?? .null
        return (object, eventJSON)
    }

    /// `GET /_synapse/admin/v1/event_reports`: `from` (offset), `limit`, `dir` (`b`: newest
    /// first, the default), `room_id`, `user_id` (the reporter); `next_token` while more follow.
    static func list(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        let query = context.query
        let from = try context.limit("from", default: 0, max: Int(Int32.max))
        let limit = try context.limit(default: 100, max: AdminRooms.maxLimit)
        let forwards: Bool
        switch query["dir"] ?? "b" {
        case "b": forwards = false
        case "f": forwards = true
        default: throw MatrixError(.invalidParam, "Unknown direction: \(query["dir"] ?? "")")
        }
        let room = query["room_id"], user = query["user_id"]
        if let room, room.utf8.count > 255 { throw MatrixError(.invalidParam, "room_id is too long") }
        if let user, user.utf8.count > 255 { throw MatrixError(.invalidParam, "user_id is too long") }
        let (reports, total) = try await app.database.adminRooms.eventReports(offset: from, limit: limit, forwards: forwards,
                                                                              room: room, user: user)
        var listed: [JSON] = []
        var rooms: [String: (name: JSON, alias: JSON)] = [:]
        for report in reports { listed.append(.object(try await fields(report, app: app, rooms: &rooms).0)) }
        var body: [String: JSON] = ["event_reports": .array(listed), "total": .int(total)]
        if Int64(from + reports.count) < total { body["next_token"] = .int(Int64(from + reports.count)) }
        return .json(.object(body))
    }

    static func reportID(_ context: RequestContext) throws -> Int64 {
        guard let id = Int64(context.parameter("reportId")), id >= 0 else {
            throw MatrixError(.invalidParam, "The report_id parameter must be a string representing a positive integer.")
        }
        return id
    }

    /// `GET /_synapse/admin/v1/event_reports/{reportId}`: the report with `event_json`.
    static func details(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let id = try reportID(context)
        guard let report = try await context.app.database.adminRooms.eventReport(id: id) else {
            throw MatrixError(.notFound, "Event report not found")
        }
        var rooms: [String: (name: JSON, alias: JSON)] = [:]
        let (object, eventJSON) = try await fields(report, app: context.app, rooms: &rooms)
        var body = RawJSONObject()
        for (key, value) in object.sorted(by: { $0.key < $1.key }) { body.value(key, value) }
        body.raw("event_json", eventJSON ?? Array("null".utf8))
        return .rawJSON(body.finish())
    }

    /// `DELETE /_synapse/admin/v1/event_reports/{reportId}`.
    static func delete(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let id = try reportID(context)
        guard try await context.app.database.adminRooms.deleteEventReport(id: id) else {
            throw MatrixError(.notFound, "Event report not found")
        }
        return .json([:])
    }
}
