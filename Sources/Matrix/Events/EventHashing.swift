/// Content hashes, reference hashes and event IDs (server-server API "Calculating the content
/// hash / reference hash for an event"; room versions 3 and 4, "Event IDs"), plus signing and
/// verifying events. Called by the RoomActor when it builds an event and by federation on receipt.
public enum EventHashing {
    /// SHA-256 over the canonical JSON of the event without `unsigned`, `signatures`, `hashes`.
    public static func contentHash(of event: JSON, roomVersion: RoomVersion) throws(MatrixError) -> [UInt8] {
        guard case .object(var o) = event else { throw MatrixError(.badJSON, "An event must be a JSON object") }
        o.removeValue(forKey: "unsigned")
        o.removeValue(forKey: "signatures")
        o.removeValue(forKey: "hashes")
        return sha256(try JSON.object(o).canonicalEncoded(strict: roomVersion.strictCanonicalJSON))
    }

    /// SHA-256 over the canonical JSON of the redacted event without `signatures`, `unsigned`.
    public static func referenceHash(of event: JSON, roomVersion: RoomVersion) throws(MatrixError) -> [UInt8] {
        guard case .object(let o) = event else { throw MatrixError(.badJSON, "An event must be a JSON object") }
        var r = Redaction.redact(o, roomVersion: roomVersion)
        r.removeValue(forKey: "signatures")
        r.removeValue(forKey: "unsigned")
        // The ID is never part of its own hash; versions 3+ do not send it, but drop it if present.
        if roomVersion.eventIDFormat != .opaqueWithDomain { r.removeValue(forKey: "event_id") }
        return sha256(try JSON.object(r).canonicalEncoded(strict: roomVersion.strictCanonicalJSON))
    }

    /// The event ID of a version 3+ event: `$` + base64 (URL-safe from v4) of the reference hash.
    public static func eventID(of event: JSON, roomVersion: RoomVersion) throws(MatrixError) -> EventID {
        let hash = try referenceHash(of: event, roomVersion: roomVersion)
        switch roomVersion.eventIDFormat {
        case .opaqueWithDomain:
            guard let s = event["event_id"]?.stringValue else { throw MatrixError(.badJSON, "Event has no event_id") }
            return try EventID(parsing: s)
        case .referenceHashBase64: return EventID(unchecked: "$" + Base64.encode(hash))
        case .referenceHashURLSafe: return EventID(unchecked: "$" + Base64.encodeURLSafe(hash))
        }
    }

    /// The event with `hashes.sha256` set to its content hash.
    public static func addingContentHash(to event: JSON, roomVersion: RoomVersion) throws(MatrixError) -> JSON {
        let hash = try contentHash(of: event, roomVersion: roomVersion)
        var e = event
        e["hashes"] = ["sha256": .string(Base64.encode(hash))]
        return e
    }

    /// True if `hashes.sha256` matches the content. A mismatch means the event must be redacted
    /// before use (server-server API "Checks performed on receipt of a PDU", step 5).
    public static func hasValidContentHash(_ event: JSON, roomVersion: RoomVersion) -> Bool {
        guard let expected = event["hashes"]?["sha256"]?.stringValue.flatMap(Base64.decode),
              let actual = try? contentHash(of: event, roomVersion: roomVersion) else { return false }
        return expected == actual
    }

    /// Verifies `entity`'s signature on an event: the signature covers the redacted event.
    public static func verifySignature(of event: JSON, roomVersion: RoomVersion, entity: String,
                                       keyID: String, key: VerifyKey) throws(MatrixError) {
        var redacted = Redaction.redact(event, roomVersion: roomVersion)
        if roomVersion.eventIDFormat != .opaqueWithDomain { redacted["event_id"] = nil }
        try JSONSignatures.verify(redacted, entity: entity, keyID: keyID, key: key,
                                  strict: roomVersion.strictCanonicalJSON)
    }
}

extension SigningKey {
    /// Hashes and signs an event (appendix "Signing Events"): adds `hashes.sha256`, signs the
    /// redacted event and copies the signature onto the full event. `unsigned` is kept and not
    /// covered.
    public func sign(event: JSON, roomVersion: RoomVersion, serverName: String) throws(MatrixError) -> JSON {
        var hashed = try EventHashing.addingContentHash(to: event, roomVersion: roomVersion)
        var redacted = Redaction.redact(hashed, roomVersion: roomVersion)
        if roomVersion.eventIDFormat != .opaqueWithDomain { redacted["event_id"] = nil }
        let signedRedacted = try sign(json: redacted, entity: serverName, strict: roomVersion.strictCanonicalJSON)
        hashed["signatures"] = signedRedacted["signatures"]
        return hashed
    }
}
