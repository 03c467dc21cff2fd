/// The key of a room state entry, (event type, state key). Keys the state maps of the auth rules,
/// state resolution and the RoomActor's current state. Ordered by code point.
public struct StateKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var type: String
    public var stateKey: String
    public init(_ type: String, _ stateKey: String) {
        self.type = type
        self.stateKey = stateKey
    }
    public var description: String { "(\(type), \(stateKey))" }

    // Byte-wise equality and hashing: Swift's `String` equality is Unicode canonical
    // equivalence, which would make two byte-distinct state keys (an NFC and an NFD user ID)
    // one entry of a room's state — and the store, which compares bytes, would disagree.
    public static func == (a: StateKey, b: StateKey) -> Bool {
        ExactText.equal(a.type, b.type) && ExactText.equal(a.stateKey, b.stateKey)
    }

    public func hash(into hasher: inout Hasher) {
        ExactText.hash(type, into: &hasher)
        hasher.combine(0xFF as UInt8)  // never a byte of UTF-8: separates the two parts
        ExactText.hash(stateKey, into: &hasher)
    }
    public static func < (a: StateKey, b: StateKey) -> Bool {
        a.type != b.type ? JSONWriter.keyPrecedes(a.type, b.type) : JSONWriter.keyPrecedes(a.stateKey, b.stateKey)
    }

    public static let create = StateKey(EventType.roomCreate, "")
    public static let powerLevels = StateKey(EventType.roomPowerLevels, "")
    public static let joinRules = StateKey(EventType.roomJoinRules, "")
    public static func member(_ user: String) -> StateKey { StateKey(EventType.roomMember, user) }
}

/// A persistent data unit: one room event with the fields the protocol core needs read out,
/// plus the full JSON it came from. Built by the RoomActor for local events and by federation
/// for received ones; read by auth rules, state resolution and sync.
///
/// `bytes`, when present, are the serialized event as received or as first encoded; later code
/// serves them without re-encoding.
public struct PDU: Sendable, Hashable {
    /// Immutable storage shared by copies, so that passing a PDU around (state maps of thousands
    /// of events) costs one reference count, not one per field.
    final class Storage: Sendable {
        let eventID: EventID
        let roomVersion: RoomVersion
        let json: [String: JSON]
        let type: String
        let stateKey: String?
        let sender: UserID
        let roomID: RoomID?
        let content: [String: JSON]
        let prevEvents: [EventID]
        let authEvents: [EventID]
        let depth: Int64
        let originServerTS: Int64
        let bytes: [UInt8]?

        init(eventID: EventID, roomVersion: RoomVersion, json: [String: JSON], type: String, stateKey: String?,
             sender: UserID, roomID: RoomID?, content: [String: JSON], prevEvents: [EventID], authEvents: [EventID],
             depth: Int64, originServerTS: Int64, bytes: [UInt8]?) {
            self.eventID = eventID; self.roomVersion = roomVersion; self.json = json; self.type = type
            self.stateKey = stateKey; self.sender = sender; self.roomID = roomID; self.content = content
            self.prevEvents = prevEvents; self.authEvents = authEvents; self.depth = depth
            self.originServerTS = originServerTS; self.bytes = bytes
        }
    }
    let storage: Storage

    public var eventID: EventID { storage.eventID }
    public var roomVersion: RoomVersion { storage.roomVersion }
    /// The complete event object (`event_id` included only if it was in the input).
    public var json: [String: JSON] { storage.json }
    public var type: String { storage.type }
    public var stateKey: String? { storage.stateKey }
    public var sender: UserID { storage.sender }
    /// nil only for a version 12 `m.room.create` event, whose room ID is derived from it.
    public var roomID: RoomID? { storage.roomID }
    public var content: [String: JSON] { storage.content }
    public var prevEvents: [EventID] { storage.prevEvents }
    public var authEvents: [EventID] { storage.authEvents }
    public var depth: Int64 { storage.depth }
    public var originServerTS: Int64 { storage.originServerTS }
    /// The serialized event, if the caller kept it.
    public var bytes: [UInt8]? { storage.bytes }

    public var isState: Bool { stateKey != nil }
    public var stateEntry: StateKey? { stateKey.map { StateKey(type, $0) } }
    /// `content.membership` for member events.
    public var membership: String? { content["membership"]?.stringValue }

    /// The event being redacted: `content.redacts` from version 11, the top-level key before.
    public var redacts: EventID? {
        let raw = roomVersion.redactsInContent ? content["redacts"]?.stringValue : json["redacts"]?.stringValue
        return raw.flatMap { try? EventID(parsing: $0) }
    }

    /// Builds a PDU from event JSON. The event ID is computed from the reference hash for room
    /// versions 3+, read from `event_id` for versions 1–2; `eventID` overrides both (for events
    /// loaded from storage whose ID is known). Wrong shapes throw `M_BAD_JSON`.
    public init(json value: JSON, roomVersion: RoomVersion, eventID: EventID? = nil, bytes: [UInt8]? = nil) throws(MatrixError) {
        guard case .object(let json) = value else { throw MatrixError(.badJSON, "An event must be a JSON object") }
        func bad(_ m: String) -> MatrixError { MatrixError(.badJSON, "Invalid event: \(m)") }
        guard let type = json["type"]?.stringValue else { throw bad("missing type") }
        guard let senderText = json["sender"]?.stringValue else { throw bad("missing sender") }
        let sender = try UserID(parsing: senderText)
        var roomID: RoomID? = nil
        if let r = json["room_id"] {
            guard let s = r.stringValue else { throw bad("room_id is not a string") }
            roomID = try RoomID(parsing: s)
        } else if !(roomVersion.hashBasedRoomIDs && type == EventType.roomCreate) {
            throw bad("missing room_id")
        }
        guard case .object(let content)? = json["content"] else { throw bad("content is not an object") }
        var stateKey: String? = nil
        if let sk = json["state_key"] {
            guard let s = sk.stringValue else { throw bad("state_key is not a string") }
            stateKey = s
        }
        let prev = try PDU.references(json["prev_events"], roomVersion, "prev_events")
        let auth = try PDU.references(json["auth_events"], roomVersion, "auth_events")
        let depth = json["depth"]?.intValue ?? 0
        let ts = json["origin_server_ts"]?.intValue ?? 0

        let id: EventID
        if let eventID {
            id = eventID
        } else if roomVersion.eventIDFormat == .opaqueWithDomain {
            guard let s = json["event_id"]?.stringValue else { throw bad("missing event_id") }
            id = try EventID(parsing: s)
        } else {
            id = try EventHashing.eventID(of: value, roomVersion: roomVersion)
        }
        self.storage = Storage(eventID: id, roomVersion: roomVersion, json: json, type: type, stateKey: stateKey,
                               sender: sender, roomID: roomID, content: content, prevEvents: prev, authEvents: auth,
                               depth: depth, originServerTS: ts, bytes: bytes)
    }

    /// Parses event bytes and keeps them.
    public init(bytes: [UInt8], roomVersion: RoomVersion, eventID: EventID? = nil) throws(MatrixError) {
        try self.init(json: try JSON.parse(bytes), roomVersion: roomVersion, eventID: eventID, bytes: bytes)
    }

    /// The room this event belongs to; for a version 12 create event, the one derived from its ID.
    public var effectiveRoomID: RoomID { roomID ?? RoomID(createEventID: eventID) }

    /// `prev_events` / `auth_events`: strings from version 3, `[event_id, {hashes}]` pairs before.
    static func references(_ value: JSON?, _ version: RoomVersion, _ name: String) throws(MatrixError) -> [EventID] {
        guard let value else { return [] }
        guard case .array(let items) = value else { throw MatrixError(.badJSON, "Invalid event: \(name) is not an array") }
        var ids: [EventID] = []
        ids.reserveCapacity(items.count)
        for item in items {
            if let s = item.stringValue {
                ids.append(try EventID(parsing: s))
            } else if version.eventIDFormat == .opaqueWithDomain, let s = item[0]?.stringValue {
                ids.append(try EventID(parsing: s))
            } else {
                throw MatrixError(.badJSON, "Invalid event: bad entry in \(name)")
            }
        }
        return ids
    }

    /// The full event as JSON, with `event_id` added for clients (versions 3+ omit it on the wire).
    public var clientJSON: JSON {
        var o = json
        o["event_id"] = .string(eventID.rawValue)
        return .object(o)
    }

    public static func == (a: PDU, b: PDU) -> Bool { a.eventID == b.eventID }
    public func hash(into h: inout Hasher) { h.combine(eventID) }
}

extension PDU {
    /// The largest PDU, in canonical JSON bytes with signatures (client-server API "Size limits").
    public static let maxSize = 65_536

    /// Checks the specification's size limits: the whole event at most 65,536 bytes of canonical
    /// JSON, and `sender`, `room_id`, `state_key`, `type` and `event_id` at most 255 bytes each.
    /// Throws `M_TOO_LARGE`. Run on receipt and before sending.
    public func checkSizeLimits() throws(MatrixError) {
        func field(_ name: String, _ value: String?) throws(MatrixError) {
            if let value, value.utf8.count > 255 { throw MatrixError(.tooLarge, "Event \(name) is longer than 255 bytes") }
        }
        try field("sender", sender.rawValue)
        try field("room_id", roomID?.rawValue)
        try field("state_key", stateKey)
        try field("type", type)
        try field("event_id", eventID.rawValue)
        var full = json
        full.removeValue(forKey: "unsigned")
        let size = try JSON.object(full).canonicalEncoded(strict: roomVersion.strictCanonicalJSON).count
        if size > PDU.maxSize { throw MatrixError(.tooLarge, "Event is \(size) bytes, more than \(PDU.maxSize)") }
    }
}

/// Hashing of text by its UTF-8 bytes, for keys whose equality is byte-wise.
public enum ExactText {
    static func hash(_ text: String, into hasher: inout Hasher) {
        var contiguous = text  // `withUTF8` copies only a non-contiguous (bridged) string
        contiguous.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Byte-wise equality of two strings' UTF-8 (not Unicode canonical equivalence), compared
    /// as two buffers: `utf8.elementsEqual` walks both views one byte at a time through the
    /// generic iterator, and every dictionary of user ids and state keys compares with it.
    public static func equal(_ a: String, _ b: String) -> Bool {
        if a.utf8.count != b.utf8.count { return false }
        var a = a, b = b  // `withUTF8` copies only a non-contiguous (bridged) string
        return a.withUTF8 { x in b.withUTF8 { y in x.elementsEqual(y) } }
    }
}
