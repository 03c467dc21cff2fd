import Glibc
import Synchronization

/// Open connections per peer, for `TransportConfiguration.maxConnectionsPerIP`: one table
/// shared by every loop of a server, consulted once per accepted connection and once per
/// close (never per request).
///
/// Why one locked table rather than a count per loop with the limit divided: the kernel
/// spreads one peer's connections over the SO_REUSEPORT sockets by a hash of the source port,
/// so per-loop shares of one peer are uneven, and a divided limit would refuse a peer well
/// below its limit on one loop while another loop has room. An uncontended lock per accept
/// costs far less than the accept itself.
///
/// A peer is an IPv4 address (IPv4-mapped IPv6 addresses included) or an IPv6 /64 prefix:
/// one IPv6 subscriber usually holds a whole /64, so counting single IPv6 addresses would not
/// limit anyone.
final class PeerConnectionTable: Sendable {
    struct Key: Hashable, Sendable {
        var high: UInt64
        var low: UInt64
    }

    /// 0: no limit, and no table.
    let limit: Int
    private let counts = Mutex<[Key: Int]>([:])
    private let exemptsLoopback: Bool
    private let exempt: Set<Key>

    init(limit: Int, exemptsLoopback: Bool = false, exemptPeers: [String] = []) {
        self.limit = max(0, limit)
        self.exemptsLoopback = exemptsLoopback
        self.exempt = Set(exemptPeers.compactMap(Self.key(parsing:)))
    }

    func isExempt(_ key: Key) -> Bool {
        if exemptsLoopback && key.high == 0 {
            // ::1 (whose /64 is all zeros) or 127.0.0.0/8.
            if key.low == 0 || (key.low >> 32 == 0xFFFF && (key.low >> 24) & 0xFF == 127) { return true }
        }
        return exempt.contains(key)
    }

    /// Counts one more connection from `key`; false (and nothing counted) past the limit.
    func admit(_ key: Key) -> Bool {
        guard limit > 0, !isExempt(key) else { return true }
        return counts.withLock { table in
            let open = table[key, default: 0]
            guard open < limit else { return false }
            table[key] = open + 1
            return true
        }
    }

    /// A connection counted by `admit` closed.
    func release(_ key: Key) {
        guard limit > 0, !isExempt(key) else { return }
        counts.withLock { table in
            guard let open = table[key] else { return }
            if open <= 1 { table.removeValue(forKey: key) } else { table[key] = open - 1 }
        }
    }

    /// Connections counted for `key` (tests).
    func count(_ key: Key) -> Int { counts.withLock { $0[key, default: 0] } }

    /// The peer of an address in text (`203.0.113.9`, `2001:db8::1`); nil if unparseable.
    static func key(parsing text: String) -> Key? {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, text, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            return key(storing: v4)
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, text, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            return key(storing: v6)
        }
        return nil
    }

    private static func key<Address>(storing address: Address) -> Key {
        var address = address
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { out in withUnsafeBytes(of: &address) { out.copyMemory(from: $0) } }
        return key(storage)
    }

    /// The peer of a socket address.
    static func key(_ storage: sockaddr_storage) -> Key {
        var storage = storage
        if storage.ss_family == sa_family_t(AF_INET) {
            let address = withUnsafeBytes(of: &storage) { $0.load(fromByteOffset: MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!, as: UInt32.self) }
            return Key(high: 0, low: 0xFFFF_0000_0000 | UInt64(UInt32(bigEndian: address)))
        }
        let bytes = withUnsafeBytes(of: &storage) { raw -> (UInt64, UInt64) in
            let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
            var high: UInt64 = 0
            var low: UInt64 = 0
            for i in 0..<8 { high = high << 8 | UInt64(raw[offset + i]) }
            for i in 8..<16 { low = low << 8 | UInt64(raw[offset + i]) }
            return (high, low)
        }
        // ::ffff:a.b.c.d is the IPv4 peer a.b.c.d (a dual-stack listener); any other IPv6
        // address counts by its /64.
        if bytes.0 == 0 && bytes.1 >> 32 == 0xFFFF { return Key(high: 0, low: bytes.1) }
        return Key(high: bytes.0, low: 0)
    }
}
