/// A room's server access control list (client-server API "Server Access Control Lists",
/// `m.room.server_acl`): which servers may take part in the room over federation. Built from
/// the state event's content; federation handlers ask `allows(_:)` for the origin of every
/// request about the room (403 `M_FORBIDDEN` when it says no).
public struct ServerACL: Sendable {
    /// Globs (`*` any run, `?` one character), matched case-insensitively as Synapse does.
    public let allow: [String]
    public let deny: [String]
    public let allowIPLiterals: Bool

    /// Entries looked at per list; a state event is at most 64 KiB, so this is only a guard.
    static let maxEntries = 4_096
    /// Longest glob considered; longer entries match nothing (a server name is ≤ 255 bytes).
    static let maxGlobBytes = 1_024

    /// From `m.room.server_acl` content. Non-string entries are ignored; a missing or
    /// malformed `allow` allows nobody; a non-boolean `allow_ip_literals` counts as true
    /// (Synapse's reading of bad content).
    public init(content: [String: JSON]) {
        func globs(_ value: JSON?) -> [String] {
            (value?.arrayValue ?? []).prefix(Self.maxEntries).compactMap { $0.stringValue }.map { $0.lowercased() }
        }
        allow = globs(content["allow"])
        deny = globs(content["deny"])
        allowIPLiterals = content["allow_ip_literals"]?.boolValue ?? true
    }

    /// The spec's order: an IP literal when they are not allowed is denied; then a `deny`
    /// match denies; then an `allow` match allows; anything else is denied. The port is not
    /// part of what is matched.
    public func allows(_ server: ServerName) -> Bool {
        let host = Array(server.host.lowercased().utf8)
        if !allowIPLiterals && Self.isIPLiteral(server) { return false }
        if deny.contains(where: { Self.glob($0, matches: host) }) { return false }
        return allow.contains(where: { Self.glob($0, matches: host) })
    }

    static func isIPLiteral(_ server: ServerName) -> Bool {
        server.host.hasPrefix("[") || server.host.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }
    }

    /// Glob match in O(pattern × text) with one backtrack point (the last `*`).
    static func glob(_ pattern: String, matches text: [UInt8]) -> Bool {
        let p = Array(pattern.utf8)
        guard p.count <= maxGlobBytes else { return false }
        var (pi, ti) = (0, 0)
        var star: Int? = nil
        var mark = 0
        while ti < text.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == text[ti]) {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = ti; pi += 1
            } else if let s = star {
                pi = s + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
