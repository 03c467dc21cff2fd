import Glibc
import Synchronization

/// The addresses whose connections are refused right after `accept`, before a byte of theirs
/// is read: the administrators' IP blocks (the App's `IPBlocks` compiles them here with
/// `replace(_:)`; every listener of the process shares one filter).
///
/// Cost: the rules are compiled into an immutable `Table` (per family, sorted disjoint
/// intervals of addresses, each with the latest expiry of the blocks covering it), looked up
/// by binary search: at most ~14 comparisons for 10,000 ranges, once per connection and never
/// per request. `replace` builds a new table and swaps it under a lock, bumping `generation`;
/// each loop keeps its own reference and re-reads it only when the generation it saw changes
/// (one relaxed atomic load per accept), so loops never contend on the lock.
///
/// Expiry: an interval carries the latest expiry of the rules covering it and is checked
/// against the wall clock on a match, so an expired block stops applying at once, without
/// waiting for the owner to rebuild the table.
public final class AddressFilter: Sendable {
    /// One blocked range, until `expiresAtMs` (milliseconds since the epoch; nil: forever).
    public struct Rule: Sendable, Equatable {
        public var range: IPRange
        public var expiresAtMs: Int64?

        public init(range: IPRange, expiresAtMs: Int64? = nil) {
            self.range = range
            self.expiresAtMs = expiresAtMs
        }
    }

    /// The compiled rules: sorted, disjoint, inclusive intervals per family.
    public final class Table: Sendable {
        let v4Starts: [UInt32]
        let v4Ends: [UInt32]
        let v4Expiry: [Int64]
        let v6Starts: [UInt128]
        let v6Ends: [UInt128]
        let v6Expiry: [Int64]

        /// Nothing blocked.
        public static let empty = Table(rules: [])

        public var isEmpty: Bool { v4Starts.isEmpty && v6Starts.isEmpty }
        /// Disjoint intervals after compilation (tests, the benchmark).
        public var intervalCount: Int { v4Starts.count + v6Starts.count }

        public init(rules: [Rule]) {
            var v4: [(UInt128, UInt128, Int64)] = []
            var v6: [(UInt128, UInt128, Int64)] = []
            for rule in rules {
                // IPv4-mapped IPv6 ranges are IPv4 ranges: peers are judged as IPv4 too.
                var range = rule.range
                if range.network.bytes.count == 16, let v4 = range.network.embeddedIPv4, range.prefixLength >= 96 {
                    range = IPRange(network: v4, prefixLength: range.prefixLength - 96)
                }
                let bits = range.network.bytes.count * 8
                var value: UInt128 = 0
                for byte in range.network.bytes { value = value << 8 | UInt128(byte) }
                let hostBits = bits - range.prefixLength
                let hostMask: UInt128 = hostBits == 0 ? 0 : (hostBits >= 128 ? ~0 : (UInt128(1) << hostBits) - 1)
                let start = value & ~hostMask
                let entry = (start, start | hostMask, rule.expiresAtMs ?? Int64.max)
                if bits == 32 { v4.append(entry) } else { v6.append(entry) }
            }
            let c4 = Table.compile(v4)
            let c6 = Table.compile(v6)
            v4Starts = c4.starts.map { UInt32(truncatingIfNeeded: $0) }
            v4Ends = c4.ends.map { UInt32(truncatingIfNeeded: $0) }
            v4Expiry = c4.expiry
            v6Starts = c6.starts
            v6Ends = c6.ends
            v6Expiry = c6.expiry
        }

        /// Sorted disjoint intervals covering the union of `ranges`, each with the latest
        /// expiry of the ranges over it. CIDR ranges of one family are nested or disjoint, so
        /// a sweep with a stack of the enclosing ranges splits them into elementary pieces.
        private static func compile(_ ranges: [(UInt128, UInt128, Int64)]) -> (starts: [UInt128], ends: [UInt128], expiry: [Int64]) {
            // Widest first among equal starts, so that an enclosing range precedes the ones
            // it contains.
            let sorted = ranges.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 > $1.1 }
            var starts: [UInt128] = []
            var ends: [UInt128] = []
            var expiry: [Int64] = []
            func emit(_ from: UInt128, _ to: UInt128, _ until: Int64) {
                guard from <= to else { return }
                // Merge with the previous piece when adjacent and equally long-lived.
                if let last = ends.last, last != UInt128.max, last + 1 == from, expiry.last == until {
                    ends[ends.count - 1] = to
                } else {
                    starts.append(from)
                    ends.append(to)
                    expiry.append(until)
                }
            }
            // (end, expiry of this range and the ones enclosing it)
            var stack: [(end: UInt128, until: Int64)] = []
            var cursor: UInt128 = 0  // the first address not yet emitted inside the stack's top
            var cursorValid = false
            for (start, end, until) in sorted {
                // Close the enclosing ranges that end before this one starts.
                while let top = stack.last, top.end < start {
                    if cursorValid { emit(cursor, top.end, top.until) }
                    stack.removeLast()
                    if top.end == UInt128.max { cursorValid = false } else { cursor = top.end + 1; cursorValid = !stack.isEmpty }
                }
                if let top = stack.last {
                    // Nested in `top`: the part of `top` before this range is emitted now.
                    if cursorValid, start > cursor { emit(cursor, start - 1, top.until) }
                    if end <= top.end {
                        stack.append((end, max(until, top.until)))
                    } else {
                        // Not CIDR-nested (cannot happen for prefixes); treat as disjoint
                        // continuation.
                        stack.append((end, until))
                    }
                } else {
                    stack.append((end, until))
                }
                cursor = start
                cursorValid = true
            }
            while let top = stack.popLast() {
                if cursorValid { emit(cursor, top.end, top.until) }
                if top.end == UInt128.max { cursorValid = false } else { cursor = top.end + 1; cursorValid = !stack.isEmpty }
            }
            return (starts, ends, expiry)
        }

        /// Whether the IPv4 address `address` (host order) is blocked at `now`.
        @inline(__always)
        func blocks(v4 address: UInt32, now: () -> Int64) -> Bool {
            guard let i = Table.search(v4Starts, address), address <= v4Ends[i] else { return false }
            return v4Expiry[i] == Int64.max || now() < v4Expiry[i]
        }

        @inline(__always)
        func blocks(v6 address: UInt128, now: () -> Int64) -> Bool {
            guard let i = Table.search(v6Starts, address), address <= v6Ends[i] else { return false }
            return v6Expiry[i] == Int64.max || now() < v6Expiry[i]
        }

        /// Whether `address` is blocked at `nowMs` (tests, the benchmark).
        public func blocks(_ address: IPAddress, nowMs: Int64) -> Bool {
            let judged = address.embeddedIPv4 ?? address
            var value: UInt128 = 0
            for byte in judged.bytes { value = value << 8 | UInt128(byte) }
            if judged.isIPv4 { return blocks(v4: UInt32(truncatingIfNeeded: value), now: { nowMs }) }
            return blocks(v6: value, now: { nowMs })
        }

        /// The index of the last start <= `value`.
        @inline(__always)
        static func search<T: Comparable>(_ starts: [T], _ value: T) -> Int? {
            var low = 0
            var high = starts.count
            while low < high {
                let mid = (low + high) >> 1
                if starts[mid] <= value { low = mid + 1 } else { high = mid }
            }
            return low == 0 ? nil : low - 1
        }
    }

    private let table = Mutex<Table>(.empty)
    private let generationCounter = Atomic<UInt64>(1)
    private let refusedCounter = Atomic<Int>(0)

    public init() {}

    /// Compiles `rules` and makes them the filter of every later connection.
    public func replace(_ rules: [Rule]) {
        let compiled = Table(rules: rules)
        table.withLock { $0 = compiled }
        generationCounter.add(1, ordering: .releasing)
    }

    /// Bumped by every `replace` (loops compare it with the one they cached).
    var generation: UInt64 { generationCounter.load(ordering: .acquiring) }

    /// The current table.
    public var current: Table { table.withLock { $0 } }

    /// Connections refused since start, across every listener sharing this filter.
    public var refusedConnections: Int { refusedCounter.load(ordering: .relaxed) }

    func countRefusal() { refusedCounter.add(1, ordering: .relaxed) }

    /// Whether the peer in `storage` is blocked by `table` (loop thread, at accept).
    @inline(__always)
    public static func blocks(_ storage: inout sockaddr_storage, table: Table) -> Bool {
        if table.isEmpty { return false }
        let now = { AddressFilter.wallClockMs() }
        if storage.ss_family == sa_family_t(AF_INET) {
            let raw = withUnsafeBytes(of: &storage) {
                $0.load(fromByteOffset: MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!, as: UInt32.self)
            }
            return table.blocks(v4: UInt32(bigEndian: raw), now: now)
        }
        guard storage.ss_family == sa_family_t(AF_INET6) else { return false }
        let value = withUnsafeBytes(of: &storage) { raw -> UInt128 in
            let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
            var value: UInt128 = 0
            for i in 0..<16 { value = value << 8 | UInt128(raw[offset + i]) }
            return value
        }
        // ::ffff:a.b.c.d is the IPv4 peer a.b.c.d (a dual-stack listener).
        if value >> 32 == 0xFFFF {
            return table.blocks(v4: UInt32(truncatingIfNeeded: value), now: now)
        }
        return table.blocks(v6: value, now: now)
    }

    /// Milliseconds since the epoch from the coarse real-time clock (no syscall).
    public static func wallClockMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
