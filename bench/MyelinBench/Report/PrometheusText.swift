/// A page in Prometheus' text exposition format, parsed into samples: what the harness
/// scrapes each interval with `--metrics-url` (Myelin's `metrics.path`, or any exporter).
/// Only the sample lines matter here; `# HELP` / `# TYPE` comments are skipped, and a line
/// that does not parse is ignored rather than failing the run.
struct PrometheusText: Sendable {
    struct Sample: Sendable, Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var samples: [Sample] = []

    init(samples: [Sample]) { self.samples = samples }

    init(parsing text: String) {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if let s = Self.parseLine(Substring(line)) { samples.append(s) }
        }
    }

    /// `name{a="x",b="y"} value [timestamp]`; nil for comments, blank or malformed lines.
    static func parseLine(_ line: Substring) -> Sample? {
        let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
        guard let first = trimmed.first, first != "#" else { return nil }
        var i = trimmed.startIndex
        while i < trimmed.endIndex, isNameCharacter(trimmed[i]) { i = trimmed.index(after: i) }
        let name = String(trimmed[trimmed.startIndex..<i])
        guard !name.isEmpty, !(name.first?.isNumber ?? true) else { return nil }
        var labels: [String: String] = [:]
        if i < trimmed.endIndex, trimmed[i] == "{" {
            i = trimmed.index(after: i)
            while true {
                while i < trimmed.endIndex, trimmed[i] == " " || trimmed[i] == "," { i = trimmed.index(after: i) }
                guard i < trimmed.endIndex else { return nil }
                if trimmed[i] == "}" { i = trimmed.index(after: i); break }
                let keyStart = i
                while i < trimmed.endIndex, isNameCharacter(trimmed[i]) { i = trimmed.index(after: i) }
                let key = String(trimmed[keyStart..<i])
                guard !key.isEmpty, i < trimmed.endIndex, trimmed[i] == "=" else { return nil }
                i = trimmed.index(after: i)
                guard i < trimmed.endIndex, trimmed[i] == "\"" else { return nil }
                i = trimmed.index(after: i)
                var value = ""
                var closed = false
                while i < trimmed.endIndex {
                    let c = trimmed[i]
                    if c == "\\" {
                        i = trimmed.index(after: i)
                        guard i < trimmed.endIndex else { return nil }
                        switch trimmed[i] {
                        case "n": value.append("\n")
                        default: value.append(trimmed[i])
                        }
                    } else if c == "\"" {
                        closed = true
                        i = trimmed.index(after: i)
                        break
                    } else {
                        value.append(c)
                    }
                    i = trimmed.index(after: i)
                }
                guard closed else { return nil }
                labels[key] = value
            }
        }
        let rest = trimmed[i...].split(separator: " ", omittingEmptySubsequences: true)
        guard let valueText = rest.first, let value = parseValue(valueText) else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }

    private static func isNameCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == ":")
    }

    static func parseValue(_ s: Substring) -> Double? {
        switch s {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: return Double(s)
        }
    }

    /// The sum of every sample of `name` whose labels include `matching`.
    func value(_ name: String, _ matching: [String: String] = [:]) -> Double? {
        var sum = 0.0, found = false
        for s in samples where s.name == name && matching.allSatisfy({ s.labels[$0.key] == $0.value }) {
            sum += s.value
            found = true
        }
        return found ? sum : nil
    }

    /// A histogram family: cumulative bucket counts by upper bound, ascending (+Inf last).
    struct Histogram: Sendable, Equatable {
        var bounds: [Double]
        var cumulative: [Double]

        /// The counts of `self` minus `earlier` (a counter reset gives `self` alone).
        func minus(_ earlier: Histogram?) -> Histogram {
            guard let earlier, earlier.bounds == bounds,
                  zip(cumulative, earlier.cumulative).allSatisfy({ $0 >= $1 }) else { return self }
            return Histogram(bounds: bounds, cumulative: zip(cumulative, earlier.cumulative).map { $0 - $1 })
        }

        var count: Double { cumulative.last ?? 0 }

        /// The upper bound of the bucket holding the quantile, linearly interpolated inside the
        /// bucket as Prometheus' `histogram_quantile` does; nil when empty. Past the last finite
        /// bound: that bound.
        func quantile(_ q: Double) -> Double? {
            guard let total = cumulative.last, total > 0, bounds.count == cumulative.count else { return nil }
            let rank = min(max(q, 0), 1) * total
            var previousCount = 0.0, previousBound = 0.0
            for (bound, c) in zip(bounds, cumulative) {
                if c >= rank && c > previousCount {
                    if bound.isInfinite { return previousBound }
                    let fraction = (rank - previousCount) / (c - previousCount)
                    return previousBound + (bound - previousBound) * min(max(fraction, 0), 1)
                }
                if bound.isFinite { previousBound = bound }
                previousCount = c
            }
            return previousBound
        }
    }

    /// Every histogram whose name ends in `_seconds`, keyed by family name plus its labels
    /// other than `le` (`myelin_db_commit_seconds{db="main"}`).
    func secondsHistograms() -> [String: Histogram] {
        var byKey: [String: [(Double, Double)]] = [:]
        for s in samples where s.name.hasSuffix("_seconds_bucket") {
            guard let leText = s.labels["le"], let le = Self.parseValue(Substring(leText)) else { continue }
            let family = String(s.name.dropLast("_bucket".count))
            let others = s.labels.filter { $0.key != "le" }.sorted { $0.key < $1.key }
            let key = others.isEmpty ? family : family + "{" + others.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",") + "}"
            byKey[key, default: []].append((le, s.value))
        }
        var out: [String: Histogram] = [:]
        for (key, pairs) in byKey {
            let sorted = pairs.sorted { $0.0 < $1.0 }
            out[key] = Histogram(bounds: sorted.map(\.0), cumulative: sorted.map(\.1))
        }
        return out
    }
}
