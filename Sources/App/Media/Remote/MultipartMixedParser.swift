import Transport

/// A push parser of a `multipart/mixed` body (RFC 2046 5.1), the shape of the federation
/// media download (server-server API "Content Repository": a JSON part, then the file or a
/// `Location`). Bytes are fed as they arrive, in chunks of any size; each `feed` returns the
/// events that chunk completed. Memory stays bounded whatever the body: a part's head is
/// limited to `maxHeadBytes`, the preamble to `maxPreambleBytes`, and body bytes are handed
/// out as soon as they cannot be the start of a delimiter (at most the delimiter's length is
/// held back). Owned by one download task (`RemoteMediaFetcher`); not thread-safe.
struct MultipartMixedParser {
    enum Event {
        /// A part starts, with its header fields.
        case partHead(HTTPHeaders)
        /// Bytes of the current part's body, in order.
        case body([UInt8])
        /// The current part's body is complete.
        case partEnd
        /// The close delimiter: nothing more will come (the epilogue is ignored).
        case end
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case noBoundary
        case preambleTooLong
        case headTooLarge
        case malformedHead
        case malformedDelimiter
        case truncated

        var description: String {
            switch self {
            case .noBoundary: return "multipart/mixed without a usable boundary"
            case .preambleTooLong: return "no multipart delimiter within the preamble limit"
            case .headTooLarge: return "a part's header fields are too large"
            case .malformedHead: return "a part's header fields do not parse"
            case .malformedDelimiter: return "a multipart delimiter is not followed by CRLF or --"
            case .truncated: return "the multipart body ends before its close delimiter"
            }
        }
    }

    private enum State { case preamble, afterDelimiter, head, body, done }

    /// CRLF "--" boundary: every delimiter but (possibly) the first, which may start the body.
    private let delimiter: [UInt8]
    private let maxHeadBytes: Int
    private let maxPreambleBytes: Int
    private var state = State.preamble
    /// Bytes received and not yet resolved (a possible delimiter prefix, an incomplete head).
    private var pending: [UInt8] = []
    private var preambleSeen = 0
    /// Spaces and tabs after a delimiter (RFC 2046 "transport-padding"), bounded.
    private var paddingSeen = 0

    /// `contentType` is the response's `Content-Type`; its `boundary` parameter (1-70
    /// characters, RFC 2046 5.1.1) is required.
    init(contentType: String, maxHeadBytes: Int = 16 * 1024, maxPreambleBytes: Int = 16 * 1024) throws {
        guard let boundary = MultipartMixedParser.boundary(of: contentType) else { throw Failure.noBoundary }
        self.init(boundary: boundary, maxHeadBytes: maxHeadBytes, maxPreambleBytes: maxPreambleBytes)
    }

    init(boundary: String, maxHeadBytes: Int = 16 * 1024, maxPreambleBytes: Int = 16 * 1024) {
        delimiter = Array("\r\n--\(boundary)".utf8)
        self.maxHeadBytes = maxHeadBytes
        self.maxPreambleBytes = maxPreambleBytes
        // The first delimiter may open the body without the CRLF before it.
        pending = [13, 10]
    }

    var isDone: Bool { state == .done }

    /// The `boundary` parameter of a `multipart/...` media type, unquoted; nil when missing,
    /// empty, longer than 70 characters or made of characters RFC 2046 does not allow.
    static func boundary(of contentType: String) -> String? {
        let parts = contentType.split(separator: ";", omittingEmptySubsequences: false)
        guard let type = parts.first, type.trimmedOWS.lowercased().hasPrefix("multipart/") else { return nil }
        for parameter in parts.dropFirst() {
            guard let equals = parameter.firstIndex(of: "=") else { continue }
            let name = parameter[..<equals].trimmedOWS.lowercased()
            guard name == "boundary" else { continue }
            var value = parameter[parameter.index(after: equals)...].trimmedOWS
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            let allowed = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ".utf8)
            guard (1...70).contains(value.utf8.count), value.utf8.allSatisfy({ allowed.contains($0) }),
                  !value.hasSuffix(" ") else { return nil }
            return value
        }
        return nil
    }

    /// Takes the next bytes of the body; returns the events they complete.
    mutating func feed(_ chunk: [UInt8]) throws -> [Event] {
        guard state != .done else { return [] }
        pending.append(contentsOf: chunk)
        var events: [Event] = []
        var start = 0
        defer { pending.removeFirst(min(start, pending.count)) }
        while start < pending.count {
            let progressed: Bool
            switch state {
            case .done:
                start = pending.count
                return events
            case .preamble: progressed = try preamble(&start)
            case .afterDelimiter: progressed = try afterDelimiter(&start, &events)
            case .head: progressed = try head(&start, &events)
            case .body: progressed = body(&start, &events)
            }
            if !progressed { return events }
        }
        if state == .done { start = pending.count }
        return events
    }

    /// Skips to the first delimiter; false when more bytes are needed.
    private mutating func preamble(_ start: inout Int) throws -> Bool {
        if let found = find(delimiter, in: pending, from: start) {
            preambleSeen += found - start
            start = found + delimiter.count
            state = .afterDelimiter
            if preambleSeen > maxPreambleBytes { throw Failure.preambleTooLong }
            return true
        }
        let keep = min(pending.count - start, delimiter.count - 1)
        preambleSeen += pending.count - start - keep
        start = pending.count - keep
        if preambleSeen > maxPreambleBytes { throw Failure.preambleTooLong }
        return false
    }

    /// After a delimiter: "--" closes; otherwise optional padding, then CRLF and a part's head.
    private mutating func afterDelimiter(_ start: inout Int, _ events: inout [Event]) throws -> Bool {
        let byte = pending[start]
        if byte == 0x2D {
            guard pending.count - start >= 2 else { return false }
            guard pending[start + 1] == 0x2D else { throw Failure.malformedDelimiter }
            state = .done
            events.append(.end)
            start += 2
        } else if byte == 0x20 || byte == 0x09 {
            paddingSeen += 1
            if paddingSeen > 64 { throw Failure.malformedDelimiter }
            start += 1
        } else if byte == 13 {
            guard pending.count - start >= 2 else { return false }
            guard pending[start + 1] == 10 else { throw Failure.malformedDelimiter }
            start += 2
            paddingSeen = 0
            state = .head
        } else {
            throw Failure.malformedDelimiter
        }
        return true
    }

    /// A part's header fields, up to the blank line (bounded by `maxHeadBytes`).
    private mutating func head(_ start: inout Int, _ events: inout [Event]) throws -> Bool {
        // A part with no header fields starts with the blank line at once.
        if pending.count - start >= 2, pending[start] == 13, pending[start + 1] == 10 {
            start += 2
            events.append(.partHead(HTTPHeaders()))
            state = .body
            return true
        }
        guard let end = find([13, 10, 13, 10], in: pending, from: start) else {
            if pending.count - start > maxHeadBytes { throw Failure.headTooLarge }
            return false
        }
        guard end - start <= maxHeadBytes else { throw Failure.headTooLarge }
        events.append(.partHead(try MultipartMixedParser.headers(pending[start..<end])))
        start = end + 4
        state = .body
        return true
    }

    /// Body bytes up to the next delimiter; what could start a delimiter cut by the chunk's
    /// end is kept back.
    private mutating func body(_ start: inout Int, _ events: inout [Event]) -> Bool {
        if let found = find(delimiter, in: pending, from: start) {
            if found > start { events.append(.body(Array(pending[start..<found]))) }
            events.append(.partEnd)
            start = found + delimiter.count
            state = .afterDelimiter
            return true
        }
        let keep = partialDelimiterLength(in: pending, from: start)
        let end = pending.count - keep
        if end > start { events.append(.body(Array(pending[start..<end]))) }
        start = end
        return false
    }

    /// Says the body ended; throws `truncated` unless the close delimiter was seen.
    func finish() throws {
        guard state == .done else { throw Failure.truncated }
    }

    /// The length of the longest suffix of `bytes[from...]` that is a proper prefix of the
    /// delimiter.
    private func partialDelimiterLength(in bytes: [UInt8], from: Int) -> Int {
        let available = bytes.count - from
        var length = min(available, delimiter.count - 1)
        while length > 0 {
            let offset = bytes.count - length
            var matches = true
            for i in 0..<length where bytes[offset + i] != delimiter[i] { matches = false; break }
            if matches { return length }
            length -= 1
        }
        return 0
    }

    /// The first index of `needle` in `haystack` at or after `from`.
    private func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, haystack.count - from >= needle.count else { return nil }
        var i = from
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    /// Header fields of a part's head (RFC 5322 syntax: `Name: value` lines, continuation
    /// lines starting with a space or tab folded into the previous value).
    static func headers(_ bytes: ArraySlice<UInt8>) throws -> HTTPHeaders {
        var fields: [(name: String, value: String)] = []
        var lineStart = bytes.startIndex
        while lineStart < bytes.endIndex {
            var lineEnd = lineStart
            while lineEnd < bytes.endIndex && !(bytes[lineEnd] == 13 && lineEnd + 1 < bytes.endIndex && bytes[lineEnd + 1] == 10) {
                lineEnd += 1
            }
            let line = bytes[lineStart..<lineEnd]
            lineStart = min(lineEnd + 2, bytes.endIndex)
            guard !line.contains(0), !line.contains(10), !line.contains(13) else { throw Failure.malformedHead }
            if let first = line.first, first == 0x20 || first == 0x09 {
                guard !fields.isEmpty else { throw Failure.malformedHead }
                fields[fields.count - 1].value += " " + String(decoding: line, as: UTF8.self).trimmedOWS
                continue
            }
            guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex else { throw Failure.malformedHead }
            let name = String(decoding: line[..<colon], as: UTF8.self)
            guard name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw Failure.malformedHead }
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmedOWS
            fields.append((name, value))
        }
        guard fields.count <= 64 else { throw Failure.headTooLarge }
        return HTTPHeaders(fields)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP "OWS"; no Foundation here).
    fileprivate var trimmedOWS: String {
        var scalars = Substring(self).unicodeScalars[...]
        while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
