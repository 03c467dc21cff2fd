/// A JSON value. Objects are unordered dictionaries; serializers decide key order
/// (`canonicalEncoded` sorts by code point as the specification's appendix requires).
/// Integers are kept apart from floating-point numbers so that canonical JSON can reject floats.
///
/// Everything that reads or writes JSON in Myelin goes through this type: `JSON.parse` for
/// request bodies and federation PDUs, `encoded()` for responses, `canonicalEncoded()` for
/// hashing and signing.
public enum JSON: Sendable, Equatable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])
}

// MARK: - Accessors

extension JSON {
    /// The member `key` of an object, or nil if this is not an object or has no such member.
    /// Setting works on objects only (nil removes the member); on other values it does nothing.
    public subscript(key: String) -> JSON? {
        get {
            if case .object(let o) = self { return o[key] }
            return nil
        }
        set {
            guard case .object(var o) = self else { return }
            self = .null // release the storage so `o` is uniquely referenced
            o[key] = newValue
            self = .object(o)
        }
    }

    /// The element at `index` of an array, or nil.
    public subscript(index: Int) -> JSON? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value as an integer: `.int`, or a `.double` with an integral value in Int64 range.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d):
            guard d.rounded(.towardZero) == d, d >= -9.2e18, d <= 9.2e18 else { return nil }
            return Int64(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSON]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral,
    ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) {
        var o: [String: JSON] = [:]
        o.reserveCapacity(elements.count)
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
    public init(nilLiteral: ()) { self = .null }
    public init(floatLiteral value: Double) { self = .double(value) }
}

// MARK: - Serialization

extension JSON {
    /// The largest magnitude canonical JSON allows for an integer: 2^53 - 1.
    public static let canonicalIntegerLimit: Int64 = (1 << 53) - 1

    /// Compact serialization: no insignificant whitespace, keys sorted by code point, so the
    /// output is deterministic. Never fails: non-finite doubles are written as `null`.
    /// For values built from `JSON.parse` or from integers and strings this equals the canonical
    /// form.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        JSONWriter.write(self, into: &out, mode: .compact)
        return out
    }

    /// Appends the compact serialization to `out`.
    public func encode(into out: inout [UInt8]) {
        JSONWriter.write(self, into: &out, mode: .compact)
    }

    /// The compact serialization as a String.
    public var encodedString: String { String(decoding: encoded(), as: UTF8.self) }

    /// Canonical JSON (appendix "Canonical JSON"): keys sorted by code point, no whitespace,
    /// minimal escapes, integers only in [-(2^53)+1, 2^53-1]. A double with an integral value in
    /// that range is written as that integer (the appendix turns `1e10` into `10000000000` and
    /// `-0` into `0`); any other number throws `M_BAD_JSON`.
    ///
    /// With `strict: false` (room versions 1–5, whose events "might not be fully compliant")
    /// integers outside the range are written as they are and fractional doubles in their
    /// shortest round-trip form.
    public func canonicalEncoded(strict: Bool = true) throws(MatrixError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        try JSONWriter.writeCanonical(self, into: &out, strict: strict)
        return out
    }
}

/// Writes JSON text. Keys are ordered by their UTF-8 bytes, which is code-point order.
enum JSONWriter {
    enum Mode { case compact }

    @inline(__always)
    static func keyPrecedes(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { ab in
            b.withUTF8 { bb in
                let n = min(ab.count, bb.count)
                if n > 0 {
                    let c = memcmpBytes(ab.baseAddress!, bb.baseAddress!, n)
                    if c != 0 { return c < 0 }
                }
                return ab.count < bb.count
            }
        }
    }

    @inline(__always)
    static func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var i = 0
        while i < n {
            let x = a[i], y = b[i]
            if x != y { return x < y ? -1 : 1 }
            i += 1
        }
        return 0
    }

    static func sortedKeys(_ o: [String: JSON]) -> [String] {
        var keys = Array(o.keys)
        keys.sort(by: keyPrecedes)
        return keys
    }

    static func write(_ value: JSON, into out: inout [UInt8], mode: Mode) {
        switch value {
        case .null: appendASCII("null", &out)
        case .bool(let b): appendASCII(b ? "true" : "false", &out)
        case .int(let i): writeInt(i, into: &out)
        case .double(let d): writeDouble(d, into: &out)
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            var first = true
            for v in a {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                write(v, into: &out, mode: mode)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            if o.count == 1, let (k, v) = o.first {
                writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                write(v, into: &out, mode: mode)
            } else {
                var first = true
                for k in sortedKeys(o) {
                    if !first { out.append(UInt8(ascii: ",")) }
                    first = false
                    writeString(k, into: &out)
                    out.append(UInt8(ascii: ":"))
                    write(o[k]!, into: &out, mode: mode)
                }
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeCanonical(_ value: JSON, into out: inout [UInt8], strict: Bool) throws(MatrixError) {
        switch value {
        case .null: appendASCII("null", &out)
        case .bool(let b): appendASCII(b ? "true" : "false", &out)
        case .int(let i):
            if strict && (i > JSON.canonicalIntegerLimit || i < -JSON.canonicalIntegerLimit) {
                throw MatrixError(.badJSON, "Integer \(i) is outside the canonical JSON range")
            }
            writeInt(i, into: &out)
        case .double(let d):
            let limit = Double(JSON.canonicalIntegerLimit)
            if d.isFinite, d.rounded(.towardZero) == d, abs(d) <= limit {
                writeInt(Int64(d), into: &out)
            } else if !strict && d.isFinite {
                writeDouble(d, into: &out)
            } else {
                throw MatrixError(.badJSON, "Canonical JSON does not allow the number \(d)")
            }
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            var first = true
            for v in a {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                try writeCanonical(v, into: &out, strict: strict)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            var first = true
            for k in sortedKeys(o) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                try writeCanonical(o[k]!, into: &out, strict: strict)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    @inline(__always)
    static func appendASCII(_ s: StaticString, _ out: inout [UInt8]) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    static func writeInt(_ value: Int64, into out: inout [UInt8]) {
        if value >= 0 && value < 10 {
            out.append(UInt8(truncatingIfNeeded: value) &+ 0x30)
            return
        }
        // Digits right to left into a small stack buffer; magnitude as UInt64 handles Int64.min.
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
            var i = 20
            repeat {
                i -= 1
                buf[i] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
            } while magnitude != 0
            if value < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[i..<20]))
        }
    }

    static func writeDouble(_ d: Double, into out: inout [UInt8]) {
        guard d.isFinite else { appendASCII("null", &out); return }
        // Swift's description is the shortest round-trip form ("1.5", "1e+16"); both are JSON.
        out.append(contentsOf: d.description.utf8)
    }


    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            do {
                var runStart = 0
                var i = 0
                let n = bytes.count
                while i < n {
                    let b = bytes[i]
                    if b < 0x20 || b == 0x22 || b == 0x5C {
                        if runStart < i {
                            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
                        }
                        appendEscape(b, into: &out)
                        runStart = i + 1
                    }
                    i += 1
                }
                if runStart < n {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<n]))
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    static func hex(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10 }

    @inline(__always)
    static func appendEscape(_ b: UInt8, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\\"))
        switch b {
        case 0x22: out.append(0x22)
        case 0x5C: out.append(0x5C)
        case 0x0A: out.append(UInt8(ascii: "n"))
        case 0x0D: out.append(UInt8(ascii: "r"))
        case 0x09: out.append(UInt8(ascii: "t"))
        case 0x08: out.append(UInt8(ascii: "b"))
        case 0x0C: out.append(UInt8(ascii: "f"))
        default:
            out.append(UInt8(ascii: "u")); out.append(0x30); out.append(0x30)
            out.append(hex(b >> 4)); out.append(hex(b & 0xF))
        }
    }
}
