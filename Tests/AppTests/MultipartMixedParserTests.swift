import Testing
import Transport
@testable import App

/// The streaming `multipart/mixed` parser of remote media downloads: every split of the
/// input gives the same parts, and hostile bodies fail with the right error instead of
/// growing memory or trapping.
@Suite struct MultipartMixedParserTests {
    struct Part: Equatable {
        var headers: [String]
        var body: [UInt8]
    }

    /// Feeds `chunks` and returns the parts, with `finish()` checked.
    static func parse(_ chunks: [[UInt8]], contentType: String, maxHead: Int = 16 * 1024) throws -> [Part] {
        var parser = try MultipartMixedParser(contentType: contentType, maxHeadBytes: maxHead)
        var parts: [Part] = []
        var ended = false
        for chunk in chunks {
            for event in try parser.feed(chunk) {
                switch event {
                case .partHead(let headers):
                    #expect(!ended)
                    parts.append(Part(headers: headers.map { "\($0.name.lowercased()): \($0.value)" }, body: []))
                case .body(let bytes):
                    #expect(!bytes.isEmpty)
                    parts[parts.count - 1].body += bytes
                case .partEnd: break
                case .end: ended = true
                }
            }
        }
        try parser.finish()
        return parts
    }

    static let boundary = "6b1d2e0f9a"
    static let contentType = "multipart/mixed; boundary=\(boundary)"
    /// A file whose bytes hold near-misses of the delimiter, CRLFs and the boundary itself
    /// without its leading dashes.
    static let file: [UInt8] = Array("\r\n-\r\n--6b1d2e0f9\r\n--6b1d2e0f9b\r\r\n6b1d2e0f9a\n--6b1d2e0f9a".utf8)
        + (0..<300).map { UInt8($0 % 256) } + Array("\r\n--".utf8)

    static var federationBody: [UInt8] {
        Array("--\(boundary)\r\nContent-Type: application/json\r\n\r\n{}\r\n--\(boundary)\r\n".utf8)
            + Array("Content-Type: image/png\r\nContent-Disposition: inline; filename=\"a b.png\"\r\n\r\n".utf8)
            + file + Array("\r\n--\(boundary)--\r\nepilogue ignored".utf8)
    }

    static let expected = [
        Part(headers: ["content-type: application/json"], body: Array("{}".utf8)),
        Part(headers: ["content-type: image/png", "content-disposition: inline; filename=\"a b.png\""], body: file),
    ]

    @Test func wholeBodyParses() throws {
        #expect(try Self.parse([Self.federationBody], contentType: Self.contentType) == Self.expected)
    }

    @Test func everySplitPointGivesTheSameParts() throws {
        let body = Self.federationBody
        for cut in 0...body.count {
            let parts = try Self.parse([Array(body[..<cut]), Array(body[cut...])], contentType: Self.contentType)
            #expect(parts == Self.expected, "split at \(cut)")
        }
    }

    @Test func everyTwoSplitPointsAndSingleBytesGiveTheSameParts() throws {
        let body = Self.federationBody
        #expect(try Self.parse(body.map { [$0] }, contentType: Self.contentType) == Self.expected)
        for a in stride(from: 0, through: body.count, by: 7) {
            for b in a...min(body.count, a + 90) {
                let parts = try Self.parse([Array(body[..<a]), Array(body[a..<b]), Array(body[b...])], contentType: Self.contentType)
                #expect(parts == Self.expected, "split at \(a), \(b)")
            }
        }
    }

    @Test func bodyMayStartWithPreambleAndQuotedBoundary() throws {
        let body = Array("preamble text\r\n".utf8) + Self.federationBody
        let parts = try Self.parse([body], contentType: "Multipart/Mixed; charset=x; boundary=\"\(Self.boundary)\"")
        #expect(parts == Self.expected)
    }

    @Test func missingOrInvalidBoundaryIsRefused() {
        for type in ["multipart/mixed", "multipart/mixed; boundary=", "multipart/mixed; boundary=\"\"",
                     "application/json; boundary=abc", "multipart/mixed; boundary=" + String(repeating: "a", count: 71),
                     "multipart/mixed; boundary=a\u{7f}b"] {
            #expect(throws: MultipartMixedParser.Failure.noBoundary, "\(type)") {
                _ = try MultipartMixedParser(contentType: type)
            }
        }
    }

    @Test func oversizedPartHeadersAreRefusedWithoutTheBlankLine() throws {
        var parser = try MultipartMixedParser(contentType: Self.contentType, maxHeadBytes: 1024)
        _ = try parser.feed(Array("--\(Self.boundary)\r\n".utf8))
        let line = Array("X-Filler: \(String(repeating: "y", count: 100))\r\n".utf8)
        #expect(throws: MultipartMixedParser.Failure.headTooLarge) {
            for _ in 0..<20 { _ = try parser.feed(line) }
        }
        // Complete but over the limit in one chunk.
        let big = Array("--\(Self.boundary)\r\n".utf8) + Array(repeating: line, count: 20).flatMap { $0 } + [13, 10]
        #expect(throws: MultipartMixedParser.Failure.headTooLarge) {
            _ = try Self.parse([big], contentType: Self.contentType, maxHead: 1024)
        }
    }

    @Test func tooManyHeaderFieldsOrGarbageHeadersAreRefused() {
        let many = Array("--\(Self.boundary)\r\n".utf8) + Array(String(repeating: "A: b\r\n", count: 65).utf8)
            + Array("\r\nx\r\n--\(Self.boundary)--".utf8)
        #expect(throws: MultipartMixedParser.Failure.headTooLarge) { _ = try Self.parse([many], contentType: Self.contentType) }
        let garbage = Array("--\(Self.boundary)\r\nno colon here\r\n\r\nx\r\n--\(Self.boundary)--".utf8)
        #expect(throws: MultipartMixedParser.Failure.malformedHead) { _ = try Self.parse([garbage], contentType: Self.contentType) }
    }

    @Test func truncatedBodiesFailAtFinish() {
        let body = Self.federationBody
        let close = body.count - "--\r\nepilogue ignored".utf8.count
        for cut in [0, 5, 20, 60, 120, body.count / 2, close - 1] {
            #expect(throws: MultipartMixedParser.Failure.truncated, "cut at \(cut)") {
                _ = try Self.parse([Array(body[..<cut])], contentType: Self.contentType)
            }
        }
    }

    @Test func endlessPreambleIsRefused() throws {
        var parser = try MultipartMixedParser(contentType: Self.contentType)
        let junk = [UInt8](repeating: 0x41, count: 4096)
        #expect(throws: MultipartMixedParser.Failure.preambleTooLong) {
            for _ in 0..<10 { _ = try parser.feed(junk) }
        }
    }

    @Test func garbageAfterDelimiterIsRefused() {
        let body = Array("--\(Self.boundary)xyz\r\n\r\n\r\n--\(Self.boundary)--".utf8)
        #expect(throws: MultipartMixedParser.Failure.malformedDelimiter) { _ = try Self.parse([body], contentType: Self.contentType) }
    }

    @Test func locationPartHasNoBodyAndPaddingIsAllowed() throws {
        let body = Array("--\(Self.boundary)  \r\nContent-Type: application/json\r\n\r\n{}\r\n--\(Self.boundary)\r\n".utf8)
            + Array("Location: https://cdn.example.org/media/abc\r\n\r\n\r\n--\(Self.boundary)--".utf8)
        let parts = try Self.parse([body], contentType: Self.contentType)
        #expect(parts.count == 2)
        #expect(parts[1].headers == ["location: https://cdn.example.org/media/abc"])
        #expect(parts[1].body.isEmpty)
    }

    @Test func partWithoutHeaders() throws {
        let body = Array("--\(Self.boundary)\r\n\r\nbare\r\n--\(Self.boundary)--".utf8)
        #expect(try Self.parse([body], contentType: Self.contentType) == [Part(headers: [], body: Array("bare".utf8))])
    }

    @Test func servedFramingParsesBack() async throws {
        let framing = MultipartMediaBody(partHeaders: [("Content-Type", "text/plain"), ("Content-Disposition", "attachment; filename=x.txt"),
                                                       ("X-Evil", "a\r\nInjected: yes")])
        let file = (0..<1000).map { UInt8($0 % 251) }
        let parts = try Self.parse([framing.head, file, framing.tail], contentType: framing.contentType)
        #expect(parts == [Part(headers: ["content-type: application/json"], body: Array("{}".utf8)),
                          Part(headers: ["content-type: text/plain", "content-disposition: attachment; filename=x.txt"], body: file)])
        #expect(MultipartMediaBody.randomBoundary() != MultipartMediaBody.randomBoundary())
    }
}
