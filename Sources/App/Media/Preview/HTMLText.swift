/// Text of an HTML page for URL previews: the page's character set (a `<meta charset>` in
/// its first KiB, an XML declaration, the `Content-Type` header, then UTF-8, then
/// windows-1252, as Synapse and BeautifulSoup try them), decoding to UTF-8, and character
/// references (`&amp;`, `&#233;`, `&#x1F600;`, the common named ones). Pure; used by
/// `HTMLScanner` and `OpenGraph`.
enum HTMLText {
    enum Charset: Equatable { case utf8, windows1252 }

    /// The page as valid UTF-8 bytes; nil when it is empty.
    static func decodeDocument(_ body: [UInt8], contentType: String?) -> [UInt8]? {
        guard !body.isEmpty else { return nil }
        var body = body[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        for charset in candidates(body, contentType: contentType) {
            switch charset {
            case .utf8:
                if validUTF8(body) { return Array(body) }
            case .windows1252:
                return windows1252ToUTF8(body)
            }
        }
        return windows1252ToUTF8(body)
    }

    /// The character sets to try, in order (unknown labels are passed over).
    static func candidates(_ body: ArraySlice<UInt8>, contentType: String?) -> [Charset] {
        var out: [Charset] = []
        func add(_ label: String?) {
            guard let label, let charset = charset(named: label), !out.contains(charset) else { return }
            out.append(charset)
        }
        let head = Array(body.prefix(1024))
        add(metaCharset(head))
        add(xmlEncoding(head))
        if let contentType { add(headerCharset(contentType)) }
        add("utf-8")
        add("windows-1252")
        return out
    }

    /// The encodings this server decodes, by their WHATWG labels (Latin-1 and ASCII labels
    /// mean windows-1252 on the web; ASCII is also valid UTF-8).
    static func charset(named label: String) -> Charset? {
        switch label.lowercased() {
        case "utf-8", "utf8", "unicode-1-1-utf-8": return .utf8
        case "windows-1252", "cp1252", "x-cp1252", "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1",
             "l1", "cp819", "ibm819", "iso-ir-100", "us-ascii", "ascii", "ansi_x3.4-1968": return .windows1252
        default: return nil
        }
    }

    /// `charset=` inside the first `<meta ...>` that has one (covers both
    /// `<meta charset="x">` and `<meta http-equiv="Content-Type" content="...; charset=x">`).
    static func metaCharset(_ head: [UInt8]) -> String? {
        let lower = head.map(HTMLScanner.lower)
        var at = 0
        while at < lower.count, let open = lower[at...].firstIndex(of: UInt8(ascii: "<")) {
            var cursor = open + 1
            while cursor < lower.count, HTMLScanner.isSpace(lower[cursor]) { cursor += 1 }
            at = cursor
            guard lower[cursor...].starts(with: Array("meta".utf8)) else { continue }
            let end = lower[cursor...].firstIndex(of: UInt8(ascii: ">")) ?? lower.count
            if let value = labelAfter("charset", in: lower[cursor..<end]) { return value }
        }
        return nil
    }

    /// `encoding="x"` of a leading `<?xml ...?>`.
    static func xmlEncoding(_ head: [UInt8]) -> String? {
        let lower = head.map(HTMLScanner.lower)
        var start = 0
        while start < lower.count, HTMLScanner.isSpace(lower[start]) { start += 1 }
        guard lower[start...].starts(with: Array("<?xml".utf8)) else { return nil }
        let end = lower[start...].firstIndex(of: UInt8(ascii: ">")) ?? lower.count
        return labelAfter("encoding", in: lower[start..<end])
    }

    /// `charset=x` of a `Content-Type` header value.
    static func headerCharset(_ contentType: String) -> String? {
        labelAfter("charset", in: ArraySlice(contentType.utf8.prefix(256).map(HTMLScanner.lower)))
    }

    /// The `[a-z0-9_.:-]+` label after `key`, optional spaces, `=`, optional quote.
    private static func labelAfter(_ key: String, in text: ArraySlice<UInt8>) -> String? {
        let needle = Array(key.utf8)
        var at = text.startIndex
        while at + needle.count <= text.endIndex {
            guard text[at...].starts(with: needle) else { at += 1; continue }
            var cursor = at + needle.count
            while cursor < text.endIndex, HTMLScanner.isSpace(text[cursor]) { cursor += 1 }
            guard cursor < text.endIndex, text[cursor] == UInt8(ascii: "=") else { at += 1; continue }
            cursor += 1
            while cursor < text.endIndex, HTMLScanner.isSpace(text[cursor]) || text[cursor] == UInt8(ascii: "\"")
                    || text[cursor] == UInt8(ascii: "'") { cursor += 1 }
            let start = cursor
            while cursor < text.endIndex, cursor - start < 40, isLabelByte(text[cursor]) { cursor += 1 }
            return cursor > start ? String(decoding: text[start..<cursor], as: UTF8.self) : nil
        }
        return nil
    }

    private static func isLabelByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
            || b == UInt8(ascii: ".") || b == UInt8(ascii: ":")
    }

    static func validUTF8(_ bytes: ArraySlice<UInt8>) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    /// windows-1252 as WHATWG defines it: 0x80–0x9F map to typographic characters, the five
    /// unassigned bytes to the C1 controls of the same value, the rest is Latin-1.
    static func windows1252ToUTF8(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 8)
        for b in bytes {
            if b < 0x80 { out.append(b); continue }
            let scalar = b < 0xA0 ? windows1252High[Int(b - 0x80)] : UInt32(b)
            out += Array(String(Character(Unicode.Scalar(scalar)!)).utf8)
        }
        return out
    }

    private static let windows1252High: [UInt32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
        0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ]

    // MARK: Character references

    /// `bytes` (valid UTF-8) with character references replaced. In an attribute a named
    /// reference without `;` followed by `=` or an alphanumeric stays as written (HTML's rule
    /// for URLs such as `?a=1&copy=2`).
    static func decode(_ bytes: ArraySlice<UInt8>, inAttribute: Bool = false) -> String {
        guard bytes.contains(UInt8(ascii: "&")) else { return String(decoding: bytes, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            guard b == UInt8(ascii: "&"), let (scalar, length) = reference(bytes, at: i, inAttribute: inAttribute) else {
                out.append(b)
                i += 1
                continue
            }
            out += Array(String(Character(scalar)).utf8)
            i += length
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The reference at `start` (an `&`) and its length in bytes.
    private static func reference(_ bytes: ArraySlice<UInt8>, at start: Int, inAttribute: Bool) -> (Unicode.Scalar, Int)? {
        var cursor = start + 1
        guard cursor < bytes.endIndex else { return nil }
        if bytes[cursor] == UInt8(ascii: "#") {
            cursor += 1
            let hex = cursor < bytes.endIndex && (bytes[cursor] | 0x20) == UInt8(ascii: "x")
            if hex { cursor += 1 }
            let digitsStart = cursor
            var value: UInt32 = 0
            // At most 8 digits are read, so the value cannot overflow.
            while cursor < bytes.endIndex, cursor - digitsStart < 8,
                  let digit = hex ? hexDigit(bytes[cursor]) : decimalDigit(bytes[cursor]) {
                value = value * (hex ? 16 : 10) + UInt32(digit)
                cursor += 1
            }
            guard cursor > digitsStart else { return nil }
            while cursor < bytes.endIndex, (hex ? hexDigit(bytes[cursor]) : decimalDigit(bytes[cursor])) != nil { cursor += 1 }
            if cursor < bytes.endIndex, bytes[cursor] == UInt8(ascii: ";") { cursor += 1 }
            let scalar: Unicode.Scalar
            if value >= 0x80 && value <= 0x9F {
                scalar = Unicode.Scalar(windows1252High[Int(value - 0x80)]) ?? "\u{FFFD}"
            } else {
                scalar = value == 0 ? "\u{FFFD}" : (Unicode.Scalar(value) ?? "\u{FFFD}")
            }
            return (scalar, cursor - start)
        }
        let nameStart = cursor
        while cursor < bytes.endIndex, cursor - nameStart < 10, isAlphanumeric(bytes[cursor]) { cursor += 1 }
        guard cursor > nameStart else { return nil }
        let name = String(decoding: bytes[nameStart..<cursor], as: UTF8.self)
        let terminated = cursor < bytes.endIndex && bytes[cursor] == UInt8(ascii: ";")
        guard let scalar = namedReferences[name] else { return nil }
        if !terminated && inAttribute && cursor < bytes.endIndex
            && (bytes[cursor] == UInt8(ascii: "=") || isAlphanumeric(bytes[cursor])) {
            return nil
        }
        if !terminated && !legacyUnterminated.contains(name) { return nil }
        return (scalar, cursor - start + (terminated ? 1 : 0))
    }

    private static func decimalDigit(_ b: UInt8) -> Int? { b >= 0x30 && b <= 0x39 ? Int(b - 0x30) : nil }
    private static func hexDigit(_ b: UInt8) -> Int? {
        if let d = decimalDigit(b) { return d }
        let l = b | 0x20
        return l >= 0x61 && l <= 0x66 ? Int(l - 0x61 + 10) : nil
    }
    private static func isAlphanumeric(_ b: UInt8) -> Bool { HTMLScanner.isLetter(b) || decimalDigit(b) != nil }

    /// The references most pages use (the full table has 2,231; pages in the wild use few).
    static let namedReferences: [String: Unicode.Scalar] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}",
        "copy": "\u{A9}", "reg": "\u{AE}", "trade": "\u{2122}", "hellip": "\u{2026}", "mdash": "\u{2014}",
        "ndash": "\u{2013}", "lsquo": "\u{2018}", "rsquo": "\u{2019}", "ldquo": "\u{201C}", "rdquo": "\u{201D}",
        "sbquo": "\u{201A}", "bdquo": "\u{201E}", "laquo": "\u{AB}", "raquo": "\u{BB}", "middot": "\u{B7}",
        "bull": "\u{2022}", "deg": "\u{B0}", "euro": "\u{20AC}", "pound": "\u{A3}", "yen": "\u{A5}", "cent": "\u{A2}",
        "sect": "\u{A7}", "para": "\u{B6}", "times": "\u{D7}", "divide": "\u{F7}", "plusmn": "\u{B1}",
        "shy": "\u{AD}", "iexcl": "\u{A1}", "iquest": "\u{BF}", "szlig": "\u{DF}",
        "agrave": "\u{E0}", "aacute": "\u{E1}", "acirc": "\u{E2}", "atilde": "\u{E3}", "auml": "\u{E4}", "aring": "\u{E5}",
        "aelig": "\u{E6}", "ccedil": "\u{E7}", "egrave": "\u{E8}", "eacute": "\u{E9}", "ecirc": "\u{EA}", "euml": "\u{EB}",
        "igrave": "\u{EC}", "iacute": "\u{ED}", "icirc": "\u{EE}", "iuml": "\u{EF}", "ntilde": "\u{F1}", "ograve": "\u{F2}",
        "oacute": "\u{F3}", "ocirc": "\u{F4}", "otilde": "\u{F5}", "ouml": "\u{F6}", "oslash": "\u{F8}", "ugrave": "\u{F9}",
        "uacute": "\u{FA}", "ucirc": "\u{FB}", "uuml": "\u{FC}", "yacute": "\u{FD}", "yuml": "\u{FF}",
        "Agrave": "\u{C0}", "Aacute": "\u{C1}", "Acirc": "\u{C2}", "Atilde": "\u{C3}", "Auml": "\u{C4}", "Aring": "\u{C5}",
        "AElig": "\u{C6}", "Ccedil": "\u{C7}", "Egrave": "\u{C8}", "Eacute": "\u{C9}", "Ecirc": "\u{CA}", "Euml": "\u{CB}",
        "Igrave": "\u{CC}", "Iacute": "\u{CD}", "Ntilde": "\u{D1}", "Oacute": "\u{D3}", "Ocirc": "\u{D4}", "Ouml": "\u{D6}",
        "Oslash": "\u{D8}", "Uacute": "\u{DA}", "Uuml": "\u{DC}", "hearts": "\u{2665}", "rarr": "\u{2192}", "larr": "\u{2190}",
        "ensp": "\u{2002}", "emsp": "\u{2003}", "thinsp": "\u{2009}", "zwnj": "\u{200C}", "zwj": "\u{200D}",
    ]

    /// Named references HTML also accepts without the `;` (the Latin-1 ones, as old pages
    /// write them).
    static let legacyUnterminated: Set<String> = ["amp", "lt", "gt", "quot", "nbsp", "copy", "reg"]
}
