// libFuzzer target for canonical JSON and the compact encoder; built by scripts/fuzz-canonical-json.sh
// together with the Matrix sources (Sources/Matrix/JSON.swift, JSONParser.swift).
//
// For any input that parses (with the default options, and with duplicateKeysLastWins):
//  - compact: `encoded()` re-parses to an equal value, and encoding that again gives the same bytes;
//  - canonical, strict and not: `canonicalEncoded(strict:)` either throws (a MatrixError, M_BAD_JSON)
//    or yields bytes that re-parse to a value whose canonical form (same strictness) is byte-for-byte
//    identical;
//  - strict succeeds exactly when every number is an integer, or an integral double, of magnitude
//    at most 2^53-1 (the appendix's rule, computed here independently); its output then holds only
//    integers, equals the compact encoding of its re-parse, and equals the non-strict output;
//  - non-strict never throws for a parsed value (the parser yields only finite numbers);
//  - canonical output has no insignificant whitespace outside strings and object keys in strictly
//    increasing UTF-8 byte order (checked on the re-parsed value's keys).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCanonicalJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    if let value = try? JSON.parse(bytes) { check(value) }
    if let value = try? JSON.parse(bytes, options: JSONParseOptions(duplicateKeysLastWins: true)) { check(value) }
    return 0
}

private func fail(_ message: String, _ value: JSON) -> Never {
    fatalError("\(message): \(String(decoding: value.encoded(), as: UTF8.self).prefix(500))")
}

/// Does the appendix allow every number in `value` (strict canonical JSON)?
private func strictlyCanonical(_ value: JSON) -> Bool {
    let limit: Int64 = 9_007_199_254_740_991
    switch value {
    case .null, .bool, .string: return true
    case .int(let i): return i >= -limit && i <= limit
    case .double(let d): return d.isFinite && d == d.rounded(.towardZero) && d.magnitude <= Double(limit)
    case .array(let a): return a.allSatisfy(strictlyCanonical)
    case .object(let o): return o.values.allSatisfy(strictlyCanonical)
    }
}

private func onlyIntegers(_ value: JSON) -> Bool {
    switch value {
    case .double: return false
    case .null, .bool, .string, .int: return true
    case .array(let a): return a.allSatisfy(onlyIntegers)
    case .object(let o): return o.values.allSatisfy(onlyIntegers)
    }
}

private func lessUTF8(_ a: String, _ b: String) -> Bool { Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) }

/// Walks canonical bytes: outside strings there must be no whitespace.
private func noWhitespaceOutsideStrings(_ bytes: [UInt8]) -> Bool {
    var inString = false, escaped = false
    for b in bytes {
        if inString {
            if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
        } else if b == 0x22 {
            inString = true
        } else if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 {
            return false
        }
    }
    return !inString
}

/// Object keys, as parsed from canonical bytes, must come out of the writer sorted; we check the
/// byte order in the text itself by re-reading each object's keys in order.
private func keysSorted(_ bytes: [UInt8]) -> Bool {
    // A small scanner over canonical text (no whitespace): a stack of "last key" per object level.
    var stack: [(isObject: Bool, last: [UInt8]?, expectKey: Bool)] = []
    var i = 0
    let n = bytes.count
    while i < n {
        let b = bytes[i]
        switch b {
        case UInt8(ascii: "{"): stack.append((true, nil, true)); i += 1
        case UInt8(ascii: "["): stack.append((false, nil, false)); i += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"): stack.removeLast(); i += 1
        case UInt8(ascii: ","):
            if var top = stack.last, top.isObject { top.expectKey = true; stack[stack.count - 1] = top }
            i += 1
        case UInt8(ascii: "\""):
            var j = i + 1
            var raw: [UInt8] = []
            while bytes[j] != 0x22 {
                if bytes[j] == 0x5C { raw.append(bytes[j]); j += 1 }
                raw.append(bytes[j]); j += 1
            }
            if var top = stack.last, top.isObject, top.expectKey {
                // Keys compare by their decoded UTF-8; decode via the parser.
                guard case .string(let key)? = try? JSON.parse([0x22] + raw + [0x22]) else { return false }
                let k = Array(key.utf8)
                if let last = top.last, !last.lexicographicallyPrecedes(k) { return false }
                top.last = k
                top.expectKey = false
                stack[stack.count - 1] = top
            }
            i = j + 1
        default: i += 1
        }
    }
    return stack.isEmpty
}

private func check(_ value: JSON) {
    // Compact encoder.
    let compact = value.encoded()
    guard let again = try? JSON.parse(compact) else { fail("compact output does not parse", value) }
    guard again == value else { fail("compact round trip changed the value", value) }
    guard again.encoded() == compact else { fail("compact output is not stable", value) }

    // Canonical, strict.
    let allowed = strictlyCanonical(value)
    var strictBytes: [UInt8]? = nil
    do {
        let c = try value.canonicalEncoded(strict: true)
        guard allowed else { fail("strict canonical accepted a number outside the appendix", value) }
        guard let re = try? JSON.parse(c) else { fail("strict canonical output does not parse", value) }
        guard onlyIntegers(re) else { fail("strict canonical output holds a non-integer", value) }
        guard let c2 = try? re.canonicalEncoded(strict: true), c2 == c else { fail("strict canonical form is not stable", value) }
        guard re.encoded() == c else { fail("strict canonical output differs from its compact encoding", value) }
        guard noWhitespaceOutsideStrings(c) else { fail("strict canonical output has whitespace", value) }
        guard keysSorted(c) else { fail("strict canonical keys are not sorted", value) }
        strictBytes = c
    } catch {
        guard error.code == .badJSON else { fail("strict canonical threw \(error.code)", value) }
        guard !allowed else { fail("strict canonical refused an allowed value", value) }
    }

    // Canonical, not strict (room versions 1–5).
    do {
        let c = try value.canonicalEncoded(strict: false)
        guard let re = try? JSON.parse(c) else { fail("lax canonical output does not parse", value) }
        guard let c2 = try? re.canonicalEncoded(strict: false), c2 == c else { fail("lax canonical form is not stable", value) }
        if let strictBytes, strictBytes != c { fail("strict and lax canonical forms differ", value) }
        guard noWhitespaceOutsideStrings(c) else { fail("lax canonical output has whitespace", value) }
        guard keysSorted(c) else { fail("lax canonical keys are not sorted", value) }
    } catch {
        fail("lax canonical threw \(error.code) for a parsed value", value)
    }
}
