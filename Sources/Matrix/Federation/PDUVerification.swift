/// A PDU received over federation that passed the checks on receipt up to and including its
/// hashes (server-server API "Checks performed on receipt of a PDU", steps 1–3): as received,
/// or redacted when its content hash did not match (the spec: the receiver then uses the
/// redacted copy). Auth checks come after, in the room.
public struct VerifiedPDU: Sendable {
    public let pdu: PDU
    /// True when the content hash failed and `pdu` is the redacted event.
    public let redacted: Bool

    public init(pdu: PDU, redacted: Bool) {
        self.pdu = pdu
        self.redacted = redacted
    }
}

/// The pure parts of verifying a received PDU: format and size checks for its room version,
/// the servers whose signatures it needs, and the content-hash check. Signatures need keys:
/// `ServerKeyRing.verify(pdu:roomVersion:)` (Actors) combines these with key lookups, and
/// the /send and join pipelines call that.
public enum PDUVerification {
    /// Client-server API "Size limits": the whole event, as canonical JSON with signatures.
    public static let maxBytes = 65_536
    /// Identifier and key fields: 255 bytes (same section).
    public static let maxFieldBytes = 255
    /// As Synapse: more references than this is refused (it rejects > 20 prev and > 10 auth).
    public static let maxPrevEvents = 20
    public static let maxAuthEvents = 10
    /// Signatures looked at per server (a real event carries one or two).
    public static let maxKeysPerSigner = 8

    /// Checks shape and size for `roomVersion` and builds the PDU: required fields and their
    /// types, 255-byte fields, the 65,536-byte total, strict canonical JSON from v6, event ID
    /// form (`$opaque:domain` in v1–2; computed from the reference hash after). Throws
    /// `M_BAD_JSON` (or `M_TOO_LARGE`) naming the defect.
    public static func checkFormat(_ json: JSON, roomVersion: RoomVersion) throws(MatrixError) -> PDU {
        guard case .object(let o) = json else { throw MatrixError(.badJSON, "A PDU must be a JSON object") }
        func bad(_ m: String) -> MatrixError { MatrixError(.badJSON, "Invalid PDU: \(m)") }
        let encoded: [UInt8]
        do { encoded = try json.canonicalEncoded(strict: roomVersion.strictCanonicalJSON) } catch {
            throw bad("not canonical JSON for room version \(roomVersion.id)")
        }
        guard encoded.count <= maxBytes else { throw MatrixError(.tooLarge, "PDU larger than \(maxBytes) bytes") }
        for field in ["type", "sender", "room_id", "state_key", "event_id"] {
            if let value = o[field] {
                guard let s = value.stringValue else { throw bad("\(field) is not a string") }
                guard s.utf8.count <= maxFieldBytes else { throw bad("\(field) longer than \(maxFieldBytes) bytes") }
            }
        }
        guard let depth = o["depth"]?.intValue, depth >= 0 else { throw bad("depth must be a non-negative integer") }
        guard o["origin_server_ts"]?.intValue != nil else { throw bad("origin_server_ts must be an integer") }
        guard let prev = o["prev_events"]?.arrayValue, prev.count <= maxPrevEvents else { throw bad("prev_events missing or too many") }
        guard let auth = o["auth_events"]?.arrayValue, auth.count <= maxAuthEvents else { throw bad("auth_events missing or too many") }
        guard o["hashes"]?["sha256"]?.stringValue != nil else { throw bad("hashes.sha256 missing") }
        guard o["signatures"]?.objectValue != nil else { throw bad("signatures missing") }
        if roomVersion.eventIDFormat == .opaqueWithDomain {
            guard let id = o["event_id"]?.stringValue, (try? EventID(parsing: id))?.serverName != nil else {
                throw bad("event_id must be $opaque:domain in room version \(roomVersion.id)")
            }
        }
        do { return try PDU(json: json, roomVersion: roomVersion) } catch { throw bad(error.message) }
    }

    /// The servers that must have signed `pdu` (server-server API "Validating hashes and
    /// signatures on received events", as Synapse applies it): the sender's server, except
    /// for an invite made from a third-party invite; in v1–2 the event ID's server; for a
    /// restricted join (v8+), the server of `join_authorised_via_users_server`. The server
    /// that sent the transaction is not among them.
    public static func requiredSigners(of pdu: PDU) -> [ServerName] {
        var servers: [ServerName] = []
        let membership = pdu.type == EventType.roomMember ? pdu.content["membership"]?.stringValue : nil
        let thirdPartyInvite = membership == "invite" && pdu.content["third_party_invite"] != nil
        if !thirdPartyInvite { servers.append(pdu.sender.serverName) }
        if pdu.roomVersion.eventIDFormat == .opaqueWithDomain, let idServer = pdu.eventID.serverName {
            servers.append(idServer)
        }
        if pdu.roomVersion.restrictedJoinRule, membership == "join",
           let authoriser = pdu.content["join_authorised_via_users_server"]?.stringValue,
           let user = try? UserID(parsing: authoriser) {
            servers.append(user.serverName)
        }
        var seen = Set<ServerName>()
        return servers.filter { seen.insert($0).inserted }
    }

    /// When a signature must be valid: the event's `origin_server_ts` where the room version
    /// enforces key validity (v5+), any time before.
    public static func keyValidityTime(of pdu: PDU) -> Int64? {
        pdu.roomVersion.enforceKeyValidity ? pdu.originServerTS : nil
    }

    /// The content-hash check (step 3 of the checks on receipt): the PDU as received when
    /// `hashes.sha256` matches, else its redacted copy.
    public static func checkContentHash(_ pdu: PDU) -> VerifiedPDU {
        let json = JSON.object(pdu.json)
        if EventHashing.hasValidContentHash(json, roomVersion: pdu.roomVersion) { return VerifiedPDU(pdu: pdu, redacted: false) }
        let redacted = Redaction.redact(json, roomVersion: pdu.roomVersion)
        // Redaction keeps every field `checkFormat` required, so the redacted event builds.
        if let copy = try? PDU(json: redacted, roomVersion: pdu.roomVersion, eventID: pdu.eventID) {
            return VerifiedPDU(pdu: copy, redacted: true)
        }
        return VerifiedPDU(pdu: pdu, redacted: true)
    }
}
