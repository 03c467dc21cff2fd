/// One SRV record (RFC 2782): where a service of a domain runs.
public struct SRVRecord: Sendable, Equatable {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    /// The target host, without the trailing dot.
    public var target: String

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }

    /// The order to try `records` in (RFC 2782): ascending priority, and within a priority a
    /// weighted random order (`random(n)` returns a number in 0..<n; injected by tests).
    public static func ordered(_ records: [SRVRecord],
                               random: (Int) -> Int = { Int.random(in: 0..<max(1, $0)) }) -> [SRVRecord] {
        var out: [SRVRecord] = []
        let groups = Dictionary(grouping: records, by: \.priority).sorted { $0.key < $1.key }
        for (_, group) in groups {
            // Zero-weight records first in the pool, so they get a small chance (RFC 2782).
            var pool = group.filter { $0.weight == 0 } + group.filter { $0.weight > 0 }
            while !pool.isEmpty {
                let total = pool.reduce(0) { $0 + Int($1.weight) }
                let pick = total == 0 ? 0 : min(max(0, random(total + 1)), total)
                var running = 0
                var index = pool.count - 1
                for (i, record) in pool.enumerated() {
                    running += Int(record.weight)
                    if running >= pick { index = i; break }
                }
                out.append(pool.remove(at: index))
            }
        }
        return out
    }
}

/// A bounded parser of DNS answers (RFC 1035 4.1) for SRV queries: the answer section's
/// SRV records of class IN. Every length, count and compression pointer is checked; a
/// truncated or hostile message throws.
public enum SRVAnswer {
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// The most answer bytes read (a UDP answer is 512, EDNS 4096; TCP up to 64 KiB).
    public static let maxAnswerBytes = 16 * 1024
    static let maxRecords = 64

    public static func parse(_ message: [UInt8]) throws(ParseError) -> [SRVRecord] {
        guard message.count >= 12 else { throw ParseError("short header") }
        guard message.count <= 65535 else { throw ParseError("oversized message") }
        let rcode = message[3] & 0x0f
        guard rcode == 0 else { throw ParseError("rcode \(rcode)") }
        let questions = Int(u16(message, 4))
        let answers = Int(u16(message, 6))
        guard questions <= 4 else { throw ParseError("too many questions") }
        var offset = 12
        for _ in 0..<questions {
            offset = try skipName(message, offset)
            offset += 4
            guard offset <= message.count else { throw ParseError("truncated question") }
        }
        var records: [SRVRecord] = []
        for _ in 0..<min(answers, maxRecords) {
            offset = try skipName(message, offset)
            guard offset + 10 <= message.count else { throw ParseError("truncated record") }
            let type = u16(message, offset)
            let klass = u16(message, offset + 2)
            let length = Int(u16(message, offset + 8))
            offset += 10
            guard offset + length <= message.count else { throw ParseError("truncated rdata") }
            if type == 33 && klass == 1 {
                guard length >= 7 else { throw ParseError("short SRV rdata") }
                let target = try readName(message, offset + 6, limit: offset + length)
                records.append(SRVRecord(priority: u16(message, offset), weight: u16(message, offset + 2),
                                         port: u16(message, offset + 4), target: target))
            }
            offset += length
        }
        // RFC 2782: a single record with target "." means the service is not offered.
        if records.count == 1 && records[0].target.isEmpty { return [] }
        return records.filter { !$0.target.isEmpty && $0.port != 0 }
    }

    static func u16(_ m: [UInt8], _ i: Int) -> UInt16 { UInt16(m[i]) << 8 | UInt16(m[i + 1]) }

    /// The offset just after the name at `offset` (compressed or not).
    static func skipName(_ m: [UInt8], _ start: Int) throws(ParseError) -> Int {
        var offset = start
        var labels = 0
        while true {
            guard offset < m.count else { throw ParseError("truncated name") }
            let length = Int(m[offset])
            if length & 0xc0 == 0xc0 {
                guard offset + 1 < m.count else { throw ParseError("truncated pointer") }
                return offset + 2
            }
            guard length & 0xc0 == 0 else { throw ParseError("bad label type") }
            if length == 0 { return offset + 1 }
            labels += 1
            guard labels <= 127 else { throw ParseError("too many labels") }
            offset += 1 + length
        }
    }

    /// The dotted name at `start`, following compression pointers backwards only, at most
    /// 255 bytes long; the uncompressed part must end before `limit`.
    static func readName(_ m: [UInt8], _ start: Int, limit: Int) throws(ParseError) -> String {
        var offset = start
        var end = limit
        var labels: [String] = []
        var total = 0
        var jumps = 0
        while true {
            guard offset < end, offset < m.count else { throw ParseError("truncated name") }
            let length = Int(m[offset])
            if length & 0xc0 == 0xc0 {
                guard offset + 1 < end, offset + 1 < m.count else { throw ParseError("truncated pointer") }
                let target = (length & 0x3f) << 8 | Int(m[offset + 1])
                jumps += 1
                // Backwards only (no loops), and a bounded number of times.
                guard target < offset, jumps <= 16 else { throw ParseError("bad compression pointer") }
                end = offset
                offset = target
                continue
            }
            guard length & 0xc0 == 0 else { throw ParseError("bad label type") }
            if length == 0 { break }
            guard offset + 1 + length <= end else { throw ParseError("truncated label") }
            let label = m[(offset + 1)...(offset + length)]
            guard label.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ".") }) else {
                throw ParseError("bad character in name")
            }
            total += length + 1
            guard total <= 255 else { throw ParseError("name too long") }
            labels.append(String(decoding: label, as: UTF8.self))
            offset += 1 + length
        }
        return labels.joined(separator: ".")
    }
}
