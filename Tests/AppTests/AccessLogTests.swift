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
}
