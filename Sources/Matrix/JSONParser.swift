/// Limits the parser enforces. Deliberate choices, documented so callers know what to expect:
/// - duplicate keys in an object are rejected (two parsers could otherwise disagree about a
///   signed object; canonical JSON never contains them);
/// - nesting deeper than `maxDepth` is rejected (protects the stack);
/// - invalid UTF-8, lone surrogate escapes and control characters in strings are rejected;
/// - integers that fit in Int64 are `.int`; other numbers (fractions, exponents, larger
///   integers) are `.double`;
/// - whitespace around the value is allowed, anything after it is not.
public struct JSONParseOptions: Sendable {
    public var maxDepth: Int
    /// Accept duplicate keys, keeping the last value, as Python's `json` (and so Synapse) does.
    /// Off by default; an escape hatch for interoperability, not for signed data.
    public var duplicateKeysLastWins: Bool
    public init(maxDepth: Int = 256, duplicateKeysLastWins: Bool = false) {
        self.maxDepth = maxDepth
        self.duplicateKeysLastWins = duplicateKeysLastWins
    }
}

extension JSON {
    /// Parses JSON text. Malformed input throws `M_NOT_JSON`; it never traps.
    public static func parse(_ bytes: some Collection<UInt8>,
                             options: JSONParseOptions = JSONParseOptions()) throws(MatrixError) -> JSON {
        let fast: Result<JSON, MatrixError>? = bytes.withContiguousStorageIfAvailable { buf in
            Result { () throws(MatrixError) -> JSON in try parse(buffer: buf, options: options) }
        }
        if let fast { return try fast.get() }
        let copy = Array(bytes)
        let result = copy.withUnsafeBufferPointer { buf in
            Result { () throws(MatrixError) -> JSON in try parse(buffer: buf, options: options) }
        }
        return try result.get()
    }

    /// Parses JSON bytes (the common case; a concrete overload so callers in other modules do not
    /// go through unspecialized generic code).
    public static func parse(_ bytes: [UInt8], options: JSONParseOptions = JSONParseOptions()) throws(MatrixError) -> JSON {
        let result = bytes.withUnsafeBufferPointer { buf in
            Result { () throws(MatrixError) -> JSON in try parse(buffer: buf, options: options) }
        }
        return try result.get()
    }

    /// Parses JSON text from a String.
    public static func parse(_ text: String, options: JSONParseOptions = JSONParseOptions()) throws(MatrixError) -> JSON {
        var text = text
        let result = text.withUTF8 { buf in
            Result { () throws(MatrixError) -> JSON in try parse(buffer: buf, options: options) }
        }
        return try result.get()
    }

    static func parse(buffer: UnsafeBufferPointer<UInt8>, options: JSONParseOptions) throws(MatrixError) -> JSON {
        var parser = JSONParser(buffer, maxDepth: options.maxDepth, lastWins: options.duplicateKeysLastWins)
        do throws(JSONParser.Failure) {
            parser.skipWhitespace()
            let value = try parser.parseValue(depth: 0)
            parser.skipWhitespace()
            if parser.pos != parser.end { throw JSONParser.Failure(message: "Trailing data", offset: parser.pos) }
            return value
        } catch {
            throw MatrixError(.notJSON, "Invalid JSON: \(error.message) at byte \(error.offset)")
        }
    }
}

/// A recursive-descent parser over a byte buffer. Internal; `JSON.parse` is the entry point.
struct JSONParser {
    struct Failure: Error { var message: String; var offset: Int }

    let base: UnsafePointer<UInt8>?
    let end: Int
    var pos: Int = 0
    let maxDepth: Int
    let lastWins: Bool

    init(_ buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int, lastWins: Bool = false) {
        self.base = buffer.baseAddress
        self.end = buffer.count
        self.maxDepth = maxDepth
        self.lastWins = lastWins
    }

    @inline(__always) func byte(_ i: Int) -> UInt8 { base.unsafelyUnwrapped[i] }

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < end {
            let b = byte(pos)
            if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { pos += 1 } else { return }
        }
    }

    func fail(_ message: String) -> Failure { Failure(message: message, offset: pos) }

    mutating func parseValue(depth: Int) throws(Failure) -> JSON {
        guard pos < end else { throw fail("Unexpected end of input") }
        switch byte(pos) {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("Unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(Failure) {
        let n = literal.utf8CodeUnitCount
        guard end - pos >= n else { throw fail("Unexpected end of input") }
        let p = literal.utf8Start
        for i in 0..<n where byte(pos + i) != p[i] { throw fail("Invalid literal") }
        pos += n
    }

    /// Members of the objects being parsed, innermost last: an object's members are collected here
    /// and moved into a dictionary of the right capacity once, instead of growing it key by key.
    var members: [(String, JSON)] = []

    mutating func parseObject(depth: Int) throws(Failure) -> JSON {
        if depth > maxDepth { throw fail("Nesting too deep") }
        let objectStart = pos
        pos += 1 // {
        skipWhitespace()
        if pos < end && byte(pos) == UInt8(ascii: "}") { pos += 1; return .object([:]) }
        let base = members.count
        while true {
            skipWhitespace()
            guard pos < end, byte(pos) == UInt8(ascii: "\"") else { throw fail("Expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard pos < end, byte(pos) == UInt8(ascii: ":") else { throw fail("Expected ':'") }
            pos += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append((key, value))
            skipWhitespace()
            guard pos < end else { throw fail("Unexpected end of input") }
            let b = byte(pos)
            pos += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "}") { break }
            pos -= 1
            throw fail("Expected ',' or '}'")
        }
        var object = [String: JSON](minimumCapacity: members.count - base)
        for i in base..<members.count {
            if object.updateValue(members[i].1, forKey: members[i].0) != nil && !lastWins {
                throw Failure(message: "Duplicate key", offset: objectStart)
            }
        }
        members.removeSubrange(base...)
        return .object(object)
    }

    mutating func parseArray(depth: Int) throws(Failure) -> JSON {
        if depth > maxDepth { throw fail("Nesting too deep") }
        pos += 1 // [
        var array: [JSON] = []
        skipWhitespace()
        if pos < end && byte(pos) == UInt8(ascii: "]") { pos += 1; return .array(array) }
        while true {
            skipWhitespace()
            array.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < end else { throw fail("Unexpected end of input") }
            let b = byte(pos)
            pos += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "]") { return .array(array) }
            pos -= 1
            throw fail("Expected ',' or ']'")
        }
    }

    mutating func parseNumber() throws(Failure) -> JSON {
        let start = pos
        var negative = false
        if byte(pos) == UInt8(ascii: "-") {
            negative = true
            pos += 1
        }
        guard pos < end, isDigit(byte(pos)) else { throw fail("Invalid number") }
        // Integer part: "0" or [1-9][0-9]*.
        var magnitude: UInt64 = 0
        var overflow = false
        if byte(pos) == UInt8(ascii: "0") {
            pos += 1
            if pos < end && isDigit(byte(pos)) { throw fail("Leading zero in number") }
        } else {
            while pos < end, isDigit(byte(pos)) {
                let d = UInt64(byte(pos) &- 0x30)
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(d)
                if o1 || o2 { overflow = true }
                magnitude = m2
                pos += 1
            }
        }
        var isInteger = true
        if pos < end && byte(pos) == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard pos < end, isDigit(byte(pos)) else { throw fail("Invalid fraction") }
            while pos < end, isDigit(byte(pos)) { pos += 1 }
        }
        if pos < end && (byte(pos) == UInt8(ascii: "e") || byte(pos) == UInt8(ascii: "E")) {
            isInteger = false
            pos += 1
            if pos < end && (byte(pos) == UInt8(ascii: "+") || byte(pos) == UInt8(ascii: "-")) { pos += 1 }
            guard pos < end, isDigit(byte(pos)) else { throw fail("Invalid exponent") }
            while pos < end, isDigit(byte(pos)) { pos += 1 }
        }
        if isInteger && !overflow {
            if negative {
                if magnitude <= UInt64(Int64.max) + 1 {
                    return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
                }
            } else if magnitude <= UInt64(Int64.max) {
                return .int(Int64(magnitude))
            }
        }
        let text = String(decoding: UnsafeBufferPointer(start: base.unsafelyUnwrapped + start, count: pos - start),
                          as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw Failure(message: "Number out of range", offset: start) }
        return .double(d)
    }

    @inline(__always) func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }

    /// Parses a string starting at the opening quote. The common case (no escapes, ASCII or
    /// valid UTF-8) builds the String straight from the input bytes.
    mutating func parseString() throws(Failure) -> String {
        pos += 1 // opening quote
        let start = pos
        var ascii = true
        while pos < end {
            let b = byte(pos)
            if b == UInt8(ascii: "\"") {
                let bytes = UnsafeBufferPointer(start: base.unsafelyUnwrapped + start, count: pos - start)
                pos += 1
                if ascii { return String(decoding: bytes, as: UTF8.self) }
                guard let s = String(validating: bytes, as: UTF8.self) else {
                    throw Failure(message: "Invalid UTF-8 in string", offset: start)
                }
                return s
            }
            if b == UInt8(ascii: "\\") { return try parseEscapedString(from: start) }
            if b < 0x20 { throw fail("Control character in string") }
            if b >= 0x80 { ascii = false }
            pos += 1
        }
        throw fail("Unterminated string")
    }

    /// Slow path: the string has escapes. Decodes into a byte buffer, then validates UTF-8.
    mutating func parseEscapedString(from start: Int) throws(Failure) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(pos - start + 16)
        out.append(contentsOf: UnsafeBufferPointer(start: base.unsafelyUnwrapped + start, count: pos - start))
        while pos < end {
            let b = byte(pos)
            if b == UInt8(ascii: "\"") {
                pos += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw Failure(message: "Invalid UTF-8 in string", offset: start)
                }
                return s
            }
            if b < 0x20 { throw fail("Control character in string") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                pos += 1
                continue
            }
            pos += 1
            guard pos < end else { throw fail("Unterminated escape") }
            let e = byte(pos)
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard end - pos >= 6, byte(pos) == UInt8(ascii: "\\"), byte(pos + 1) == UInt8(ascii: "u") else {
                        throw fail("Lone surrogate in string")
                    }
                    pos += 2
                    let low = try parseHex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("Invalid surrogate pair") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("Lone surrogate in string")
                }
                appendUTF8(scalar, into: &out)
            default:
                pos -= 1
                throw fail("Invalid escape")
            }
        }
        throw fail("Unterminated string")
    }

    mutating func parseHex4() throws(Failure) -> UInt32 {
        guard end - pos >= 4 else { throw fail("Truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = byte(pos)
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - 0x41 + 10)
            default: throw fail("Invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    func appendUTF8(_ scalar: UInt32, into out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (scalar >> 6)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (scalar >> 12)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (scalar >> 18)))
            out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }
}
