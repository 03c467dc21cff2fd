import Transport
import Actors
import Matrix
import Persistence

/// Sending and reading events (spec: client-server API, "Sending events to a room",
/// "Getting events for a room", "Redactions"): send with transaction ids, state, single
/// events, redaction. Sends go through the room's actor; reads check history visibility.
enum RoomEvents {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/rooms/{roomId}/event/{eventId}", getEvent)
        routes.client(.get, "/rooms/{roomId}/state", getAllState)
        routes.client(.get, "/rooms/{roomId}/state/{eventType}/{stateKey}", getStateEvent)
        routes.client(.get, "/rooms/{roomId}/state/{eventType}", getStateEventEmptyKey)
        routes.client(.put, "/rooms/{roomId}/state/{eventType}/{stateKey}", putStateEvent)
        routes.client(.put, "/rooms/{roomId}/state/{eventType}", putStateEventEmptyKey)
        routes.client(.put, "/rooms/{roomId}/send/{eventType}/{txnId}", sendMessage)
        routes.client(.post, "/rooms/{roomId}/send/{eventType}", sendMessageWithoutTransaction)
        routes.client(.put, "/rooms/{roomId}/redact/{eventId}/{txnId}", redactEvent)
        routes.client(.post, "/rooms/{roomId}/redact/{eventId}", redactEventWithoutTransaction)
    }

    /// `GET /rooms/{roomId}/event/{eventId}` (spec: "Getting events for a room").
    static func getEvent(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let eventID = context.parameter("eventId")
        let row = try await visibleEvent(context.app, requester.userID, roomID, eventID)
        return .rawJSON(row.clientJSON)
    }

    /// `GET /rooms/{roomId}/state` (spec: "Getting events for a room").
    static func getAllState(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let ids = try await stateIDs(context.app, requester.userID, roomID)
        return .rawJSON(RawJSONObject.array(try await context.app.roomService.clientEvents(ids.map(\.value))))
    }

    /// `GET /rooms/{roomId}/state/{eventType}/{stateKey}` (spec: "Getting events for a room").
    static func getStateEvent(_ context: RequestContext) async throws -> HTTPResponse {
        try await getState(context, stateKey: context.parameter("stateKey"))
    }

    /// `GET /rooms/{roomId}/state/{eventType}`: the same with an empty state key.
    static func getStateEventEmptyKey(_ context: RequestContext) async throws -> HTTPResponse {
        try await getState(context, stateKey: "")
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}` (spec: "Sending events to a room").
    static func putStateEvent(_ context: RequestContext) async throws -> HTTPResponse {
        try await putState(context, stateKey: try stateKey(context.parameter("stateKey")))
    }

    /// `PUT /rooms/{roomId}/state/{eventType}`: the same with an empty state key.
    static func putStateEventEmptyKey(_ context: RequestContext) async throws -> HTTPResponse {
        try await putState(context, stateKey: "")
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` (spec: "Sending events to a room").
    static func sendMessage(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let content = try await context.jsonObject()
        let type = try eventType(context.parameter("eventType"))
        let txn = try transactionID(context.parameter("txnId"))
        return try await sendIdempotent(context.app, requester, roomID, scope: "send/\(roomID.rawValue)/\(type)", txn: txn) {
            EventDraft(type: type, sender: requester.userID, content: content, txn: $0)
        }
    }

    /// `POST /rooms/{roomId}/send/{eventType}`: Synapse's form without a transaction id
    /// (every call sends; SyTest uses it).
    static func sendMessageWithoutTransaction(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let content = try await context.jsonObject()
        let type = try eventType(context.parameter("eventType"))
        return try await sendIdempotent(context.app, requester, roomID, scope: "send/\(roomID.rawValue)/\(type)", txn: nil) {
            EventDraft(type: type, sender: requester.userID, content: content, txn: $0)
        }
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` (spec: "Redactions").
    static func redactEvent(_ context: RequestContext) async throws -> HTTPResponse {
        try await redact(context, txn: try transactionID(context.parameter("txnId")))
    }

    /// `POST /rooms/{roomId}/redact/{eventId}`: the seed's form without a transaction id.
    static func redactEventWithoutTransaction(_ context: RequestContext) async throws -> HTTPResponse {
        try await redact(context, txn: nil)
    }

    /// An event type from a path: at most 255 bytes (Synapse's limit; the event-size check
    /// alone would let 60 KiB through).
    static func eventType(_ text: String) throws -> String {
        guard !text.isEmpty else { throw MatrixError(.invalidParam, "Event type must not be empty") }
        return try RequestBounds.text(text, "Event type", maxBytes: RequestBounds.maxEventTypeBytes)
    }

    static func stateKey(_ text: String) throws -> String {
        try RequestBounds.text(text, "State key", maxBytes: RequestBounds.maxStateKeyBytes)
    }

    static func transactionID(_ text: String) throws -> String {
        try RequestBounds.text(text, "Transaction id", maxBytes: RequestBounds.maxTransactionIDBytes)
    }

    /// Sends once per (user, device, request path, transaction id): a repeated transaction
    /// returns the first event's id, also after a restart (`event_txns`). `scope` is the
    /// path without the transaction id (spec: "Transaction identifiers" are scoped to the
    /// endpoint; Synapse keys them on the request path).
    static func sendIdempotent(_ app: MyelinApp, _ requester: Requester, _ roomID: RoomID, scope: String, txn: String?,
                               draft: (TransactionRef?) -> EventDraft) async throws -> HTTPResponse {
        // Synapse's rc_message: per sender, counted before the transaction check as Synapse does.
        try app.accounts.rateLimiter.check("message", client: requester.userID.rawValue, app.configuration.rateLimits.messages)
        var ref: TransactionRef?
        if let txn {
            let found = TransactionRef(userID: requester.userID.rawValue, deviceID: requester.deviceID ?? "", scope: scope, txnID: txn)
            if let existing = try await app.database.eventTxns.event(ofTransaction: txn, by: requester.userID,
                                                                     device: found.deviceID, scope: scope) {
                return .json(["event_id": .string(existing.eventID)])
            }
            ref = found
        }
        let event = try await app.roomService.send(draft(ref), in: roomID)
        return .json(["event_id": .string(event.eventID.rawValue)])
    }

    /// A member writing their own `join` event (to join, or for a per-room display name or
    /// avatar), which Synapse allows through the state API; other changes have their endpoints.
    static func isOwnJoinUpdate(_ app: MyelinApp, _ requester: Requester, _ roomID: RoomID, _ stateKey: String,
                                _ content: [String: JSON]) async throws -> Bool {
        guard stateKey == requester.userID.rawValue, content["membership"]?.stringValue == MembershipState.join.rawValue else { return false }
        // Joining this way too (the auth rules check the join rule): only in a room resident here.
        return (try? await app.roomService.existingRoom(roomID)) != nil
    }

    static func putState(_ context: RequestContext, stateKey: String) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        // State events are events: the sender's event budget (Synapse's rc_message).
        try context.rateLimit("message", context.app.configuration.rateLimits.messages, user: requester.userID)
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let type = try eventType(context.parameter("eventType"))
        let content = try await context.jsonObject()
        if type == EventType.roomMember, !(try await isOwnJoinUpdate(context.app, requester, roomID, stateKey, content)) {
            throw MatrixError(.forbidden, "Use the membership endpoints (join, invite, leave, kick, ban) to change memberships")
        }
        if type == EventType.roomCanonicalAlias {
            try await checkCanonicalAlias(context.app, roomID, content)
        }
        let service = context.app.roomService
        // Synapse returns the current event when the state would not change.
        if let actor = try? await service.existingRoom(roomID),
           let current = await actor.stateEvent(StateKey(type, stateKey)),
           current.sender == requester.userID, JSON.object(current.content) == JSON.object(content) {
            return .json(["event_id": .string(current.eventID.rawValue)])
        }
        let event = try await service.send(EventDraft(type: type, sender: requester.userID, stateKey: stateKey,
                                                      content: content), in: roomID)
        if type == EventType.roomGuestAccess, content["guest_access"]?.stringValue != "can_join" {
            await removeGuests(context.app, from: roomID)
        }
        return .json(["event_id": .string(event.eventID.rawValue)])
    }

    /// Guest access revoked: this server's joined guests leave the room (as Synapse does).
    static func removeGuests(_ app: MyelinApp, from roomID: RoomID) async {
        guard let members = try? await app.database.memberships.members(of: roomID) else { return }
        for member in members where member.membership == MembershipState.join.rawValue {
            guard let user = try? UserID(parsing: member.userID), user.serverName.rawValue == app.configuration.serverName,
                  (try? await app.database.accounts.user(id: user))??.isGuest == true else { continue }
            do {
                _ = try await app.roomService.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue,
                                                              content: ["membership": MembershipState.leave.json]), in: roomID)
            } catch {
                app.logger.warning("removing guest \(user) from \(roomID) failed: \(error)")
            }
        }
    }

    /// `m.room.canonical_alias`: every alias must point at this room (spec, "Room aliases").
    static func checkCanonicalAlias(_ app: MyelinApp, _ roomID: RoomID, _ content: [String: JSON]) async throws {
        var aliases: [String] = []
        if let alias = content["alias"] {
            guard let text = alias.stringValue else { throw MatrixError(.invalidParam, "alias must be a string") }
            aliases.append(text)
        }
        for value in content["alt_aliases"]?.arrayValue ?? [] {
            guard let text = value.stringValue else { throw MatrixError(.invalidParam, "alt_aliases must be strings") }
            aliases.append(text)
        }
        for alias in aliases {
            let parsed = try RoomAlias(parsing: alias)
            let found = try await app.database.directory.alias(parsed)
            guard found?.roomID == roomID else {
                throw MatrixError("M_BAD_ALIAS", "Room alias \(alias) does not point to the room", status: 400)
            }
        }
    }

    static func getState(_ context: RequestContext, stateKey: String) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let type = context.parameter("eventType")
        let ids = try await stateIDs(context.app, requester.userID, roomID)
        guard let id = ids[StateKey(type, stateKey)],
              let bytes = try await context.app.roomService.clientEvents([id]).first else {
            throw MatrixError(.notFound, "Event not found.")
        }
        if context.query["format"] == "event" { return .rawJSON(bytes) }
        let content = try JSON.parse(bytes)["content"] ?? .object([:])
        return .json(content)
    }

    /// The state a user may read: current when joined (or world readable), else at their leave.
    static func stateIDs(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID) async throws -> [StateKey: String] {
        let (actor, membership) = try await app.roomService.readableState(user, roomID)
        if let membership, membership.membership == MembershipState.leave || membership.membership == MembershipState.ban {
            let entries = try await app.database.roomEvents.state(of: roomID, atOrBefore: membership.streamOrdering)
            var out: [StateKey: String] = [:]
            for entry in entries { out[StateKey(entry.type, entry.stateKey)] = entry.eventID }
            return out
        }
        return (await actor.currentState ?? [:]).mapValues(\.eventID.rawValue)
    }

    /// One event of the room if the user may see it, else 404 (Synapse does not reveal it).
    static func visibleEvent(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID, _ eventID: String) async throws -> RoomEventStore.EventRow {
        let joinedNow = try await app.roomService.membership(user, in: roomID)?.membership == MembershipState.join
        let room = roomID.rawValue, userID = user.rawValue
        let found = try await app.database.read { db -> RoomEventStore.EventRow? in
            guard let row = try RoomEventStore.event(db, eventID: eventID), row.roomID == room,
                  try EventStateStore.rejected(db, ids: [eventID]).isEmpty else { return nil }
            var visibility = RoomService.Visibility(user: userID, joinedNow: joinedNow)
            return try visibility.visible(row, db) ? row : nil
        }
        guard let found else { throw MatrixError(.notFound, "Event not found.") }
        return found
    }

    static func redact(_ context: RequestContext, txn: String?) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let target = try EventID(parsing: context.parameter("eventId"))
        let body = try await Membership.optionalBody(context)
        let app = context.app
        let elsewhere = try await app.database.read { db in
            try RoomEventStore.event(db, eventID: target.rawValue).map { $0.roomID != roomID.rawValue } ?? false
        }
        if elsewhere { throw MatrixError(.invalidParam, "Cannot redact an event of a different room", status: 400) }
        let row = try await visibleEvent(app, requester.userID, roomID, target.rawValue)
        // Spec "Account suspension": a suspended user redacts only their own events.
        if requester.isSuspended && row.sender != requester.userID.rawValue { throw AccountModeration.suspended }
        let actor = try await app.roomService.existingRoom(roomID)
        if row.sender != requester.userID.rawValue, let version = await actor.version {
            let power = PowerLevels(content: await actor.stateEvent(.powerLevels)?.content, roomVersion: version,
                                    create: await actor.stateEvent(.create))
            guard power.canRedact(requester.userID.rawValue, eventSender: row.sender) else {
                throw MatrixError(.forbidden, "You don't have permission to redact events")
            }
        }
        var content: [String: JSON] = [:]
        if let reason = body["reason"]?.stringValue { content["reason"] = .string(reason) }
        return try await sendIdempotent(app, requester, roomID, scope: "redact/\(roomID.rawValue)/\(target.rawValue)", txn: txn) {
            EventDraft(type: EventType.roomRedaction, sender: requester.userID, content: content, redacts: target, txn: $0)
        }
    }
}
