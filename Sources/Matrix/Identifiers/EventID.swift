/// An event ID (appendix "Event IDs"). Its format depends on the room version: `$opaque:domain`
/// in versions 1–2, `$` plus the unpadded base64 reference hash in version 3, URL-safe base64
/// from version 4. `init(parsing:)` accepts any of them; `isValid(for:)` checks one version's.
public struct EventID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        guard s.utf8.count >= 2, s.utf8.count <= 255, s.utf8.first == UInt8(ascii: "$"), !s.utf8.contains(0) else {
            throw MatrixError(.invalidParam, "Invalid event ID: \(s.prefix(64))")
        }
        if let colon = s.firstIndex(of: ":") {
            do { _ = try ServerName(parsing: s[s.index(after: colon)...]) } catch {
                throw MatrixError(.invalidParam, "Invalid event ID (bad server name): \(s.prefix(64))")
            }
        }
        self.rawValue = s
    }

    init(unchecked: String) { self.rawValue = unchecked }

    public var description: String { rawValue }
    public static func < (a: EventID, b: EventID) -> Bool {
        // State resolution compares event IDs by code point, which UTF-8 byte order gives.
        JSONWriter.keyPrecedes(a.rawValue, b.rawValue)
    }

    /// The domain of a versions 1–2 event ID.
    public var serverName: ServerName? {
        guard let colon = rawValue.firstIndex(of: ":") else { return nil }
        return try? ServerName(parsing: rawValue[rawValue.index(after: colon)...])
    }

    /// Whether the ID has the format `version` prescribes.
    public func isValid(for version: RoomVersion) -> Bool {
        switch version.eventIDFormat {
        case .opaqueWithDomain: return serverName != nil
        case .referenceHashBase64: return EventID.isReferenceHash(rawValue.utf8.dropFirst(), urlSafe: false)
        case .referenceHashURLSafe: return EventID.isReferenceHash(rawValue.utf8.dropFirst(), urlSafe: true)
        }
    }

    /// 43 characters of unpadded base64: a SHA-256 digest.
    static func isReferenceHash(_ bytes: Substring.UTF8View, urlSafe: Bool) -> Bool {
        guard bytes.count == 43 else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || (urlSafe ? (b == UInt8(ascii: "-") || b == UInt8(ascii: "_")) : (b == UInt8(ascii: "+") || b == UInt8(ascii: "/")))
        }
    }
}
