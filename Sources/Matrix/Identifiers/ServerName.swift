/// A server name (appendix "Server Name"): a DNS name, an IPv4 literal or a bracketed IPv6
/// literal, with an optional port. Case-sensitive, as the specification requires. Used inside
/// every other identifier and by federation to address a homeserver.
public struct ServerName: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String
    /// The host part, IPv6 literals keep their brackets.
    public let host: Substring
    public let port: UInt16?

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        guard let (host, port) = ServerName.split(s) else {
            throw MatrixError(.invalidParam, "Invalid server name: \(s.prefix(64))")
        }
        self.rawValue = s
        self.host = host
        self.port = port
    }

    public var description: String { rawValue }
    public static func < (a: ServerName, b: ServerName) -> Bool { a.rawValue < b.rawValue }

    static func split(_ s: String) -> (Substring, UInt16?)? {
        let u = s.utf8
        guard !u.isEmpty, u.count <= 255 else { return nil }
        var host = Substring(s)
        var port: UInt16? = nil
        if u.first == UInt8(ascii: "[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.startIndex...close]
            let rest = s[s.index(after: close)...]
            if !rest.isEmpty {
                guard rest.first == ":", let p = parsePort(rest.dropFirst()) else { return nil }
                port = p
            }
            guard isIPv6(host.dropFirst().dropLast()) else { return nil }
            return (host, port)
        }
        if let colon = s.firstIndex(of: ":") {
            host = s[..<colon]
            guard let p = parsePort(s[s.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, host.utf8.count <= 255 else { return nil }
        if host.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            // All digits and dots: must be a dotted quad with octets 0-255, not a DNS name.
            return isIPv4(host) ? (host, port) : nil
        }
        for b in host.utf8 {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
            if !ok { return nil }
        }
        return (host, port)
    }

    static func isIPv4(_ host: Substring) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for part in parts {
            guard (1...3).contains(part.utf8.count), part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let v = Int(part), v <= 255 else { return false }
        }
        return true
    }

    static func parsePort(_ text: Substring) -> UInt16? {
        guard (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let v = Int(text), v <= 65535 else { return nil }
        return UInt16(v)
    }

    /// RFC 3513 §2.2 text forms: up to eight groups of 1-4 hex digits, one `::` at most, an
    /// optional trailing dotted-quad IPv4 address.
    static func isIPv6(_ text: Substring) -> Bool {
        let count = text.utf8.count
        guard count >= 2, count <= 45 else { return false }
        var groups = text.split(separator: ":", omittingEmptySubsequences: false).map { $0 }
        var compressed = false
        // "::" at the start or end produces two empty groups; fold them into one marker.
        if text.hasPrefix("::") { groups.removeFirst() }
        if text.hasSuffix("::") { groups.removeLast() }
        var width = 0
        for (i, g) in groups.enumerated() {
            if g.isEmpty {
                if compressed { return false }
                compressed = true
                continue
            }
            if i == groups.count - 1 && g.contains(".") {
                guard isIPv4(g) else { return false }
                width += 2
                continue
            }
            guard g.utf8.count <= 4, g.utf8.allSatisfy(isHex) else { return false }
            width += 1
        }
        return compressed ? width <= 7 : width == 8
    }

    static func isHex(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66)
    }
}

/// Shared checks for `&localpart:domain` identifiers.
enum Sigiled {
    /// Splits `&localpart:domain` at the first colon; checks the 255-byte limit, the sigil, no NUL.
    static func split(_ s: String, sigil: UInt8, what: String, code: MatrixError.Code = .invalidParam)
        throws(MatrixError) -> (localpart: Substring, server: ServerName)
    {
        guard s.utf8.first == sigil, s.utf8.count <= 255, !s.utf8.contains(0) else {
            throw MatrixError(code, "Invalid \(what): \(s.prefix(64))")
        }
        guard let colon = s.firstIndex(of: ":") else {
            throw MatrixError(code, "Invalid \(what) (no server name): \(s.prefix(64))")
        }
        let local = s[s.index(after: s.startIndex)..<colon]
        let server: ServerName
        do { server = try ServerName(parsing: s[s.index(after: colon)...]) } catch {
            throw MatrixError(code, "Invalid \(what) (bad server name): \(s.prefix(64))")
        }
        return (local, server)
    }
}
