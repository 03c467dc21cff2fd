/// Builds complete, federation-ready local events: selects `auth_events` from the room state,
/// sets `prev_events`, `depth`, `origin_server_ts`, adds the content hash, signs with the
/// server's key, computes the event ID, and checks the auth rules. Used by the RoomActor, the
/// single writer of its room, for every local event.
public struct EventBuilder: Sendable {
    public let roomVersion: RoomVersion
    public let signingKey: SigningKey
    public let serverName: ServerName

    public init(roomVersion: RoomVersion, signingKey: SigningKey, serverName: ServerName) {
        self.roomVersion = roomVersion
        self.signingKey = signingKey
        self.serverName = serverName
    }

    /// The `m.room.create` event of a new room. For version 12 the room ID is derived from it
    /// (`createdRoom.effectiveRoomID`); for older versions pass the room ID to use.
    public func createEvent(creator: UserID, content: [String: JSON] = [:], roomID: RoomID? = nil,
                            originServerTS: Int64) throws(MatrixError) -> PDU {
        var c = content
        c["room_version"] = .string(roomVersion.id)
        if roomVersion.createHasCreator && c["creator"] == nil { c["creator"] = .string(creator.rawValue) }
        if !roomVersion.hashBasedRoomIDs && roomID == nil {
            throw MatrixError(.invalidParam, "Room version \(roomVersion.id) needs a room ID for m.room.create")
        }
        return try build(type: EventType.roomCreate, sender: creator, stateKey: "", content: c,
                         roomID: roomVersion.hashBasedRoomIDs ? nil : roomID, prevEvents: [], depth: 1,
                         originServerTS: originServerTS, state: [:])
    }

    /// Builds and authorizes an event on top of `state` (the room state before the event, create
    /// event included). `prevEvents` are the forward extremities, `depth` is one more than their
    /// largest depth. Throws `M_FORBIDDEN` (with the failing auth rule) if not allowed.
    public func build(type: String, sender: UserID, stateKey: String? = nil, content: [String: JSON],
                      roomID: RoomID?, prevEvents: [EventID], depth: Int64, originServerTS: Int64,
                      state: AuthState, redacts: EventID? = nil, unsigned: [String: JSON]? = nil) throws(MatrixError) -> PDU {
        // The stored bytes are the bytes other servers hash: no number may be written one way
        // and hashed another. v6+ refuse floats as Synapse does; older versions keep
        // fractional floats (written the same way in both forms) and store integral ones as
        // integers (`1.0` would be stored as `1.0` but hashed as `1`).
        var c = try Self.normalizedNumbers(content, strict: roomVersion.strictCanonicalJSON)
        var json: [String: JSON] = [
            "type": .string(type), "sender": .string(sender.rawValue),
            "depth": .int(min(depth, JSON.canonicalIntegerLimit)), "origin_server_ts": .int(originServerTS),
        ]
        if let roomID { json["room_id"] = .string(roomID.rawValue) }
        if let stateKey { json["state_key"] = .string(stateKey) }
        if let redacts {
            // v11 moved `redacts` into content (MSC2174); keep the top-level copy for older clients.
            if roomVersion.redactsInContent { c["redacts"] = .string(redacts.rawValue) }
            json["redacts"] = .string(redacts.rawValue)
        }
        json["content"] = .object(c)
        let authKeys = type == EventType.roomCreate ? [] :
            AuthEventsSelection.stateKeys(type: type, sender: sender.rawValue, stateKey: stateKey, content: c,
                                          roomVersion: roomVersion)
        let authEvents = authKeys.compactMap { state[$0] }
        let v1Format = roomVersion.eventIDFormat == .opaqueWithDomain
        json["auth_events"] = .array(authEvents.map { e in
            v1Format ? [.string(e.eventID.rawValue), .object(e.json["hashes"]?.objectValue ?? [:])] : .string(e.eventID.rawValue)
        })
        json["prev_events"] = .array(prevEvents.map { v1Format ? [.string($0.rawValue), [:]] : .string($0.rawValue) })
        var eventID: EventID? = nil
        if v1Format {
            let opaque = Base64.encodeURLSafe(Sodium.randomBytes(12))
            let id = EventID(unchecked: "$\(opaque):\(serverName.rawValue)")
            json["event_id"] = .string(id.rawValue)
            eventID = id
        }
        var signed = try signingKey.sign(event: .object(json), roomVersion: roomVersion, serverName: serverName.rawValue)
        if let unsigned { signed["unsigned"] = .object(unsigned) }
        let bytes = signed.encoded()
        let pdu = try PDU(json: signed, roomVersion: roomVersion, eventID: eventID, bytes: bytes)
        do {
            try EventAuth.authorize(pdu, against: state)
        } catch {
            throw error.matrixError
        }
        return pdu
    }

    static func normalizedNumbers(_ object: [String: JSON], strict: Bool) throws(MatrixError) -> [String: JSON] {
        var out = object
        for (key, value) in object {
            if let changed = try normalized(value, strict: strict) { out[key] = changed }
        }
        return out
    }

    /// Nil when `value` needs no change.
    private static func normalized(_ value: JSON, strict: Bool) throws(MatrixError) -> JSON? {
        switch value {
        case .double(let d):
            if strict { throw MatrixError(.badJSON, "Bad JSON value: float") }
            if d.isFinite, d.rounded(.towardZero) == d, abs(d) <= Double(JSON.canonicalIntegerLimit) { return .int(Int64(d)) }
            return nil
        case .array(let items):
            var copy = items
            var changed = false
            for (index, item) in items.enumerated() {
                if let new = try normalized(item, strict: strict) { copy[index] = new; changed = true }
            }
            return changed ? .array(copy) : nil
        case .object(let fields):
            var copy = fields
            var changed = false
            for (key, item) in fields {
                if let new = try normalized(item, strict: strict) { copy[key] = new; changed = true }
            }
            return changed ? .object(copy) : nil
        default:
            return nil
        }
    }
}
