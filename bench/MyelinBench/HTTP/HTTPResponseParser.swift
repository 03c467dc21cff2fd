/// A parsed HTTP/1.1 response: status, the few headers the harness reads, and the body bytes.
struct HTTPResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// The server asked to close the connection after this response.
    var closesConnection: Bool

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// Why a response could not be parsed. Counted as "malformed response", never a crash.
struct HTTPParseError: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Incremental HTTP/1.1 response parser for one keep-alive connection, owned by the loop thread
/// that reads the socket. Handles Content-Length, chunked transfer encoding, read-until-close
/// bodies and interim 1xx responses; anything else is an `HTTPParseError`.
struct HTTPResponseParser {
    static let maxHeaderBytes = 64 * 1024
    static let maxBodyBytes = 512 * 1024 * 1024

    private enum State {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataCRLF
        case trailers
        case untilClose
    }

    private var buffer: [UInt8] = []
    private var start = 0  // consumed prefix of `buffer`
    private var state = State.head
    private var response = HTTPResponse(status: 0, headers: [], body: [], closesConnection: false)
    /// True once any byte of the current response arrived (a stale keep-alive connection that
    /// closes before this is safe to retry on a new connection).
    private(set) var receivedAny = false
    /// The request was HEAD (no body whatever the headers say).
    var expectsNoBody = false

    init() {}

    /// Resets for the next response on the same connection, keeping unread (pipelined) bytes.
    mutating func reset() {
        state = .head
        response = HTTPResponse(status: 0, headers: [], body: [], closesConnection: false)
        receivedAny = start < buffer.count
        expectsNoBody = false
    }

    /// Appends bytes read from the socket and returns a response once one is complete.
    mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> HTTPResponse? {
        if !bytes.isEmpty { receivedAny = true }
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true); start = 0
        }
        buffer.append(contentsOf: bytes)
        return try advance()
    }

    /// The peer closed the connection: completes a read-until-close body, otherwise fails.
    mutating func finishOnClose() throws(HTTPParseError) -> HTTPResponse {
        if case .untilClose = state {
            response.body.append(contentsOf: buffer[start...])
            start = buffer.count
            response.closesConnection = true
            return response
        }
        throw HTTPParseError(receivedAny ? "connection closed mid-response" : "connection closed before response")
    }

    private mutating func compact() {
        if start > 64 * 1024 && start * 2 > buffer.count {
            buffer.removeFirst(start); start = 0
        }
    }

    /// Index of the first "\r\n" at or after `from`, if any.
    private func findCRLF(from: Int) -> Int? {
        var i = from
        let n = buffer.count
        while i + 1 < n {
            if buffer[i] == 13 && buffer[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    private mutating func advance() throws(HTTPParseError) -> HTTPResponse? {
        while true {
            switch state {
            case .head:
                guard let end = findHeadEnd() else {
                    if buffer.count - start > Self.maxHeaderBytes { throw HTTPParseError("response head too large") }
                    return nil
                }
                try parseHead(buffer[start..<end])
                start = end + 4
                if (100..<200).contains(response.status) {
                    // Interim response (100 Continue): skip it, the real one follows.
                    response = HTTPResponse(status: 0, headers: [], body: [], closesConnection: false)
                    continue
                }
                if expectsNoBody || response.status == 204 || response.status == 304 {
                    return finish()
                }
                if let te = response.header("transfer-encoding") {
                    guard te.lowercased().split(separator: ",").last?.trimmingSpaces() == "chunked" else {
                        throw HTTPParseError("unsupported transfer-encoding \(te)")
                    }
                    state = .chunkSize
                } else if let cl = response.header("content-length") {
                    guard let n = Int(cl.trimmingSpaces()), n >= 0, n <= Self.maxBodyBytes else {
                        throw HTTPParseError("bad content-length \(cl)")
                    }
                    state = .fixedBody(remaining: n)
                } else {
                    state = .untilClose
                }
            case .fixedBody(let remaining):
                let take = min(remaining, buffer.count - start)
                response.body.append(contentsOf: buffer[start..<(start + take)])
                start += take
                if take == remaining { return finish() }
                state = .fixedBody(remaining: remaining - take)
                compact()
                return nil
            case .chunkSize:
                guard let eol = findCRLF(from: start) else {
                    if buffer.count - start > 1024 { throw HTTPParseError("chunk size line too long") }
                    return nil
                }
                var size = 0
                var digits = 0
                for b in buffer[start..<eol] {
                    guard let v = hexValue(b) else {
                        if b == UInt8(ascii: ";") || b == UInt8(ascii: " ") { break }  // chunk extension
                        throw HTTPParseError("bad chunk size")
                    }
                    size = size * 16 + v
                    digits += 1
                    if digits > 8 { throw HTTPParseError("chunk size too large") }
                }
                if digits == 0 { throw HTTPParseError("empty chunk size") }
                start = eol + 2
                if size == 0 {
                    state = .trailers
                } else {
                    if response.body.count + size > Self.maxBodyBytes { throw HTTPParseError("body too large") }
                    state = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                let take = min(remaining, buffer.count - start)
                response.body.append(contentsOf: buffer[start..<(start + take)])
                start += take
                if take < remaining {
                    state = .chunkData(remaining: remaining - take)
                    compact()
                    return nil
                }
                state = .chunkDataCRLF
            case .chunkDataCRLF:
                if buffer.count - start < 2 { return nil }
                guard buffer[start] == 13 && buffer[start + 1] == 10 else { throw HTTPParseError("missing CRLF after chunk") }
                start += 2
                state = .chunkSize
            case .trailers:
                guard let eol = findCRLF(from: start) else {
                    if buffer.count - start > Self.maxHeaderBytes { throw HTTPParseError("trailers too large") }
                    return nil
                }
                let empty = eol == start
                start = eol + 2
                if empty { return finish() }
            case .untilClose:
                response.body.append(contentsOf: buffer[start...])
                start = buffer.count
                if response.body.count > Self.maxBodyBytes { throw HTTPParseError("body too large") }
                return nil
            }
        }
    }

    private mutating func finish() -> HTTPResponse {
        let done = response
        compact()
        return done
    }

    private func findHeadEnd() -> Int? {
        var i = start
        let n = buffer.count
        while i + 3 < n {
            if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    private mutating func parseHead(_ head: ArraySlice<UInt8>) throws(HTTPParseError) {
        let text = String(decoding: head, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { throw HTTPParseError("empty response head") }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3,
              let status = Int(parts[1]), (100..<600).contains(status) else {
            throw HTTPParseError("bad status line \(statusLine.prefix(60).debugDescription)")
        }
        response.status = status
        response.closesConnection = parts[0] == "HTTP/1.0"
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw HTTPParseError("bad header line \(line.prefix(60).debugDescription)")
            }
            let name = String(line[..<colon])
            let value = String(line[line.index(after: colon)...]).trimmingSpaces()
            response.headers.append((name, value))
            if name.lowercased() == "connection" {
                let v = value.lowercased()
                if v.contains("close") { response.closesConnection = true }
                if v.contains("keep-alive") { response.closesConnection = false }
            }
        }
        let contentLengths = response.headers.filter { $0.name.lowercased() == "content-length" }
        if contentLengths.count > 1 && Set(contentLengths.map(\.value)).count > 1 {
            throw HTTPParseError("conflicting content-length headers")
        }
    }
}

private func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(b - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(b - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(b - UInt8(ascii: "A") + 10)
    default: nil
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
