import ArgumentParser

/// `selftest`: the harness's HTTP response parser and sync scanner against crafted bytes.
/// Exits non-zero if any case fails, so a broken harness is caught before it measures.
struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check the harness's HTTP response parser and scanners against crafted bytes.")

    func run() throws {
        var passed = 0
        var failed = 0
        func check(_ name: String, _ ok: Bool) {
            if ok { passed += 1 } else { failed += 1; printOut("FAIL \(name)") }
        }
        /// Feeds `text` in pieces of `step` bytes; returns the responses or the parse error.
        func parse(_ text: String, step: Int = 1_000_000) -> ([HTTPResponse], HTTPParseError?) {
            var p = HTTPResponseParser()
            var out: [HTTPResponse] = []
            let bytes = Array(text.utf8)
            var i = 0
            do {
                while i < bytes.count {
                    let end = min(i + step, bytes.count)
                    var r = try bytes[i..<end].withUnsafeBytes { try p.feed($0) }
                    while let resp = r {
                        out.append(resp)
                        p.reset()
                        r = try p.feed(UnsafeRawBufferPointer(start: nil, count: 0))
                    }
                    i = end
                }
            } catch { return (out, error as? HTTPParseError ?? HTTPParseError("\(error)")) }
            return (out, nil)
        }

        for step in [1, 3, 1_000_000] {
            let (r1, e1) = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", step: step)
            check("content-length step \(step)", e1 == nil && r1.count == 1 && r1[0].status == 200 && r1[0].body == Array("hello".utf8))
            let (r2, e2) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n", step: step)
            check("chunked step \(step)", e2 == nil && r2.count == 1 && r2[0].body == Array("hello world".utf8))
            let (r3, e3) = parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 204 No Content\r\n\r\n", step: step)
            check("interim + pipelined step \(step)", e3 == nil && r3.map(\.status) == [404, 204])
        }
        let (r4, _) = parse("HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        check("connection close", r4.first?.closesConnection == true)
        check("garbage status line", parse("HTTP/1.1 2000 OK\r\n\r\n").1 != nil)
        check("not http", parse("SSH-2.0-OpenSSH\r\n\r\n").1 != nil)
        check("bad content-length", parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").1 != nil)
        check("conflicting content-length", parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").1 != nil)
        check("bad chunk size", parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").1 != nil)
        check("missing chunk CRLF", parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n").1 != nil)
        check("header without colon", parse("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n").1 != nil)
        check("huge head", parse("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 70_000)).1 != nil)
        // Read-until-close body.
        var p = HTTPResponseParser()
        let partial = try Array("HTTP/1.1 200 OK\r\n\r\nabc".utf8).withUnsafeBytes { try p.feed($0) }
        check("until-close pending", partial == nil)
        check("until-close finish", (try? p.finishOnClose())?.body == Array("abc".utf8))
        var q = HTTPResponseParser()
        _ = try? Array("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc".utf8).withUnsafeBytes { try q.feed($0) }
        check("truncated body is an error", (try? q.finishOnClose()) == nil)

        check("next_batch", scanNextBatch(Array(#"{"rooms":{},"next_batch" : "s72_1"}"#.utf8)) == "s72_1")
        check("next_batch missing", scanNextBatch(Array(#"{"rooms":{}}"#.utf8)) == nil)
        // The delivery scanner: nested values skipped, escapes, spacing, key order, limited.
        let sync = #"""
            {"next_batch":"s1","presence":{"events":[{"a":[1,{"b":"}"}]}]},"rooms":{"invite":{"!x":{"timeline":{"events":[{"sender":"@no","content":{"bench_run":"r","bench_id":9,"bench_t0":1}}]}}},
             "join": {"!a:b": {"state":{"events":[]}, "timeline": {"events": [
               {"content": {"body": "say \"hi\" \\ {[", "bench_run": "r", "bench_id": 7, "bench_t0": 123456789012}, "sender": "@al\u0069ce:x", "unsigned": {"age": 1.5e3}},
               {"sender": "@bob:x", "type": "m.room.member", "content": {"membership": "join"}}
             ], "limited": true, "prev_batch": "t1"}},
             "!c:d": {"timeline": {"limited": false, "events": [{"sender":"@c:x","content":{"bench_t0":5,"bench_id":-2,"bench_run":"q"}}]}}}}}
            """#
        let scanned = DeliveryScanner.scan(Array(sync.utf8))
        check("delivery scan", scanned == DeliveryScanner.Result(deliveries: [
            .init(sender: "@alice:x", run: "r", id: 7, t0: 123_456_789_012), .init(sender: "@c:x", run: "q", id: -2, t0: 5),
        ], limitedTimelines: 1))
        check("delivery scan malformed", DeliveryScanner.scan(Array(#"{"rooms":{"join":{"!a":{"timeline":{"events":[{"sender":"#.utf8)) == nil)
        check("delivery scan fraction falls back", DeliveryScanner.scan(Array(#"{"rooms":{"join":{"!a":{"timeline":{"events":[{"content":{"bench_id":1.5}}]}}}}}"#.utf8)) == nil)
        check("percent-encode", percentEncode("!a:b c/é") == "%21a%3Ab%20c%2F%C3%A9")
        check("url", (try? parseServerURL("http://127.0.0.1:8008"))?.port == 8008)
        check("hmac-sha1", hmacSHA1(key: Array("key".utf8), message: Array("The quick brown fox jumps over the lazy dog".utf8))
            .map { String($0, radix: 16).leftPad(2).replacingOccurrences(of: " ", with: "0") }.joined()
            == "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9")

        printOut("selftest: \(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode.failure }
    }
}
