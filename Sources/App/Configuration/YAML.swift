/// The YAML a configuration file is written in, read without a YAML library: Yams (the library
/// this replaced) needs Foundation, and Foundation with ICU cost an idle daemon ~7 MB of
/// resident memory for one file read at start.
///
/// What is read: block mappings and sequences (a sequence may sit at its key's indentation),
/// flow sequences and mappings (`[a, b]`, `{a: 1}`, across lines), plain, single- and
/// double-quoted scalars (with YAML's escapes), literal and folded block scalars (`|`, `>`,
/// with `-`/`+` chomping and an indentation indicator), comments, and `---`/`...` around one
/// document. Anchors, aliases, tags, complex keys and several documents are refused with the
/// line they are on, as are tabs in indentation and a key given twice: a configuration
/// must never be read differently from what its author meant.
enum YAMLNode: Equatable, Sendable {
    /// A scalar's text; `plain` when it was not quoted nor a block scalar (only a plain `~`,
    /// `null` or empty scalar means "no value").
    case scalar(String, plain: Bool)
    case mapping([YAMLEntry])
    case sequence([YAMLNode])

    var mapping: [YAMLEntry]? {
        if case .mapping(let entries) = self { return entries }
        return nil
    }

    var sequence: [YAMLNode]? {
        if case .sequence(let items) = self { return items }
        return nil
    }

    /// Whether this is YAML's null: a plain `~`, `null` (any case) or nothing.
    var isNull: Bool {
        guard case .scalar(let text, plain: true) = self else { return false }
        return text.isEmpty || text == "~" || text.lowercased() == "null"
    }
}

struct YAMLEntry: Equatable, Sendable {
    var key: String
    var value: YAMLNode
}

struct YAMLError: Error, CustomStringConvertible, Equatable {
    var line: Int
    var message: String
    var description: String { "line \(line): \(message)" }
}

/// Reads one YAML document (see `YAMLNode`).
struct YAMLParser {
    /// The document's lines without their line breaks (a `\r` before `\n` dropped).
    private var lines: [[UInt8]]
    private var index = 0

    /// The document's root, or nil for an empty document (only comments or blank lines).
    static func parse(_ text: String) throws -> YAMLNode? {
        var parser = YAMLParser(text)
        return try parser.document()
    }

    private init(_ text: String) {
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") {
                if current.last == UInt8(ascii: "\r") { current.removeLast() }
                lines.append(current)
                current = []
            } else {
                current.append(byte)
            }
        }
        if current.last == UInt8(ascii: "\r") { current.removeLast() }
        if !current.isEmpty { lines.append(current) }
        if lines.first?.starts(with: [0xEF, 0xBB, 0xBF]) == true { lines[0].removeFirst(3) }
        self.lines = lines
    }

    // MARK: lines

    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
    private static let hash = UInt8(ascii: "#")

    private func indent(of line: [UInt8]) -> Int {
        var n = 0
        while n < line.count, line[n] == Self.space { n += 1 }
        return n
    }

    /// Whether a line holds nothing but spaces and maybe a comment.
    private func isBlank(_ line: [UInt8]) -> Bool {
        let n = indent(of: line)
        return n == line.count || line[n] == Self.hash || (line[n] == Self.tab && isBlankAfterTabs(line, from: n))
    }

    private func isBlankAfterTabs(_ line: [UInt8], from start: Int) -> Bool {
        var i = start
        while i < line.count, line[i] == Self.space || line[i] == Self.tab { i += 1 }
        return i == line.count || line[i] == Self.hash
    }

    /// Moves past blank and comment lines; the index of the next content line, or nil at the end.
    private mutating func nextContent() throws -> Int? {
        while index < lines.count {
            if isBlank(lines[index]) { index += 1; continue }
            let n = indent(of: lines[index])
            if lines[index][n] == Self.tab { throw YAMLError(line: index + 1, message: "tabs are not allowed in indentation") }
            return index
        }
        return nil
    }

    /// The line's content after its indentation, without a trailing comment or spaces
    /// (a `#` starts a comment at the start or after a space, outside quotes).
    private func content(_ line: [UInt8], from start: Int) -> [UInt8] {
        var i = start
        var quote: UInt8 = 0
        var end = line.count
        while i < line.count {
            let c = line[i]
            if quote != 0 {
                if c == quote {
                    // '' inside single quotes is an escaped quote.
                    if quote == UInt8(ascii: "'"), i + 1 < line.count, line[i + 1] == quote { i += 2; continue }
                    quote = 0
                } else if quote == UInt8(ascii: "\""), c == UInt8(ascii: "\\") {
                    i += 2
                    continue
                }
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                // A quote opens a quoted scalar only where a scalar starts.
                if i == start || [Self.space, UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: ","), UInt8(ascii: ":"),
                                  UInt8(ascii: "-")].contains(line[i - 1]) {
                    quote = c
                }
            } else if c == Self.hash, i == start || line[i - 1] == Self.space || line[i - 1] == Self.tab {
                end = i
                break
            }
            i += 1
        }
        while end > start, line[end - 1] == Self.space || line[end - 1] == Self.tab { end -= 1 }
        return Array(line[start..<max(start, end)])
    }

    // MARK: document

    private mutating func document() throws -> YAMLNode? {
        guard let first = try nextContent() else { return nil }
        if isDocumentMarker(lines[first]), lines[first][0] == UInt8(ascii: "-") {
            let rest = content(lines[first], from: 3)
            if !rest.isEmpty { throw YAMLError(line: first + 1, message: "content after '---' is not supported") }
            index += 1
            guard try nextContent() != nil else { return nil }
        }
        let root = try block(minIndent: 0)
        if let next = try nextContent() {
            let text = lines[next]
            if isDocumentMarker(text), text[0] == UInt8(ascii: ".") {
                index += 1
                if let after = try nextContent() { throw YAMLError(line: after + 1, message: "only one document is read") }
            } else if isDocumentMarker(text) {
                throw YAMLError(line: next + 1, message: "only one document is read")
            } else {
                throw YAMLError(line: next + 1, message: "unexpected indentation")
            }
        }
        return root
    }

    /// A node written as block lines indented at least `minIndent`, or nil when the next
    /// content line is indented less (an empty value).
    private mutating func block(minIndent: Int) throws -> YAMLNode? {
        guard let at = try nextContent() else { return nil }
        let n = indent(of: lines[at])
        guard n >= minIndent else { return nil }
        let body = content(lines[at], from: n)
        if isSequenceItem(body) { return try sequence(indent: n) }
        if try keySplit(body, line: at) != nil { return try mapping(indent: n) }
        // A scalar or flow collection on its own lines.
        index = at + 1
        return try inlineValue(body, line: at, parentIndent: n - 1)
    }

    /// `---` (a document starts) or `...` (it ends), alone or before a space.
    private func isDocumentMarker(_ line: [UInt8]) -> Bool {
        (line.starts(with: Array("---".utf8)) || line.starts(with: Array("...".utf8))) && (line.count == 3 || line[3] == Self.space)
    }

    private func isSequenceItem(_ body: [UInt8]) -> Bool {
        body.first == UInt8(ascii: "-") && (body.count == 1 || body[1] == Self.space)
    }

    /// The key and the rest of a `key: value` line, or nil when the line is not one.
    private func keySplit(_ body: [UInt8], line: Int) throws -> (key: String, rest: [UInt8])? {
        guard let first = body.first else { return nil }
        if first == UInt8(ascii: "?") && (body.count == 1 || body[1] == Self.space) {
            throw YAMLError(line: line + 1, message: "complex keys ('?') are not supported")
        }
        if first == UInt8(ascii: "\"") || first == UInt8(ascii: "'") {
            // A quoted key: its closing quote, then ':'.
            var cursor = FlowCursor(bytes: body, line: line + 1)
            guard let key = try? cursor.quoted() else { return nil }
            cursor.skipSpaces()
            guard cursor.peek == UInt8(ascii: ":"), cursor.position + 1 == body.count || body[cursor.position + 1] == Self.space else {
                return nil
            }
            return (key, Array(body[(cursor.position + 1)...]).trimmingSpaces())
        }
        if first == UInt8(ascii: "[") || first == UInt8(ascii: "{") { return nil }
        var i = 0
        while i < body.count {
            if body[i] == UInt8(ascii: ":"), i + 1 == body.count || body[i + 1] == Self.space {
                let key = Array(body[..<i]).trimmingSpaces()
                if key.isEmpty { throw YAMLError(line: line + 1, message: "a key is missing before ':'") }
                try Self.refuseUnsupported(key, line: line + 1)
                return (String(decoding: key, as: UTF8.self), Array(body[(i + 1)...]).trimmingSpaces())
            }
            i += 1
        }
        return nil
    }

    /// The next content line of a collection indented `n`, with its content: nil where the
    /// collection ends (a line indented less, or a document marker at the top level).
    private mutating func nextLine(at n: Int) throws -> (index: Int, body: [UInt8])? {
        guard let at = try nextContent() else { return nil }
        let lineIndent = indent(of: lines[at])
        if lineIndent < n || (n == 0 && isDocumentMarker(lines[at])) { return nil }
        if lineIndent > n { throw YAMLError(line: at + 1, message: "unexpected indentation") }
        return (at, content(lines[at], from: n))
    }

    private mutating func mapping(indent n: Int) throws -> YAMLNode {
        var entries: [YAMLEntry] = []
        while let (at, body) = try nextLine(at: n) {
            if isSequenceItem(body) { break }  // a sequence of the parent's, at this indentation
            guard let (key, rest) = try keySplit(body, line: at) else {
                throw YAMLError(line: at + 1, message: "expected 'key: value'")
            }
            if entries.contains(where: { $0.key == key }) {
                throw YAMLError(line: at + 1, message: "the key '\(key)' is given twice")
            }
            index = at + 1
            let value: YAMLNode
            if rest.isEmpty {
                value = try nestedValue(parentIndent: n)
            } else {
                value = try inlineValue(rest, line: at, parentIndent: n)
            }
            entries.append(YAMLEntry(key: key, value: value))
        }
        return .mapping(entries)
    }

    /// The value of a key or item written on the following lines: more indented, or a
    /// sequence at the key's own indentation; nothing there is a null.
    private mutating func nestedValue(parentIndent n: Int) throws -> YAMLNode {
        if let at = try nextContent(), indent(of: lines[at]) == n, isSequenceItem(content(lines[at], from: n)) {
            return try sequence(indent: n)
        }
        return try block(minIndent: n + 1) ?? .scalar("", plain: true)
    }

    private mutating func sequence(indent n: Int) throws -> YAMLNode {
        var items: [YAMLNode] = []
        while let (at, body) = try nextLine(at: n) {
            guard isSequenceItem(body) else { break }
            // What follows "- " is read as if the dash were a space: a nested mapping or
            // sequence starts at its own column.
            var column = n + 1
            while column < lines[at].count, lines[at][column] == Self.space { column += 1 }
            let rest = content(lines[at], from: min(column, lines[at].count))
            if rest.isEmpty {
                index = at + 1
                items.append(try block(minIndent: n + 1) ?? .scalar("", plain: true))
                continue
            }
            if try isSequenceItem(rest) || keySplit(rest, line: at) != nil {
                lines[at][n] = Self.space
                items.append(try block(minIndent: column) ?? .scalar("", plain: true))
                continue
            }
            index = at + 1
            items.append(try inlineValue(rest, line: at, parentIndent: n))
        }
        return .sequence(items)
    }

    // MARK: values on a line

    /// Refuses what a plain scalar or key cannot start with (an anchor, an alias, a tag or a
    /// reserved indicator), in block and flow context alike.
    fileprivate static func refuseUnsupported(_ text: [UInt8], line: Int) throws {
        switch text.first {
        case UInt8(ascii: "&"): throw YAMLError(line: line, message: "anchors ('&') are not supported")
        case UInt8(ascii: "*"): throw YAMLError(line: line, message: "aliases ('*') are not supported")
        case UInt8(ascii: "!"): throw YAMLError(line: line, message: "tags ('!') are not supported")
        case UInt8(ascii: "%"), UInt8(ascii: "@"), UInt8(ascii: "`"):
            throw YAMLError(line: line, message: "a plain value cannot start with '\(Character(UnicodeScalar(text[0])))'; quote it")
        default: return
        }
    }

    /// A value that starts on line `line` (already consumed) after a key or a dash; the
    /// lines it may continue on are those indented more than `parentIndent`.
    private mutating func inlineValue(_ text: [UInt8], line: Int, parentIndent: Int) throws -> YAMLNode {
        let first = text[0]
        if first == UInt8(ascii: "|") || first == UInt8(ascii: ">") {
            return .scalar(try blockScalar(header: text, line: line, parentIndent: parentIndent), plain: false)
        }
        if first == UInt8(ascii: "[") || first == UInt8(ascii: "{") || first == UInt8(ascii: "\"") || first == UInt8(ascii: "'") {
            // Quoted scalars and flow collections may go on over the next lines.
            var bytes = text
            var lastLine = line
            while true {
                var cursor = FlowCursor(bytes: bytes, line: line + 1)
                do {
                    let node = try cursor.value(inFlow: false)
                    cursor.skipSpaces()
                    if !cursor.atEnd {
                        throw YAMLError(line: lastLine + 1, message: "unexpected text after the value")
                    }
                    return node
                } catch let error as FlowCursor.Incomplete {
                    // Not closed on this line: take the next one (folded with a space).
                    guard index < lines.count else { throw YAMLError(line: line + 1, message: error.message) }
                    lastLine = index
                    let next = lines[index]
                    index += 1
                    bytes += [Self.space] + content(next, from: indent(of: next))
                }
            }
        }
        try Self.refuseUnsupported(text, line: line + 1)
        // A plain scalar; more-indented lines after it continue it (folded: a line break is a
        // space, each blank line between two lines a line break).
        var value = text
        var from = index
        while let at = try nextContent(), indent(of: lines[at]) > parentIndent {
            let body = content(lines[at], from: indent(of: lines[at]))
            if try keySplit(body, line: at) != nil { throw YAMLError(line: at + 1, message: "unexpected indentation") }
            value += (at > from ? [UInt8](repeating: UInt8(ascii: "\n"), count: at - from) : [Self.space]) + body
            index = at + 1
            from = index
        }
        return .scalar(String(decoding: value, as: UTF8.self), plain: true)
    }

    /// A literal (`|`) or folded (`>`) block scalar whose header is `header`.
    private mutating func blockScalar(header: [UInt8], line: Int, parentIndent: Int) throws -> String {
        let literal = header[0] == UInt8(ascii: "|")
        var chomp: UInt8 = 0
        var explicitIndent: Int?
        for c in header.dropFirst() {
            if c == UInt8(ascii: "-") || c == UInt8(ascii: "+"), chomp == 0 {
                chomp = c
            } else if c >= UInt8(ascii: "1"), c <= UInt8(ascii: "9"), explicitIndent == nil {
                explicitIndent = Int(c - UInt8(ascii: "0"))
            } else {
                throw YAMLError(line: line + 1, message: "unexpected text after a block scalar's '\(literal ? "|" : ">")'")
            }
        }
        // Content lines: blank lines, or lines indented more than the parent.
        var body: [[UInt8]] = []
        var blockIndent = explicitIndent.map { max(0, parentIndent) + $0 }
        while index < lines.count {
            let raw = lines[index]
            let n = indent(of: raw)
            if n == raw.count {
                body.append([])
                index += 1
                continue
            }
            if blockIndent == nil {
                guard n > parentIndent else { break }
                blockIndent = n
            }
            guard n >= blockIndent! else { break }
            body.append(Array(raw[blockIndent!...]))
            index += 1
        }
        // Trailing blank lines belong to the chomping, not to the content.
        var trailing = 0
        while let last = body.last, last.isEmpty { body.removeLast(); trailing += 1 }
        var out: [UInt8] = []
        for (i, row) in body.enumerated() {
            if i > 0 {
                let previous = body[i - 1]
                if literal || row.isEmpty {
                    out.append(UInt8(ascii: "\n"))
                } else if previous.isEmpty {
                    // Folded: the blank line before this one already is its line break.
                } else {
                    // Folded: lines join with a space, except around more-indented lines.
                    out.append(row.first == Self.space || previous.first == Self.space ? UInt8(ascii: "\n") : Self.space)
                }
            }
            out += row
        }
        switch chomp {
        case UInt8(ascii: "-"): break
        case UInt8(ascii: "+"): if !body.isEmpty || trailing > 0 { out += [UInt8](repeating: UInt8(ascii: "\n"), count: (body.isEmpty ? 0 : 1) + trailing) }
        default: if !body.isEmpty { out.append(UInt8(ascii: "\n")) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Reads flow values (`[...]`, `{...}`, quoted and plain scalars) from one line's bytes.
private struct FlowCursor {
    let bytes: [UInt8]
    let line: Int
    var position = 0

    /// The value is not closed before the end of the bytes (the caller may append a line).
    struct Incomplete: Error { var message: String }

    init(bytes: [UInt8], line: Int) {
        self.bytes = bytes
        self.line = line
    }

    var atEnd: Bool { position >= bytes.count }
    var peek: UInt8? { atEnd ? nil : bytes[position] }

    mutating func skipSpaces() {
        while let c = peek, c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") { position += 1 }
    }

    mutating func value(inFlow: Bool) throws -> YAMLNode {
        skipSpaces()
        guard let c = peek else { throw Incomplete(message: "a value is missing") }
        switch c {
        case UInt8(ascii: "["): return try flowSequence()
        case UInt8(ascii: "{"): return try flowMapping()
        case UInt8(ascii: "\""), UInt8(ascii: "'"): return .scalar(try quoted(), plain: false)
        default:
            let text = plain()
            if text.isEmpty { throw YAMLError(line: line, message: "a value is missing") }
            try YAMLParser.refuseUnsupported(Array(text.utf8), line: line)
            return .scalar(text, plain: true)
        }
    }

    /// A plain scalar inside a flow collection: up to `,`, `]`, `}` or `: `.
    private mutating func plain() -> String {
        let start = position
        while let c = peek {
            if c == UInt8(ascii: ",") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}") { break }
            if c == UInt8(ascii: ":"), position + 1 >= bytes.count || [UInt8(ascii: " "), UInt8(ascii: ","), UInt8(ascii: "]"),
                                                                     UInt8(ascii: "}")].contains(bytes[position + 1]) { break }
            position += 1
        }
        return String(decoding: Array(bytes[start..<position]).trimmingSpaces(), as: UTF8.self)
    }

    private mutating func flowSequence() throws -> YAMLNode {
        position += 1
        var items: [YAMLNode] = []
        while true {
            skipSpaces()
            guard let c = peek else { throw Incomplete(message: "'[' is not closed") }
            if c == UInt8(ascii: "]") { position += 1; return .sequence(items) }
            items.append(try value(inFlow: true))
            skipSpaces()
            guard let next = peek else { throw Incomplete(message: "'[' is not closed") }
            if next == UInt8(ascii: ",") { position += 1; continue }
            if next == UInt8(ascii: "]") { position += 1; return .sequence(items) }
            throw YAMLError(line: line, message: "expected ',' or ']' in a flow sequence")
        }
    }

    private mutating func flowMapping() throws -> YAMLNode {
        position += 1
        var entries: [YAMLEntry] = []
        while true {
            skipSpaces()
            guard let c = peek else { throw Incomplete(message: "'{' is not closed") }
            if c == UInt8(ascii: "}") { position += 1; return .mapping(entries) }
            let key: String
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                key = try quoted()
            } else {
                key = plain()
                try YAMLParser.refuseUnsupported(Array(key.utf8), line: line)
            }
            if key.isEmpty { throw YAMLError(line: line, message: "a key is missing in a flow mapping") }
            if entries.contains(where: { $0.key == key }) { throw YAMLError(line: line, message: "the key '\(key)' is given twice") }
            skipSpaces()
            var value = YAMLNode.scalar("", plain: true)
            if peek == UInt8(ascii: ":") {
                position += 1
                skipSpaces()
                if let next = peek, next != UInt8(ascii: ","), next != UInt8(ascii: "}") { value = try self.value(inFlow: true) }
            }
            entries.append(YAMLEntry(key: key, value: value))
            skipSpaces()
            guard let next = peek else { throw Incomplete(message: "'{' is not closed") }
            if next == UInt8(ascii: ",") { position += 1; continue }
            if next == UInt8(ascii: "}") { position += 1; return .mapping(entries) }
            throw YAMLError(line: line, message: "expected ',' or '}' in a flow mapping")
        }
    }

    /// A single- or double-quoted scalar, escapes resolved.
    mutating func quoted() throws -> String {
        let quote = bytes[position]
        position += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw Incomplete(message: "a quoted value is not closed") }
            position += 1
            if c == quote {
                if quote == UInt8(ascii: "'"), peek == quote { out.append(quote); position += 1; continue }
                return String(decoding: out, as: UTF8.self)
            }
            if quote == UInt8(ascii: "\""), c == UInt8(ascii: "\\") {
                guard let e = peek else { throw Incomplete(message: "a quoted value is not closed") }
                position += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"), UInt8(ascii: "\t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "0"): out.append(0x00)
                case UInt8(ascii: "a"): out.append(0x07)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "e"): out.append(0x1B)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "v"): out.append(0x0B)
                case UInt8(ascii: " "), UInt8(ascii: "\""), UInt8(ascii: "/"), UInt8(ascii: "\\"): out.append(e)
                case UInt8(ascii: "x"): out += try hexScalar(digits: 2)
                case UInt8(ascii: "u"): out += try hexScalar(digits: 4)
                case UInt8(ascii: "U"): out += try hexScalar(digits: 8)
                default:
                    throw YAMLError(line: line, message: "unknown escape '\\\(Character(UnicodeScalar(e)))' in a double-quoted value")
                }
                continue
            }
            out.append(c)
        }
    }

    private mutating func hexScalar(digits: Int) throws -> [UInt8] {
        guard position + digits <= bytes.count,
              let value = UInt32(String(decoding: bytes[position..<(position + digits)], as: UTF8.self), radix: 16),
              let scalar = UnicodeScalar(value) else {
            throw YAMLError(line: line, message: "a \\x, \\u or \\U escape needs \(digits) hexadecimal digits of a Unicode scalar")
        }
        position += digits
        return Array(String(Character(scalar)).utf8)
    }
}

private extension Array where Element == UInt8 {
    func trimmingSpaces() -> [UInt8] {
        var start = startIndex, end = endIndex
        while start < end, self[start] == UInt8(ascii: " ") || self[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, self[end - 1] == UInt8(ascii: " ") || self[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        return Array(self[start..<end])
    }
}
