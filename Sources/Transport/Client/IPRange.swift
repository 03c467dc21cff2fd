/// An IPv4 or IPv6 address as bytes (4 or 16). Parsed from text by `init?(_:)`; the HTTP
/// client builds it from each resolved `sockaddr` to check it against the blacklist.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Dotted IPv4 or RFC 4291 IPv6 text (no brackets, no zone id).
    public init?(_ text: String) {
        if let v4 = IPAddress.parseIPv4(Array(text.utf8)) {
            bytes = v4
        } else if let v6 = IPAddress.parseIPv6(Array(text.utf8)) {
            bytes = v6
        } else {
            return nil
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// The IPv4 address of an IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible IPv6 address.
    public var embeddedIPv4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
        guard mapped else { return nil }
        return IPAddress(bytes: Array(bytes[12..<16]))
    }

    public var description: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) {
            groups.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16))
        }
        return groups.joined(separator: ":")
    }

    static func parseIPv4(_ text: [UInt8]) -> [UInt8]? {
        let parts = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            // No leading zeros: "010" is octal to some parsers.
            if part.count > 1 && part.first == 0x30 { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard value <= 255 else { return nil }
            out.append(UInt8(value))
        }
        return out
    }

    static func parseIPv6(_ text: [UInt8]) -> [UInt8]? {
        guard text.count >= 2, text.count <= 45 else { return nil }
        let colon = UInt8(ascii: ":")
        // Split at "::" once.
        var head = text[...]
        var tail: ArraySlice<UInt8>? = nil
        if let i = (0..<(text.count - 1)).first(where: { text[$0] == colon && text[$0 + 1] == colon }) {
            head = text[..<i]
            tail = text[(i + 2)...]
        }
        func groups(_ s: ArraySlice<UInt8>, allowV4: Bool) -> [UInt8]? {
            if s.isEmpty { return [] }
            let parts = s.split(separator: colon, omittingEmptySubsequences: false)
            var out: [UInt8] = []
            for (index, part) in parts.enumerated() {
                if allowV4 && index == parts.count - 1 && part.contains(UInt8(ascii: ".")) {
                    guard let v4 = parseIPv4(Array(part)) else { return nil }
                    out += v4
                    continue
                }
                guard (1...4).contains(part.count) else { return nil }
                var value = 0
                for b in part {
                    guard let d = hexValue(b) else { return nil }
                    value = value * 16 + d
                }
                out += [UInt8(value >> 8), UInt8(value & 0xff)]
            }
            return out
        }
        guard let first = groups(head, allowV4: tail == nil) else { return nil }
        if let tail {
            guard let last = groups(tail, allowV4: true), first.count + last.count <= 14 else { return nil }
            return first + [UInt8](repeating: 0, count: 16 - first.count - last.count) + last
        }
        return first.count == 16 ? first : nil
    }

    static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: return Int(b - 0x30)
        case 0x41...0x46: return Int(b - 0x41 + 10)
        case 0x61...0x66: return Int(b - 0x61 + 10)
        default: return nil
        }
    }
}

/// A CIDR range (`10.0.0.0/8`, `fe80::/10`): the unit of the client's blacklist and of
/// `federation.ip_range_whitelist`.
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    /// `address/prefix`, or a bare address (a single host).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let bits = address.bytes.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard parts[1].count <= 3, let p = Int(parts[1]), (0...bits).contains(p) else { return nil }
            prefix = p
        }
        self.init(network: address, prefixLength: prefix)
    }

    public init(network: IPAddress, prefixLength: Int) {
        self.network = network
        self.prefixLength = max(0, min(prefixLength, network.bytes.count * 8))
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for i in 0..<network.bytes.count where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xff : ~(0xff >> UInt8(take))
            if address.bytes[i] & mask != network.bytes[i] & mask { return false }
            remaining -= take
        }
        return true
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

/// Which resolved addresses the HTTP client may connect to: every address not in a
/// blacklisted range, or in a whitelisted one. Checked after name resolution, on every
/// address, before connecting (and so on every redirect), so that a remote server cannot
/// point this server at its own network (SSRF). IPv4-mapped IPv6 addresses are judged as
/// the IPv4 address they carry.
public struct IPBlacklist: Sendable, Equatable {
    public var blocked: [IPRange]
    public var allowed: [IPRange]

    /// Loopback, private (RFC 1918), CGNAT, link-local, multicast, unspecified and reserved
    /// ranges of IPv4, and their IPv6 counterparts (Synapse's default blacklist, in spirit).
    public static let defaultRanges: [IPRange] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
        "::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8",
    ].map { IPRange($0)! }

    public init(blocked: [IPRange] = IPBlacklist.defaultRanges, allowed: [IPRange] = []) {
        self.blocked = blocked
        self.allowed = allowed
    }

    /// Nothing blocked (tests of the transport alone).
    public static let none = IPBlacklist(blocked: [])

    public func permits(_ address: IPAddress) -> Bool {
        let judged = address.embeddedIPv4 ?? address
        if allowed.contains(where: { $0.contains(judged) || $0.contains(address) }) { return true }
        return !blocked.contains(where: { $0.contains(judged) || $0.contains(address) })
    }
}
