import Foundation

/// The `--report DIR` page of one run and the `report` page of a sweep: one self-contained
/// `index.html` (inline CSS and SVG, no script, no external file), so an operator looks at a
/// run rather than reading its table. The charts come from `SVGChart`.
enum HTMLReport {
    static let style = """
        body{font-family:sans-serif;max-width:1400px;margin:1.5em auto;padding:0 1em;color:#222}
        h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
        table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
        th{background:#f4f4f4}.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{border:1px solid #ddd}
        .ok{color:#1a7f37}.bad{color:#b3261e}code{background:#f4f4f4;padding:1px 4px}
        """

    static func page(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(SVGChart.escape(title))</title>
        <style>\(style)</style></head><body>
        \(body)
        </body></html>

        """
    }

    static func write(_ html: String, to directory: String, name: String = "index.html") throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(name)
        try Data(html.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The charts of one run's interval samples: deliveries and sends per second, delivery
    /// latency percentiles, server (and harness) CPU, long-polls, RSS, and with a scrape the
    /// actor pools and every server-side `*_seconds` histogram.
    static func runCharts(_ samples: [IntervalSample]) -> [SVGChart] {
        func series(_ name: String, _ value: (IntervalSample) -> Double?) -> SVGChart.Series {
            SVGChart.Series(name: name, points: samples.compactMap { s in value(s).map { (s.t, $0) } })
        }
        var charts: [SVGChart] = [
            SVGChart(title: "Deliveries and sends per second", xLabel: "seconds", yLabel: "per second",
                     series: [series("deliveries/s") { $0.deliveriesPerS }, series("sends acknowledged/s") { $0.ackedPerS }]),
            SVGChart(title: "Delivery latency per interval", xLabel: "seconds", yLabel: "ms",
                     series: [series("p50") { $0.deliveryP50Ms }, series("p90") { $0.deliveryP90Ms },
                              series("p99") { $0.deliveryP99Ms }]),
            SVGChart(title: "CPU", xLabel: "seconds", yLabel: "% of a core",
                     series: [series("server") { $0.serverCPUPct }, series("harness") { $0.harnessCPUPct }]),
            SVGChart(title: "Long-polls held (harness side)", xLabel: "seconds", yLabel: "requests",
                     series: [series("in flight") { Double($0.polls) }]),
        ]
        if samples.contains(where: { $0.serverRSSMiB != nil }) {
            charts.append(SVGChart(title: "Server RSS", xLabel: "seconds", yLabel: "MiB",
                                   series: [series("RSS") { $0.serverRSSMiB }]))
        }
        let keys = Set(samples.flatMap(\.server.keys))
        if keys.contains("rooms_activations_per_s") || keys.contains("rooms_evictions_per_s") {
            charts.append(SVGChart(title: "Room actors: activations and evictions", xLabel: "seconds", yLabel: "per second",
                                   series: [series("activations/s") { $0.server["rooms_activations_per_s"] },
                                            series("evictions/s") { $0.server["rooms_evictions_per_s"] }]))
        }
        let residentKeys = keys.filter { $0.hasSuffix("_resident") }.sorted()
        if !residentKeys.isEmpty {
            charts.append(SVGChart(title: "Resident actors", xLabel: "seconds", yLabel: "actors",
                                   series: residentKeys.map { k in series(String(k.dropLast("_resident".count))) { $0.server[k] } }))
        }
        let histograms = Set(keys.filter { $0.hasSuffix(" p99_ms") }.map { String($0.dropLast(" p99_ms".count)) }).sorted()
        for h in histograms {
            charts.append(SVGChart(title: "Server \(h) (interval)", xLabel: "seconds", yLabel: "ms",
                                   series: [series("p50") { $0.server[h + " p50_ms"] }, series("p99") { $0.server[h + " p99_ms"] }]))
        }
        return charts
    }

    /// The page of one run: summary table, verdict, charts.
    static func run(_ report: Report, samples: [IntervalSample]) -> String {
        var body = "<h1>myelin-bench \(SVGChart.escape(report.scenario))</h1>\n"
        let verdict = report.verdictText
        body += "<p class=\"\(report.verdict.isEmpty ? "ok" : "bad")\"><b>verdict</b>: \(SVGChart.escape(verdict))</p>\n"
        body += "<table>\n"
        for (label, value) in report.rows {
            body += "<tr><th>\(SVGChart.escape(label))</th><td>\(SVGChart.escape(value))</td></tr>\n"
        }
        body += "</table>\n"
        if samples.isEmpty {
            body += "<p>No interval was sampled (the run was shorter than <code>--interval</code>).</p>\n"
        }
        body += "<h2>Over time (one point per <code>--interval</code>)</h2>\n<div class=\"charts\">\n"
        for chart in runCharts(samples) { body += chart.render() }
        body += "</div>\n"
        return page(title: "myelin-bench \(report.scenario)", body: body)
    }
}
