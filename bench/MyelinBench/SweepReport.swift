import ArgumentParser
import Foundation

/// `report`: the page of a sweep. Reads the `--json` lines of several runs, each tagged with
/// its setting by `--label key=value`, and charts each metric (delivery p99, CPU per delivery,
/// deliveries/s, RSS, actor activations/s and evictions/s, ...) against the swept setting;
/// with `--series-key` one bar per value of a second setting. Runs with the same settings are
/// summarised by their median. Writes index.html (inline SVG) and one SVG file per metric.
struct SweepReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Chart several runs' JSON lines against a swept setting (HTML page and SVG files).")

    @Option(help: "JSON lines file written by runs with --json (repeatable).")
    var from: [String]

    @Option(name: .customLong("sweep-key"), help: "The --label key whose values form the x axis.")
    var sweepKey: String

    @Option(name: .customLong("series-key"), help: "A second --label key: one bar (series) per value.")
    var seriesKey: String?

    @Option(help: "Output directory (index.html, <metric>.svg).")
    var out: String

    @Option(help: "Only runs whose labels include these, key=value (repeatable).")
    var only: [String] = []

    @Option(help: "Page title.")
    var title: String = "myelin-bench sweep"

    /// A metric of one run's JSON line.
    struct Metric: Sendable {
        var slug: String
        var title: String
        var unit: String
        var value: @Sendable ([String: Any]) -> Double?
    }

    static func number(_ json: [String: Any], _ path: String) -> Double? {
        var node: Any? = json
        for key in path.split(separator: ".") {
            if let list = node as? [Any] { node = list.first }
            node = (node as? [String: Any])?[String(key)]
        }
        if let d = node as? Double { return d.isFinite ? d : nil }
        if let i = node as? Int { return Double(i) }
        if let n = node as? NSNumber { return n.doubleValue.isFinite ? n.doubleValue : nil }
        return nil
    }

    static let metrics: [Metric] = [
        Metric(slug: "delivery-p99", title: "Delivery latency p99", unit: "ms") { number($0, "deliveries.latency_ms.p99") },
        Metric(slug: "send-p99", title: "Send latency p99", unit: "ms") { number($0, "sends.latency_ms.p99") },
        Metric(slug: "deliveries-per-s", title: "Deliveries per second", unit: "per second") { number($0, "deliveries.per_s") },
        Metric(slug: "cpu-per-delivery", title: "Server CPU per delivery", unit: "ms") { number($0, "server.cpu_ms_per_delivery") },
        Metric(slug: "server-cpu", title: "Server CPU", unit: "% of a core") { number($0, "server.cpu_pct_of_core") },
        Metric(slug: "peak-rss", title: "Server peak RSS", unit: "MiB") { number($0, "server.peak_rss_mib") },
        Metric(slug: "activations-per-s", title: "Room actor activations per second", unit: "per second") {
            number($0, "server_metrics.rooms_activations_per_s")
        },
        Metric(slug: "evictions-per-s", title: "Room actor evictions per second", unit: "per second") {
            number($0, "server_metrics.rooms_evictions_per_s")
        },
        Metric(slug: "resident-rooms", title: "Resident room actors (max)", unit: "actors") {
            number($0, "server_metrics.rooms_resident_max")
        },
    ]

    static func labels(_ json: [String: Any]) -> [String: String] {
        (json["labels"] as? [String: Any])?.compactMapValues { "\($0)" } ?? [:]
    }

    /// Orders setting values numerically when they are numbers ("500" < "5000"), else as text.
    static func settingOrder(_ a: String, _ b: String) -> Bool {
        let na = Double(a.split(separator: "/").first ?? ""), nb = Double(b.split(separator: "/").first ?? "")
        if let na, let nb, na != nb { return na < nb }
        return a < b
    }

    static func median(_ values: [Double]) -> Double? {
        let v = values.sorted()
        guard !v.isEmpty else { return nil }
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }

    /// The page and the SVG files for `runs` (already filtered): returns (file name, contents).
    static func render(runs: [[String: Any]], sweepKey: String, seriesKey: String?, title: String) -> [(String, String)] {
        let tagged = runs.filter { labels($0)[sweepKey] != nil }
        let categories = Set(tagged.compactMap { labels($0)[sweepKey] }).sorted(by: settingOrder)
        let seriesNames = seriesKey.map { key in Set(tagged.compactMap { labels($0)[key] }).sorted(by: settingOrder) } ?? [""]
        var files: [(String, String)] = []
        var body = "<h1>\(SVGChart.escape(title))</h1>\n"
        body += "<p>\(tagged.count) runs; x axis: <code>\(SVGChart.escape(sweepKey))</code>"
        if let seriesKey { body += "; one bar per <code>\(SVGChart.escape(seriesKey))</code>" }
        body += "; the median where a setting ran more than once.</p>\n"
        if tagged.isEmpty { body += "<p>No run carries the label <code>\(SVGChart.escape(sweepKey))</code>.</p>\n" }
        body += "<div class=\"charts\">\n"
        var table: [[String]] = []
        for metric in metrics {
            var series: [SVGChart.Series] = []
            for name in seriesNames {
                var points: [(x: Double, y: Double)] = []
                for (c, category) in categories.enumerated() {
                    let values = tagged.filter { run in
                        let l = labels(run)
                        return l[sweepKey] == category && (seriesKey.map { l[$0] == name } ?? true)
                    }.compactMap(metric.value)
                    if let m = median(values) { points.append((Double(c), m)) }
                }
                series.append(SVGChart.Series(name: seriesKey.map { "\($0)=\(name)" } ?? metric.title, points: points))
            }
            guard series.contains(where: { !$0.points.isEmpty }) else { continue }
            let chart = SVGChart(title: "\(metric.title) (\(metric.unit))", xLabel: sweepKey, yLabel: metric.unit,
                                 series: series, kind: .bars(categories: categories), width: 560, height: 300)
            let svg = chart.render()
            files.append(("\(metric.slug).svg", svg))
            body += svg
            for s in series {
                for p in s.points {
                    let c = Int(p.x)
                    guard c >= 0 && c < categories.count else { continue }
                    table.append([metric.title, categories[c], s.name, SVGChart.label(p.y) + " " + metric.unit])
                }
            }
        }
        body += "</div>\n<h2>Figures</h2>\n<table><tr><th>metric</th><th>\(SVGChart.escape(sweepKey))</th><th>series</th><th>median</th></tr>\n"
        for row in table { body += "<tr>" + row.map { "<td>\(SVGChart.escape($0))</td>" }.joined() + "</tr>\n" }
        body += "</table>\n<h2>Runs</h2>\n<table><tr><th>labels</th><th>date</th><th>verdict</th></tr>\n"
        for run in tagged {
            let l = labels(run).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            body += "<tr><td>\(SVGChart.escape(l))</td><td>\(SVGChart.escape("\(run["date"] ?? "")"))</td><td>\(SVGChart.escape("\(run["verdict"] ?? "")"))</td></tr>\n"
        }
        body += "</table>\n"
        files.insert(("index.html", HTMLReport.page(title: title, body: body)), at: 0)
        return files
    }

    func run() throws {
        var runs: [[String: Any]] = []
        for path in from {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                if let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] {
                    runs.append(object)
                } else {
                    printErr("skipping a line of \(path) that is not a JSON object")
                }
            }
        }
        var wanted: [String: String] = [:]
        for o in only {
            guard let eq = o.firstIndex(of: "=") else { throw ValidationError("--only must be key=value") }
            wanted[String(o[..<eq])] = String(o[o.index(after: eq)...])
        }
        runs = runs.filter { run in wanted.allSatisfy { Self.labels(run)[$0.key] == $0.value } }
        let files = Self.render(runs: runs, sweepKey: sweepKey, seriesKey: seriesKey, title: title)
        for (name, contents) in files {
            let path = try HTMLReport.write(contents, to: out, name: name)
            printOut(path)
        }
    }
}
