import ArgumentParser
import Foundation

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

        checkReports(check)

        printOut("selftest: \(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode.failure }
    }
}

extension SelfTest {
    /// The Prometheus parser, the scraped interval figures, the Zipf law, and the charts and
    /// pages of `--report` and `report`: well-formed SVG, coordinates in the picture, no
    /// NaN or infinity, empty series handled.
    func checkReports(_ check: (String, Bool) -> Void) {
        let page = """
            # HELP myelin_actors_resident Actors resident now, per pool.
            # TYPE myelin_actors_resident gauge
            myelin_actors_resident{kind="rooms"} 12
            myelin_actors_resident{kind="sessions"} 3
            myelin_actor_activations_total{kind="rooms"} 100
            myelin_actor_evictions_total{kind="rooms"} 40
            myelin_sync_long_polls 7
            weird_label{a="x\\"y,z",b="2"} 1.5e3 1700000000
            not a sample
            db_commit_seconds_bucket{le="0.001"} 10
            db_commit_seconds_bucket{le="0.01"} 10
            db_commit_seconds_bucket{le="0.1"} 10
            db_commit_seconds_bucket{le="+Inf"} 10
            """
        let p1 = PrometheusText(parsing: page)
        check("prometheus gauge", p1.value("myelin_actors_resident", ["kind": "rooms"]) == 12)
        check("prometheus sum over labels", p1.value("myelin_actors_resident") == 15)
        check("prometheus escaped label", p1.samples.first { $0.name == "weird_label" }?.labels["a"] == "x\"y,z")
        check("prometheus value with timestamp", p1.value("weird_label") == 1500)
        check("prometheus malformed line skipped", p1.samples.count == 10)
        check("prometheus +Inf bucket", p1.secondsHistograms()["db_commit_seconds"]?.bounds.last == .infinity)
        let later = PrometheusText(parsing: page
            .replacingOccurrences(of: "} 100", with: "} 150").replacingOccurrences(of: "} 40", with: "} 50")
            .replacingOccurrences(of: "le=\"0.001\"} 10", with: "le=\"0.001\"} 10")
            .replacingOccurrences(of: "le=\"0.01\"} 10", with: "le=\"0.01\"} 60")
            .replacingOccurrences(of: "le=\"0.1\"} 10", with: "le=\"0.1\"} 110")
            .replacingOccurrences(of: "le=\"+Inf\"} 10", with: "le=\"+Inf\"} 110"))
        let f = MetricsScraper.figures(from: .init(nanos: 1_000_000_000, page: p1), to: .init(nanos: 6_000_000_000, page: later))
        check("scrape activations/s", f["rooms_activations_per_s"] == 10)
        check("scrape evictions/s", f["rooms_evictions_per_s"] == 2)
        check("scrape resident", f["rooms_resident"] == 12)
        // 100 new observations: 50 in (1 ms, 10 ms], 50 in (10 ms, 100 ms]: p50 at 10 ms, p99 near 98 ms.
        let p50 = f["db_commit_seconds p50_ms"] ?? -1, p99 = f["db_commit_seconds p99_ms"] ?? -1
        check("histogram interval p50 \(p50)", abs(p50 - 10) < 0.001)
        check("histogram interval p99 \(p99)", p99 > 90 && p99 <= 100)
        check("histogram per second", f["db_commit_seconds per_s"] == 20)
        check("histogram empty interval", MetricsScraper.figures(from: .init(nanos: 1, page: p1), to: .init(nanos: 2, page: p1))["db_commit_seconds p99_ms"] == nil)
        check("histogram counter reset", PrometheusText.Histogram(bounds: [1, .infinity], cumulative: [1, 2])
            .minus(.init(bounds: [1, .infinity], cumulative: [5, 9])).count == 2)

        let zipf = Zipf(count: 1000, exponent: 1.1)
        var rng = SystemRandomNumberGenerator()
        var hits = [Int](repeating: 0, count: 1000)
        for _ in 0..<20_000 { hits[zipf.draw(using: &rng)] += 1 }
        check("zipf in range", hits.reduce(0, +) == 20_000)
        check("zipf skewed", hits[0] > 10 * max(1, hits[500...].max() ?? 0))
        check("zipf probabilities sum to 1", abs((0..<1000).map(zipf.probability).reduce(0, +) - 1) < 1e-9)
        check("skew parse", Zipf.parseSkew("zipf:1.1") == .some(1.1) && Zipf.parseSkew("none") == .some(nil)
            && Zipf.parseSkew("zipf:-1") == nil && Zipf.parseSkew("pareto") == nil)

        func clean(_ name: String, _ svg: String) {
            let problems = SVGCheck.problems(svg)
            check("\(name) well-formed\(problems.isEmpty ? "" : ": " + problems.prefix(3).joined(separator: "; "))", problems.isEmpty)
        }
        check("svg checker catches NaN", !SVGCheck.problems("<svg width=\"10\" height=\"10\"><rect x=\"nan\"/></svg>").isEmpty)
        check("svg checker catches unbalanced", !SVGCheck.problems("<svg width=\"10\" height=\"10\"><g></svg>").isEmpty)
        check("svg checker catches out of range", !SVGCheck.problems("<svg width=\"10\" height=\"10\"><line x1=\"50\"/></svg>").isEmpty)
        check("svg checker catches bare &", !SVGCheck.problems("<svg width=\"10\" height=\"10\"><text>a & b</text></svg>").isEmpty)
        let empty = SVGChart(title: "empty", xLabel: "s", yLabel: "ms", series: []).render()
        clean("empty chart", empty)
        check("empty chart says so", empty.contains("no data"))
        clean("empty series", SVGChart(title: "a <b> & c", xLabel: "s", yLabel: "ms", series: [.init(name: "p99", points: [])]).render())
        let wild = SVGChart(title: "wild", xLabel: "s", yLabel: "ms", series: [
            .init(name: "a", points: [(0, 1), (5, .nan), (10, .infinity), (15, 1e12), (20, -3)]),
            .init(name: "b", points: [(1, 0.0001), (2, 0.0002)]),
        ]).render()
        clean("non-finite and huge values", wild)
        clean("single point", SVGChart(title: "one", xLabel: "s", yLabel: "ms", series: [.init(name: "x", points: [(0, 0)])]).render())
        clean("bars", SVGChart(title: "bars", xLabel: "max_resident", yLabel: "ms",
                               series: [.init(name: "t=30", points: [(0, 5), (1, 50), (2, .nan), (7, 3)]),
                                        .init(name: "t=300", points: [(2, 0.5)])],
                               kind: .bars(categories: ["500", "5000", "50000"])).render())
        clean("bars without categories", SVGChart(title: "bars", xLabel: "k", yLabel: "ms",
                                                  series: [.init(name: "x", points: [(0, 1)])], kind: .bars(categories: [])).render())
        check("ticks 1-2-5", SVGChart.ticks(low: 0, high: 87) == [0, 20, 40, 60, 80, 100])
        check("ticks tiny range", SVGChart.ticks(low: 0, high: 1e-12).count <= 1000)

        var samples: [IntervalSample] = []
        for i in 0..<12 {
            let t: Double = Double(i + 1) * 5
            let p50: Double? = i == 3 ? nil : 2
            let scraped: [String: Double] = i == 0 ? [:] : f
            samples.append(IntervalSample(t: t, sentPerS: 10, ackedPerS: 10, deliveriesPerS: Double(i) * 100,
                                          deliveryP50Ms: p50, deliveryP90Ms: 5, deliveryP99Ms: Double(i * i),
                                          polls: 100, errors: 0, serverCPUPct: 40, serverRSSMiB: 30, harnessCPUPct: 10,
                                          server: scraped))
        }
        let charts = HTMLReport.runCharts(samples)
        check("run charts include actor and histogram charts", charts.count >= 8)
        for c in charts { clean("run chart \(c.title)", c.render()) }
        var report = Report(scenario: "mixed")
        report.row("delivery latency ms", "p50 1 <2>")
        let html = HTMLReport.run(report, samples: samples)
        check("run page self-contained", !html.contains("<script") && !html.contains("src=") && !html.contains("href=")
            && html.contains("<svg") && html.contains("p50 1 &lt;2&gt;"))
        check("run page without samples", HTMLReport.run(report, samples: []).contains("No interval"))

        func fakeRun(_ labels: [String: String], p99: Double, evictions: Double) -> [String: Any] {
            let deliveries: [String: Any] = ["latency_ms": ["p99": p99] as [String: Any], "per_s": 100.0]
            let server: [[String: Any]] = [["cpu_ms_per_delivery": 0.05, "peak_rss_mib": 40.0]]
            let metrics: [String: Any] = ["rooms_evictions_per_s": evictions, "rooms_activations_per_s": evictions + 1]
            return ["labels": labels, "deliveries": deliveries, "server": server, "server_metrics": metrics, "verdict": "ok"]
        }
        let runs = [fakeRun(["max_resident": "5000", "idle": "30"], p99: 20, evictions: 0),
                    fakeRun(["max_resident": "500", "idle": "30"], p99: 80, evictions: 40),
                    fakeRun(["max_resident": "500", "idle": "30"], p99: 60, evictions: 30),
                    fakeRun(["max_resident": "500", "idle": "300"], p99: 70, evictions: 35),
                    fakeRun(["other": "x"], p99: 1, evictions: 1)]
        let files = SweepReport.render(runs: runs, sweepKey: "max_resident", seriesKey: "idle", title: "sweep & co")
        check("sweep files", files.first?.0 == "index.html" && files.contains { $0.0 == "delivery-p99.svg" }
            && files.contains { $0.0 == "evictions-per-s.svg" } && !files.contains { $0.0 == "send-p99.svg" })
        for (name, contents) in files where name.hasSuffix(".svg") { clean("sweep \(name)", contents) }
        let p99svg = files.first { $0.0 == "delivery-p99.svg" }?.1 ?? ""
        check("sweep median and order", p99svg.contains(">70<") && p99svg.range(of: ">500<").map { r in
            p99svg.range(of: ">5000<").map { r.lowerBound < $0.lowerBound } ?? false } == true)
        check("sweep with no tagged run", SweepReport.render(runs: runs, sweepKey: "nothing", seriesKey: nil, title: "t")
            .first?.1.contains("No run carries") == true)
        check("settings order", ["50000", "500", "5000", "1/1", "4/4", "2/2"].sorted(by: SweepReport.settingOrder)
            == ["1/1", "2/2", "4/4", "500", "5000", "50000"])
    }
}
