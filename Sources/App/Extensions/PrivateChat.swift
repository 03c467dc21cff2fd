import Actors
import Matrix
import Persistence
import Transport

/// The seed's private chat sessions (`/_synapse/enhanced/private_chat/sessions...`,
/// docs/extensions.md "Private chat"). A session is a view over one ordinary Matrix room:
/// private, invite-only (`private_chat` preset), `is_direct`, marked in the creator's
/// `m.direct` (and the peer's once they take part), optionally encrypted. Messages are the
/// room's `m.room.message` events and read state is the room's receipts, so any Matrix
/// client in the room sees the same conversation; the `private_chat_sessions` table
/// (migration 121) only names the room, its two members and whether the session is closed.
enum PrivateChat {
    static let base = "/_synapse/enhanced/private_chat/sessions"

    static func register(_ routes: inout RouteBuilder) {
        routes.get(base, list)
        routes.post(base, create)
        routes.get(base + "/{sessionId}", get)
        routes.delete(base + "/{sessionId}", close)
        routes.get(base + "/{sessionId}/messages", messages)
        routes.post(base + "/{sessionId}/messages", send)
        routes.put(base + "/{sessionId}/read", markRead)
    }

    /// One row of `private_chat_sessions`.
    struct Session: Sendable {
        var sessionID: String
        var roomID: String
        var creator: String
        var peer: String
        var name: String?
        var createdTs: Int64
        var closedTs: Int64?

        func json(for user: UserID) -> JSON {
            var body: [String: JSON] = [
                "session_id": .string(sessionID), "room_id": .string(roomID), "creator": .string(creator),
                "participants": .array([.string(creator), .string(peer)]),
                "other_user_id": .string(user.rawValue == creator ? peer : creator),
                "created_ts": .int(createdTs), "status": .string(closedTs == nil ? "active" : "closed"),
            ]
            if let name { body["name"] = .string(name) }
            if let closedTs { body["closed_ts"] = .int(closedTs) }
            return .object(body)
        }
    }

    // MARK: store

    static let columns = "session_id, room_id, creator, peer, name, created_ts, closed_ts"

    static func session(_ row: SQLRow) throws -> Session {
        Session(sessionID: try row.text(0), roomID: try row.text(1), creator: try row.text(2), peer: try row.text(3),
                name: try row.optionalText(4), createdTs: try row.int(5), closedTs: try row.optionalInt(6))
    }

    static func load(_ db: Database, _ id: String) async throws -> Session? {
        try await db.read { c in try c.queryFirst("SELECT \(columns) FROM private_chat_sessions WHERE session_id = ?", .text(id)).map(session) }
    }

    static func openSession(_ db: Database, between a: UserID, and b: UserID) async throws -> Session? {
        try await db.read { c in
            try c.queryFirst("""
                SELECT \(columns) FROM private_chat_sessions
                WHERE closed_ts IS NULL AND ((creator = ? AND peer = ?) OR (creator = ? AND peer = ?))
                ORDER BY created_ts DESC
                """, .text(a.rawValue), .text(b.rawValue), .text(b.rawValue), .text(a.rawValue)).map(session)
        }
    }

    // MARK: handlers

    /// The path's session, which the requester must be a member of (404 otherwise, so ids
    /// of other people's sessions are not confirmed).
    static func requesterSession(_ context: RequestContext) async throws -> (Requester, Session) {
        let requester = try await context.requireUser(allowGuests: false)
        let id = try RequestBounds.text(context.parameter("sessionId"), "Session id", maxBytes: 128)
        guard let found = try await load(context.app.database, id),
              found.creator == requester.userID.rawValue || found.peer == requester.userID.rawValue else {
            throw MatrixError(.notFound, "No such private chat session")
        }
        return (requester, found)
    }

    /// `POST /sessions` `{"user_id", "name"?, "encrypted"?}`: the open session with that user,
    /// or a new one with its room (the user invited).
    static func create(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let app = context.app
        let body = try await context.jsonObject()
        guard let target = (body["user_id"] ?? body["peer_id"] ?? body["target_user_id"])?.stringValue else {
            throw MatrixError(.missingParam, "Missing user_id")
        }
        let peer = try UserID(parsing: target)
        guard peer != requester.userID else { throw MatrixError(.invalidParam, "A private chat needs another user") }
        if peer.serverName == app.localServer, try await app.database.accounts.user(id: peer) == nil {
            throw MatrixError(.notFound, "Unknown user \(peer)")
        }
        if body["name"] != nil && body["name"]?.stringValue == nil { throw MatrixError(.badJSON, "name must be a string") }
        let name = try body["name"]?.stringValue.map { try RequestBounds.text($0, "name", maxBytes: 255) }
        if let existing = try await openSession(app.database, between: requester.userID, and: peer) {
            return .json(existing.json(for: requester.userID))
        }
        try context.rateLimit("message", app.configuration.rateLimits.messages, user: requester.userID)
        var room: [String: JSON] = ["preset": "private_chat", "is_direct": true, "invite": [.string(peer.rawValue)]]
        if let name { room["name"] = .string(name) }
        if body["encrypted"]?.boolValue == true {
            room["initial_state"] = [["type": .string(EventType.roomEncryption), "state_key": "",
                                      "content": ["algorithm": "m.megolm.v1.aes-sha2"]]]
        }
        let roomID = try await RoomCreation.create(app, requester.userID, room)
        try await markDirect(app, requester.userID, with: peer, roomID)
        let created = Session(sessionID: "ps_" + Base64.encodeURLSafe(Sodium.randomBytes(12)), roomID: roomID.rawValue,
                              creator: requester.userID.rawValue, peer: peer.rawValue, name: name,
                              createdTs: Clock.nowMilliseconds(), closedTs: nil)
        try await app.database.write { c in
            _ = try c.execute("""
                INSERT INTO private_chat_sessions (session_id, room_id, creator, peer, name, created_ts) VALUES (?, ?, ?, ?, ?, ?)
                """, .text(created.sessionID), .text(created.roomID), .text(created.creator), .text(created.peer),
                created.name.map { .text($0) } ?? .null, .int(created.createdTs))
        }
        return .json(created.json(for: requester.userID))
    }

    /// `GET /sessions` (`?include_closed=true` for closed ones too): the requester's sessions,
    /// newest first.
    static func list(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let limit = try context.limit(default: 100, max: 1000)
        let closedToo = context.query["include_closed"] == "true"
        let me = requester.userID.rawValue
        let sessions = try await context.app.database.read { c in
            try c.query("""
                SELECT \(columns) FROM private_chat_sessions
                WHERE (creator = ? OR peer = ?) AND (? OR closed_ts IS NULL) ORDER BY created_ts DESC LIMIT ?
                """, .text(me), .text(me), .bool(closedToo), .int(Int64(limit))).map(session)
        }
        return .json(["sessions": .array(sessions.map { $0.json(for: requester.userID) }), "total": .int(Int64(sessions.count))])
    }

    /// `GET /sessions/{id}`.
    static func get(_ context: RequestContext) async throws -> HTTPResponse {
        let (requester, found) = try await requesterSession(context)
        var body = found.json(for: requester.userID).objectValue ?? [:]
        let membership = try await context.app.roomService.membership(requester.userID, in: try RoomID(parsing: found.roomID))
        body["membership"] = .string(membership?.membership ?? MembershipState.leave.rawValue)
        return .json(.object(body))
    }

    /// `DELETE /sessions/{id}`: closes the session for both, and the requester leaves its room
    /// (the room and its history stay, as any Matrix room does).
    static func close(_ context: RequestContext) async throws -> HTTPResponse {
        let (requester, found) = try await requesterSession(context)
        let roomID = try RoomID(parsing: found.roomID)
        try await context.app.database.write { c in
            _ = try c.execute("UPDATE private_chat_sessions SET closed_ts = ? WHERE session_id = ? AND closed_ts IS NULL",
                              .int(Clock.nowMilliseconds()), .text(found.sessionID))
        }
        let service = context.app.roomService
        let current = try await service.membership(requester.userID, in: roomID)?.membership
        if current == MembershipState.join || current == MembershipState.invite {
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: requester.userID, stateKey: requester.userID.rawValue,
                                                  content: ["membership": MembershipState.leave.json]), in: roomID)
        }
        return .json([:])
    }

    /// The session's room, open, with the requester joined: an invited peer taking part in
    /// the session joins the room (and marks it in their `m.direct`).
    static func joinedRoom(_ context: RequestContext, _ requester: Requester, _ found: Session) async throws -> RoomID {
        guard found.closedTs == nil else { throw MatrixError(.forbidden, "The private chat session is closed") }
        let app = context.app
        let roomID = try RoomID(parsing: found.roomID)
        let current = try await app.roomService.membership(requester.userID, in: roomID)?.membership
        if current == MembershipState.invite {
            let content = try await app.roomService.memberContent(requester.userID, membership: MembershipState.join.rawValue)
            _ = try await app.roomService.send(EventDraft(type: EventType.roomMember, sender: requester.userID,
                                                          stateKey: requester.userID.rawValue, content: content), in: roomID)
            try await markDirect(app, requester.userID, with: try UserID(parsing: found.creator), roomID)
        } else if current != MembershipState.join {
            throw MatrixError(.forbidden, "You are not in this private chat's room")
        }
        return roomID
    }

    /// `GET /sessions/{id}/messages` (`from`, `limit`, `dir` as `/messages`, newest first by
    /// default): the room's events as `/messages` gives them, with the session id.
    static func messages(_ context: RequestContext) async throws -> HTTPResponse {
        let (requester, found) = try await requesterSession(context)
        let app = context.app
        let roomID = try RoomID(parsing: found.roomID)
        if found.closedTs == nil, try await app.roomService.membership(requester.userID, in: roomID)?.membership == MembershipState.invite {
            _ = try await joinedRoom(context, requester, found)
        }
        let backwards = context.query["dir"] != "f"
        let limit = try context.limit(default: 20, max: Messages.maxLimit)
        let (actor, membership) = try await app.roomService.readableState(requester.userID, roomID)
        let ceiling = RoomService.readCeiling(membership, head: await actor.lastStreamOrdering)
        let from = try context.position("from") ?? (backwards ? ceiling : 0)
        let request = Messages.PageRequest(room: roomID.rawValue, user: requester.userID.rawValue,
                                           joinedNow: membership?.membership == MembershipState.join, backwards: backwards,
                                           from: from, to: nil, ceiling: ceiling, limit: limit, filter: .all)
        let page = try await app.database.read { db in try Messages.readPage(db, request) }
        var body = RawJSONObject(capacity: page.events.reduce(128) { $0 + $1.clientJSON.count + 1 })
        body.value("session_id", .string(found.sessionID))
        body.value("room_id", .string(roomID.rawValue))
        body.raw("chunk", RawJSONObject.array(page.events.map(\.clientJSON)))
        body.value("start", .string("t\(from)"))
        if let end = page.end { body.value("end", .string("t\(end)")) }
        return .rawJSON(body.finish())
    }

    /// `POST /sessions/{id}/messages` `{"body", "msgtype"?}` or `{"content": {...}}`: an
    /// `m.room.message` in the session's room.
    static func send(_ context: RequestContext) async throws -> HTTPResponse {
        let (requester, found) = try await requesterSession(context)
        let body = try await context.jsonObject()
        var content: [String: JSON]
        if let given = body["content"] {
            guard let object = given.objectValue else { throw MatrixError(.badJSON, "content must be an object") }
            content = object
        } else {
            guard let text = body["body"]?.stringValue else { throw MatrixError(.missingParam, "Missing body") }
            content = ["msgtype": .string(body["msgtype"]?.stringValue ?? "m.text"), "body": .string(text)]
        }
        guard content["body"]?.stringValue != nil, content["msgtype"]?.stringValue != nil else {
            throw MatrixError(.badJSON, "A message needs a string body and msgtype")
        }
        let roomID = try await joinedRoom(context, requester, found)
        let final = content
        let reply = try await RoomEvents.sendIdempotent(context.app, requester, roomID, scope: "private_chat/\(found.sessionID)", txn: nil) {
            EventDraft(type: EventType.roomMessage, sender: requester.userID, content: final, txn: $0)
        }
        return reply
    }

    /// `PUT /sessions/{id}/read` `{"event_id"?}`: a read receipt and the fully-read marker at
    /// the event (the room's newest when none is given).
    static func markRead(_ context: RequestContext) async throws -> HTTPResponse {
        let (requester, found) = try await requesterSession(context)
        let body = try await context.jsonObject()
        let roomID = try await joinedRoom(context, requester, found)
        let app = context.app
        var eventID = body["event_id"]?.stringValue
        if body["event_id"] != nil && eventID == nil { throw MatrixError(.badJSON, "event_id must be a string") }
        if eventID == nil {
            eventID = try await app.database.read { db in try RoomEventStore.latestEvents(db, roomID: roomID.rawValue, limit: 1).last?.eventID }
        }
        guard let eventID else { throw MatrixError(.notFound, "The room has no events") }
        try await Ephemeral.putReceipt(app, requester.userID, roomID, type: ReceiptType.read, eventID: eventID, thread: "")
        try await Ephemeral.setFullyRead(app, requester.userID, roomID, eventID)
        return .json(["event_id": .string(eventID)])
    }

    /// Adds the room to `user`'s `m.direct` under `other` (the account data Element reads to
    /// show a room as a direct message).
    static func markDirect(_ app: MyelinApp, _ user: UserID, with other: UserID, _ roomID: RoomID) async throws {
        let accounts = app.accounts
        let position = try await accounts.accountDataStream.withNextPosition { position in
            try await accounts.database.accountData.updateAccountData(userID: user, roomID: nil, type: "m.direct", position: position) { old in
                var direct = old.flatMap { try? JSON.parse(Array($0.utf8)) }?.objectValue ?? [:]
                var rooms = direct[other.rawValue]?.arrayValue ?? []
                if !rooms.contains(.string(roomID.rawValue)) { rooms.append(.string(roomID.rawValue)) }
                direct[other.rawValue] = .array(rooms)
                return JSON.object(direct).encodedString
            }
            return position
        }
        app.roomService.fanout.notify([user], of: StreamChange(.accountData, position))
    }
}
