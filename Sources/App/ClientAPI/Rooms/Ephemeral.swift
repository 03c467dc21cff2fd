import Transport
import Actors
import Matrix
import Persistence

/// Typing notices, read receipts and read markers (spec: "Typing Notifications",
/// "Receipts", "Fully read markers"). Typing lives in memory with server-side expiry;
/// receipts are stored with a position on the receipts stream; `m.fully_read` is room
/// account data. Each change wakes the room's members' long-polls.
enum Ephemeral {
    static let maxTypingTimeout: Int64 = 120_000

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.put, "/rooms/{roomId}/typing/{userId}", setTyping)
        routes.client(.post, "/rooms/{roomId}/receipt/{receiptType}/{eventId}", sendReceipt)
        routes.client(.post, "/rooms/{roomId}/read_markers", setReadMarkers)
    }

    /// `PUT /rooms/{roomId}/typing/{userId}` (spec: "Typing Notifications").
    static func setTyping(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireSelf("Cannot set another user's typing state")
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        try context.rateLimit("ephemeral", context.app.configuration.rateLimits.ephemeral, user: requester.userID)
        let body = try await context.jsonObject()
        guard let typing = body["typing"]?.boolValue else { throw MatrixError(.badJSON, "Missing typing") }
        let service = context.app.roomService
        try await service.requireJoined(requester.userID, roomID)
        var until: Int64?
        if typing {
            let timeout = min(body["timeout"]?.intValue ?? 30_000, maxTypingTimeout)
            until = Clock.nowMilliseconds() + max(timeout, 0)
        }
        if let position = service.typing.set(requester.userID, in: roomID, until: until) {
            await service.notifyMembers(of: roomID, StreamChange(.typing, position))
        }
        await context.app.sendTypingEDU(requester.userID, in: roomID, typing: typing)
        return .json([:])
    }

    /// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` (spec: "Receipts").
    static func sendReceipt(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let type = context.parameter("receiptType")
        let eventID = context.parameter("eventId")
        try context.rateLimit("ephemeral", context.app.configuration.rateLimits.ephemeral, user: requester.userID)
        let body = try await Membership.optionalBody(context)
        let thread = try threadID(body["thread_id"])
        switch type {
        case ReceiptType.read, ReceiptType.readPrivate:
            try await putReceipt(context.app, requester.userID, roomID, type: type, eventID: eventID, thread: thread)
        case EventType.fullyRead:
            try await setFullyRead(context.app, requester.userID, roomID, eventID)
        default:
            throw MatrixError(.invalidParam, "Receipt type must be m.read, m.read.private or m.fully_read")
        }
        return .json([:])
    }

    /// `POST /rooms/{roomId}/read_markers` (spec: "Fully read markers").
    static func setReadMarkers(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        try context.rateLimit("ephemeral", context.app.configuration.rateLimits.ephemeral, user: requester.userID)
        let body = try await context.jsonObject()
        if let fully = body["m.fully_read"]?.stringValue {
            try await setFullyRead(context.app, requester.userID, roomID, fully)
        }
        for type in [ReceiptType.read, ReceiptType.readPrivate] {
            if let event = body[type]?.stringValue {
                try await putReceipt(context.app, requester.userID, roomID, type: type, eventID: event, thread: "")
            }
        }
        return .json([:])
    }

    /// A receipt's `thread_id`: absent (unthreaded), `main`, or the event id of a thread
    /// root (spec: "Threaded read receipts"); each distinct value is a row every member's
    /// sync loads, so anything else is refused as Synapse does.
    static func threadID(_ value: JSON?) throws -> String {
        guard let value, !value.isNull else { return "" }
        guard let text = value.stringValue else { throw MatrixError(.invalidParam, "thread_id must be a string") }
        if text == "main" { return text }
        guard (try? EventID(parsing: text)) != nil else {  // at most 255 bytes, as every event id
            throw MatrixError(.invalidParam, "thread_id must be main or the event id of a thread root")
        }
        return text
    }

    static func putReceipt(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID, type: String, eventID: String,
                           thread: String) async throws {
        let service = app.roomService
        try await service.requireJoined(user, roomID)
        let target = try await RoomEvents.visibleEvent(app, user, roomID, eventID)
        let storedThread = thread == "main" ? "main" : thread
        if let current = try await app.database.receipts.receiptEventID(room: roomID, type: type, user: user, thread: storedThread),
           let previous = try await app.database.roomEvents.event(current), previous.streamOrdering > target.streamOrdering {
            // Receipts only move forward (as Synapse): one for an earlier event is ignored.
            return
        }
        // A thread is named by its root, an event of this room the user may see: so the
        // distinct thread ids (a row each) are bounded by the room's events.
        if !thread.isEmpty && thread != "main" {
            do { _ = try await RoomEvents.visibleEvent(app, user, roomID, thread) } catch {
                throw MatrixError(.invalidParam, "thread_id is not a thread root of this room")
            }
        }
        let receipt = ReceiptStore.Receipt(roomID: roomID.rawValue, type: type, userID: user.rawValue,
                                           threadID: thread == "main" ? "main" : thread, eventID: eventID,
                                           ts: Clock.nowMilliseconds(), streamID: 0)
        let position = try await service.receipts.put(receipt)
        // The user read the room: their counts start again from this receipt.
        app.sync.unreadCounts.invalidate(user, roomID)
        if type == ReceiptType.readPrivate {
            service.fanout.notify([user], of: StreamChange(.receipts, position))
        } else {
            await service.notifyMembers(of: roomID, StreamChange(.receipts, position))
            await app.sendReceiptEDU(user, in: roomID, eventID: eventID, thread: receipt.threadID)
        }
    }

    static func setFullyRead(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID, _ eventID: String) async throws {
        try await app.roomService.requireJoined(user, roomID)
        _ = try await RoomEvents.visibleEvent(app, user, roomID, eventID)
        let accounts = app.accounts
        let content = JSON.object(["event_id": .string(eventID)]).encodedString
        let position = try await accounts.accountDataStream.withNextPosition { position in
            try await accounts.database.accountData.updateAccountData(userID: user, roomID: roomID, type: EventType.fullyRead,
                                                                     position: position) { _ in content }
            return position
        }
        app.roomService.fanout.notify([user], of: StreamChange(.accountData, position))
    }
}
