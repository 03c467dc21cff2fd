/// A forgiving HTML tokenizer over UTF-8 bytes, for URL previews: start tags with their
/// attributes, end tags and text runs, in document order. Comments, doctypes and processing
/// instructions are skipped; the content of raw-text elements (`script`, `style`, `title`,
/// `textarea`...) is one text run, so a `<` inside a script never opens a tag.
///
/// Built for hostile pages: no tree is built (nesting depth costs nothing), every step moves
/// forward (linear time), an unterminated tag, comment or quoted value ends at the end of
/// the input, and what a tag keeps is capped (`maxAttributes` attributes, `maxValueBytes`
/// bytes of each value; the rest is scanned and dropped). Pure: no I/O. Used by `OpenGraph`.
struct HTMLScanner {
    enum Token: Equatable {
        /// A start tag: its lowercased name and its attributes (lowercased names, values with
        /// entities decoded), in order.
        case start(name: String, attributes: [Attribute], selfClosing: Bool)
        case end(name: String)
        /// Text between tags, entities not yet decoded (`HTMLText.decode`).
        case text(ArraySlice<UInt8>)
    }

    struct Attribute: Equatable {
        var name: String
        var value: String
    }

    static let maxAttributes = 64
    static let maxValueBytes = 16 * 1024
    static let maxNameBytes = 64

    /// Elements whose content is text up to their own end tag (HTML's raw text and escapable
    /// raw text elements, plus the legacy ones browsers treat alike).
    static let rawTextElements: Set<String> = ["script", "style", "title", "textarea", "xmp", "iframe",
                                               "noembed", "noframes"]

    private let bytes: [UInt8]
    private var position = 0
    /// Set after the start tag of a raw-text element: the next token is its content.
    private var rawTextEnd: String?

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func next() -> Token? {
        if let name = rawTextEnd {
            rawTextEnd = nil
            let start = position
            position = findEndTag(name, from: position)
            if position > start { return .text(bytes[start..<position]) }
        }
        while position < bytes.count {
            if bytes[position] != UInt8(ascii: "<") {
                let start = position
                position = bytes[position...].firstIndex(of: UInt8(ascii: "<")) ?? bytes.count
                return .text(bytes[start..<position])
            }
            if let token = markup() { return token }
        }
        return nil
    }

    // MARK: Markup

    /// At a `<`: a tag (returned), skipped markup (nil, position moved past it), or a lone `<`
    /// (returned as text).
    private mutating func markup() -> Token? {
        let next = byte(at: position + 1)
        if next == UInt8(ascii: "!") {
            if starts(with: "<!--", at: position) {
                position = find("-->", from: position + 4).map { $0 + 3 } ?? bytes.count
            } else {
                position = skipPast(UInt8(ascii: ">"), from: position + 2)
            }
            return nil
        }
        if next == UInt8(ascii: "?") {
            position = skipPast(UInt8(ascii: ">"), from: position + 2)
            return nil
        }
        if next == UInt8(ascii: "/"), let letter = byte(at: position + 2), Self.isLetter(letter) {
            var cursor = position + 2
            let name = readName(&cursor)
            position = skipPast(UInt8(ascii: ">"), from: cursor)
            return .end(name: name)
        }
        if let letter = next, Self.isLetter(letter) {
            return startTag()
        }
        // A `<` that opens nothing is text.
        let start = position
        position += 1
        return .text(bytes[start..<position])
    }

    private mutating func startTag() -> Token {
        var cursor = position + 1
        let name = readName(&cursor)
        var attributes: [Attribute] = []
        var selfClosing = false
        while cursor < bytes.count {
            let b = bytes[cursor]
            if Self.isSpace(b) { cursor += 1; continue }
            if b == UInt8(ascii: ">") { cursor += 1; break }
            if b == UInt8(ascii: "/") {
                selfClosing = byte(at: cursor + 1) == UInt8(ascii: ">")
                cursor += 1
                continue
            }
            // An attribute name runs to whitespace, `/`, `>` or `=` (a leading `=` is part of it).
            let nameStart = cursor
            cursor += 1
            while cursor < bytes.count, !Self.isSpace(bytes[cursor]),
                  bytes[cursor] != UInt8(ascii: "/"), bytes[cursor] != UInt8(ascii: ">"), bytes[cursor] != UInt8(ascii: "=") {
                cursor += 1
            }
            let attributeName = Self.lowercased(bytes[nameStart..<min(cursor, nameStart + Self.maxNameBytes)])
            var value: ArraySlice<UInt8> = []
            var scan = cursor
            while scan < bytes.count, Self.isSpace(bytes[scan]) { scan += 1 }
            if scan < bytes.count, bytes[scan] == UInt8(ascii: "=") {
                scan += 1
                while scan < bytes.count, Self.isSpace(bytes[scan]) { scan += 1 }
                value = readValue(&scan)
                cursor = scan
            }
            if attributes.count < Self.maxAttributes {
                let kept = value.prefix(Self.maxValueBytes)
                attributes.append(Attribute(name: attributeName, value: HTMLText.decode(kept, inAttribute: true)))
            }
        }
        position = cursor
        if Self.rawTextElements.contains(name) && !selfClosing { rawTextEnd = name }
        return .start(name: name, attributes: attributes, selfClosing: selfClosing)
    }

    /// A quoted value (to its closing quote, or the end of the input) or an unquoted one.
    private func readValue(_ cursor: inout Int) -> ArraySlice<UInt8> {
        guard cursor < bytes.count else { return [] }
        let quote = bytes[cursor]
        if quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") {
            let start = cursor + 1
            let end = bytes[start...].firstIndex(of: quote) ?? bytes.count
            cursor = min(end + 1, bytes.count)
            return bytes[start..<end]
        }
        let start = cursor
        while cursor < bytes.count, !Self.isSpace(bytes[cursor]), bytes[cursor] != UInt8(ascii: ">") { cursor += 1 }
        return bytes[start..<cursor]
    }

    /// A tag name: letters, digits and `-:_`, lowercased; longer names are read whole but
    /// kept to `maxNameBytes`.
    private func readName(_ cursor: inout Int) -> String {
        let start = cursor
        while cursor < bytes.count, !Self.isSpace(bytes[cursor]), bytes[cursor] != UInt8(ascii: "/"),
              bytes[cursor] != UInt8(ascii: ">") {
            cursor += 1
        }
        return Self.lowercased(bytes[start..<min(cursor, start + Self.maxNameBytes)])
    }

    /// The position of `</name` (followed by whitespace, `/` or `>`), or the end of the input.
    private func findEndTag(_ name: String, from start: Int) -> Int {
        let needle = Array(("</" + name).utf8)
        var at = start
        while let found = findCaseInsensitive(needle, from: at) {
            let after = byte(at: found + needle.count)
            if after == nil || Self.isSpace(after!) || after == UInt8(ascii: ">") || after == UInt8(ascii: "/") {
                return found
            }
            at = found + 1
        }
        return bytes.count
    }

    // MARK: Byte helpers

    private func byte(at index: Int) -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private func starts(with text: String, at index: Int) -> Bool {
        let needle = Array(text.utf8)
        guard index + needle.count <= bytes.count else { return false }
        return bytes[index..<(index + needle.count)].elementsEqual(needle)
    }

    private func find(_ text: String, from start: Int) -> Int? {
        let needle = Array(text.utf8)
        guard let first = needle.first, start < bytes.count else { return nil }
        var at = start
        while at + needle.count <= bytes.count {
            guard let candidate = bytes[at...].firstIndex(of: first) else { return nil }
            if candidate + needle.count > bytes.count { return nil }
            if bytes[candidate..<(candidate + needle.count)].elementsEqual(needle) { return candidate }
            at = candidate + 1
        }
        return nil
    }

    private func findCaseInsensitive(_ needle: [UInt8], from start: Int) -> Int? {
        var at = start
        while at + needle.count <= bytes.count {
            guard let candidate = bytes[at...].firstIndex(of: UInt8(ascii: "<")) else { return nil }
            if candidate + needle.count > bytes.count { return nil }
            var matches = true
            for i in 1..<needle.count where Self.lower(bytes[candidate + i]) != needle[i] {
                matches = false
                break
            }
            if matches { return candidate }
            at = candidate + 1
        }
        return nil
    }

    private func skipPast(_ terminator: UInt8, from start: Int) -> Int {
        guard start < bytes.count else { return bytes.count }
        return bytes[start...].firstIndex(of: terminator).map { $0 + 1 } ?? bytes.count
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0C || b == 0x0D }
    static func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
    static func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

    static func lowercased(_ slice: ArraySlice<UInt8>) -> String {
        String(decoding: slice.map(lower), as: UTF8.self)
    }
}
