import Glibc
import Testing
@testable import App

@Suite("Access log")
struct AccessLogTests {
    @Test func linesAreFormattedRedactedAndWrittenInBatches() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let log = AccessLog(fd: fds[1])
        log.record(address: "10.0.0.1", requestID: 7, method: .get, target: "/_matrix/client/v3/sync?access_token=secret&since=s1",
                   status: 200, micros: 85)
        log.record(address: "10.0.0.2", requestID: 8, method: .other("PROPFIND"), target: "/x", status: 405, micros: 0)
        log.flush()
        close(fds[1])
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines[0].hasSuffix(" info myelin.access: 10.0.0.1 #7 GET /_matrix/client/v3/sync?access_token=<redacted>&since=s1 200 85µs"),
                "\(lines[0])")
        #expect(!lines[0].contains("secret"))
        #expect(lines[1].hasSuffix("myelin.access: 10.0.0.2 #8 PROPFIND /x 405 0µs"), "\(lines[1])")
        // 2026-12-06T04:40:12+0000
        #expect(lines[0].count > 25 && lines[0].dropFirst(10).first == "T")
    }

    /// The target is scanned as one buffer: tokens anywhere (first, last, repeated, at the
    /// very end) are redacted; near misses and long targets without one are copied unchanged.
    @Test func targetsAreRedactedWhereverTheTokenIs() {
        func redacted(_ target: String) -> String {
            var out: [UInt8] = [0x3E]
            MyelinApp.appendRedacted(target, to: &out)
            return String(decoding: out.dropFirst(), as: UTF8.self)
        }
        let filter = "/_matrix/client/v3/sync?filter=" + String(repeating: "%7B%22room%22%3A", count: 40) + "&timeout=30000"
        #expect(redacted(filter) == filter)
        #expect(redacted("/x?access_token") == "/x?access_token")
        #expect(redacted("/x?access_tokens=1") == "/x?access_tokens=1")
        #expect(redacted("access_token=") == "access_token=<redacted>")
        #expect(redacted("/x?access_token=abc") == "/x?access_token=<redacted>")
        #expect(redacted(filter + "&access_token=abc") == filter + "&access_token=<redacted>")
        #expect(redacted("/x?access_token=a&b=1&access_token=c") == "/x?access_token=<redacted>&b=1&access_token=<redacted>")
        #expect(redacted("/x?aaccess_token=abc&é=1") == "/x?aaccess_token=<redacted>&é=1")
        #expect(redacted("") == "")
        #expect(!Array("access_toke".utf8).withUnsafeBufferPointer { MyelinApp.containsAccessToken($0) })
        #expect(Array("x access_token=".utf8).withUnsafeBufferPointer { MyelinApp.containsAccessToken($0) })
        #expect(Array("access_tokeaccess_token=".utf8).withUnsafeBufferPointer { MyelinApp.containsAccessToken($0) })
        #expect(!Array("aaaaaaaaaaaaaaaaaaaaaaaa".utf8).withUnsafeBufferPointer { MyelinApp.containsAccessToken($0) })
    }
}
