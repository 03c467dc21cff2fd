/// A chart drawn as standalone SVG text by the harness itself (no script, no external file):
/// lines over a numeric x axis (a run's time series) or grouped bars over categories (a
/// sweep's settings). Axes start at zero, ticks fall on 1-2-5 steps, each series has a colour
/// and a legend entry. Non-finite values are dropped; a chart without data says so.
struct SVGChart {
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    enum Kind {
        case lines
        /// One group of bars per category; series `s`'s value for category `c` is the point
        /// with x == c (index into `categories`).
        case bars(categories: [String])
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var kind: Kind = .lines
    var width = 640
    var height = 300

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    // Plot area margins.
    static let left = 64.0, right = 16.0, top = 30.0, bottom = 62.0

    /// The ticks of an axis from 0 (or `low`) to at least `high`: about `count` steps of
    /// 1, 2 or 5 × 10^k.
    static func ticks(low: Double, high: Double, count: Int = 5) -> [Double] {
        guard low.isFinite, high.isFinite, high > low, count > 0 else { return [0, 1] }
        let raw = (high - low) / Double(count)
        var magnitude = 1.0
        while magnitude * 10 <= raw { magnitude *= 10 }
        while magnitude > raw && magnitude > 1e-9 { magnitude /= 10 }
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? magnitude * 10
        let first = (low / step).rounded(.down) * step
        var out: [Double] = []
        var v = first
        while out.count < 1000 {
            out.append(v)
            if v >= high { break }
            v += step
        }
        return out
    }

    /// A number for an axis or a label: integers without decimals, small values with a few.
    static func label(_ v: Double) -> String {
        guard v.isFinite else { return "-" }
        let a = abs(v)
        if a >= 1_000_000 { return fmt(v / 1_000_000, a >= 10_000_000 ? 0 : 1) + "M" }
        if a >= 10_000 { return fmt(v / 1000, 0) + "k" }
        if a >= 100 || v == v.rounded() { return fmt(v, 0) }
        if a >= 1 { return fmt(v, 1) }
        if a >= 0.01 { return fmt(v, 2) }
        return fmt(v, 4)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A coordinate: finite and rounded to 0.1 px.
    private static func n(_ v: Double) -> String { fmt(v.isFinite ? v : 0, 1) }

    func render() -> String {
        let left = Self.left, right = Self.right, top = Self.top, bottom = Self.bottom
        let w = Double(max(width, 200)), h = Double(max(height, 120))
        let plotW = w - left - right, plotH = h - top - bottom
        let clean = series.map { Series(name: $0.name, points: $0.points.filter { $0.x.isFinite && $0.y.isFinite }) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        svg += "<title>\(Self.escape(title))</title>\n"
        svg += "<rect x=\"0\" y=\"0\" width=\"\(Int(w))\" height=\"\(Int(h))\" fill=\"#ffffff\"/>\n"
        svg += "<text x=\"\(Self.n(left))\" y=\"18\" font-size=\"13\" font-weight=\"bold\">\(Self.escape(title))</text>\n"
        let allY = clean.flatMap { $0.points.map(\.y) }
        guard !allY.isEmpty else {
            svg += "<text x=\"\(Self.n(w / 2))\" y=\"\(Self.n(h / 2))\" text-anchor=\"middle\" fill=\"#888888\">no data</text>\n</svg>\n"
            return svg
        }
        let yLow = min(0, allY.min() ?? 0)
        let yTicks = Self.ticks(low: yLow, high: max(allY.max() ?? 1, yLow + 1e-9))
        let y0 = yTicks.first ?? 0, y1 = max(yTicks.last ?? 1, y0 + 1e-9)
        func py(_ v: Double) -> Double { top + plotH - (min(max(v, y0), y1) - y0) / (y1 - y0) * plotH }

        // Y grid and labels.
        for t in yTicks {
            svg += "<line x1=\"\(Self.n(left))\" y1=\"\(Self.n(py(t)))\" x2=\"\(Self.n(left + plotW))\" y2=\"\(Self.n(py(t)))\" stroke=\"#e0e0e0\"/>\n"
            svg += "<text x=\"\(Self.n(left - 6))\" y=\"\(Self.n(py(t) + 4))\" text-anchor=\"end\">\(Self.escape(Self.label(t)))</text>\n"
        }
        svg += "<text x=\"14\" y=\"\(Self.n(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(Self.n(top + plotH / 2)))\">\(Self.escape(yLabel))</text>\n"
        svg += "<text x=\"\(Self.n(left + plotW / 2))\" y=\"\(Self.n(h - 28))\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"

        switch kind {
        case .lines:
            let allX = clean.flatMap { $0.points.map(\.x) }
            let xTicks = Self.ticks(low: min(0, allX.min() ?? 0), high: max(allX.max() ?? 1, 1e-9))
            let x0 = xTicks.first ?? 0, x1 = max(xTicks.last ?? 1, x0 + 1e-9)
            func px(_ v: Double) -> Double { left + (min(max(v, x0), x1) - x0) / (x1 - x0) * plotW }
            for t in xTicks {
                svg += "<line x1=\"\(Self.n(px(t)))\" y1=\"\(Self.n(top + plotH))\" x2=\"\(Self.n(px(t)))\" y2=\"\(Self.n(top + plotH + 4))\" stroke=\"#444444\"/>\n"
                svg += "<text x=\"\(Self.n(px(t)))\" y=\"\(Self.n(top + plotH + 16))\" text-anchor=\"middle\">\(Self.escape(Self.label(t)))</text>\n"
            }
            for (i, s) in clean.enumerated() where !s.points.isEmpty {
                let colour = Self.palette[i % Self.palette.count]
                let pts = s.points.sorted { $0.x < $1.x }.map { "\(Self.n(px($0.x))),\(Self.n(py($0.y)))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.8\" points=\"\(pts)\"/>\n"
                if s.points.count <= 40 {
                    for p in s.points {
                        svg += "<circle cx=\"\(Self.n(px(p.x)))\" cy=\"\(Self.n(py(p.y)))\" r=\"2.2\" fill=\"\(colour)\"/>\n"
                    }
                }
            }
        case .bars(let categories):
            let groups = max(categories.count, 1)
            let groupW = plotW / Double(groups)
            let visible = clean.filter { !$0.points.isEmpty }
            let barW = max(2, groupW * 0.8 / Double(max(visible.count, 1)))
            for (c, name) in categories.enumerated() {
                let cx = left + groupW * (Double(c) + 0.5)
                svg += "<text x=\"\(Self.n(cx))\" y=\"\(Self.n(top + plotH + 16))\" text-anchor=\"middle\">\(Self.escape(name))</text>\n"
            }
            var slot = 0
            for (i, s) in clean.enumerated() where !s.points.isEmpty {
                let colour = Self.palette[i % Self.palette.count]
                for p in s.points {
                    let c = Int(p.x.rounded())
                    guard c >= 0 && c < categories.count else { continue }
                    let x = left + groupW * Double(c) + groupW * 0.1 + barW * Double(slot)
                    let yTop = py(max(p.y, y0)), yBase = py(max(0, y0))
                    svg += "<rect x=\"\(Self.n(x))\" y=\"\(Self.n(min(yTop, yBase)))\" width=\"\(Self.n(barW * 0.92))\" height=\"\(Self.n(abs(yBase - yTop)))\" fill=\"\(colour)\"><title>\(Self.escape(s.name)) \(Self.escape(categories[c])): \(Self.escape(Self.label(p.y)))</title></rect>\n"
                    svg += "<text x=\"\(Self.n(x + barW * 0.46))\" y=\"\(Self.n(min(yTop, yBase) - 3))\" text-anchor=\"middle\" font-size=\"9\">\(Self.escape(Self.label(p.y)))</text>\n"
                }
                slot += 1
            }
        }
        // Axes.
        svg += "<line x1=\"\(Self.n(left))\" y1=\"\(Self.n(top))\" x2=\"\(Self.n(left))\" y2=\"\(Self.n(top + plotH))\" stroke=\"#444444\"/>\n"
        svg += "<line x1=\"\(Self.n(left))\" y1=\"\(Self.n(top + plotH))\" x2=\"\(Self.n(left + plotW))\" y2=\"\(Self.n(top + plotH))\" stroke=\"#444444\"/>\n"
        // Legend along the bottom.
        var lx = left
        for (i, s) in clean.enumerated() where clean.count > 1 || !s.name.isEmpty {
            // Entries that no longer fit on the line are left out rather than drawn outside.
            if lx + 14 + Double(s.name.count) * 6.2 > w { break }
            let colour = Self.palette[i % Self.palette.count]
            svg += "<rect x=\"\(Self.n(lx))\" y=\"\(Self.n(h - 14))\" width=\"10\" height=\"10\" fill=\"\(colour)\"/>\n"
            svg += "<text x=\"\(Self.n(lx + 14))\" y=\"\(Self.n(h - 5))\">\(Self.escape(s.name))</text>\n"
            lx += 24 + Double(s.name.count) * 6.2
        }
        svg += "</svg>\n"
        return svg
    }
}

/// A small XML well-formedness check for the charts (selftest): balanced tags, quoted
/// attributes, only the five predefined entities or character references, and every
/// coordinate attribute a finite number within the picture (with `slack` pixels).
enum SVGCheck {
    static func problems(_ svg: String, slack: Double = 2) -> [String] {
        var problems: [String] = []
        var stack: [String] = []
        let chars = Array(svg.unicodeScalars)
        var width = Double.infinity, height = Double.infinity
        var i = 0
        func at(_ k: Int) -> Unicode.Scalar? { k < chars.count ? chars[k] : nil }
        func checkText(_ text: String) {
            var rest = Substring(text)
            while let amp = rest.firstIndex(of: "&") {
                let after = rest[rest.index(after: amp)...]
                guard let semi = after.firstIndex(of: ";") else { problems.append("bare & in text"); return }
                let entity = after[..<semi]
                if !["amp", "lt", "gt", "quot", "apos"].contains(String(entity)) && !entity.hasPrefix("#") {
                    problems.append("unknown entity &\(entity);")
                }
                rest = after[after.index(after: semi)...]
            }
        }
        while i < chars.count {
            if chars[i] != "<" {
                var text = ""
                while i < chars.count, chars[i] != "<" {
                    if chars[i] == ">" { problems.append("bare > in text") }
                    text.unicodeScalars.append(chars[i]); i += 1
                }
                checkText(text)
                continue
            }
            i += 1
            if at(i) == "/" {
                i += 1
                var name = ""
                while let c = at(i), c != ">" { name.unicodeScalars.append(c); i += 1 }
                i += 1
                if stack.popLast() != name { problems.append("unbalanced </\(name)>") }
                continue
            }
            var name = ""
            while let c = at(i), c != " " && c != ">" && c != "/" && c != "\n" { name.unicodeScalars.append(c); i += 1 }
            if name.isEmpty { problems.append("empty tag name"); break }
            var attributes: [String: String] = [:]
            var selfClosing = false
            while true {
                while let c = at(i), c == " " || c == "\n" { i += 1 }
                guard let c = at(i) else { problems.append("unterminated <\(name)"); return problems }
                if c == ">" { i += 1; break }
                if c == "/" && at(i + 1) == ">" { selfClosing = true; i += 2; break }
                var key = ""
                while let k = at(i), k != "=" && k != " " && k != ">" { key.unicodeScalars.append(k); i += 1 }
                guard at(i) == "=", at(i + 1) == "\"" else { problems.append("attribute \(key) of <\(name)> not quoted"); return problems }
                i += 2
                var value = ""
                while let v = at(i), v != "\"" {
                    if v == "<" { problems.append("< in attribute \(key)") }
                    value.unicodeScalars.append(v); i += 1
                }
                i += 1
                if attributes[key] != nil { problems.append("duplicate attribute \(key)") }
                checkText(value)
                attributes[key] = value
            }
            if name == "svg" {
                width = Double(attributes["width"] ?? "") ?? .infinity
                height = Double(attributes["height"] ?? "") ?? .infinity
            }
            for (key, value) in attributes {
                let isX = ["x", "x1", "x2", "cx"].contains(key), isY = ["y", "y1", "y2", "cy"].contains(key)
                let isSize = ["width", "height", "r"].contains(key) && name != "svg"
                guard isX || isY || isSize else { continue }
                guard let v = Double(value), v.isFinite else { problems.append("\(name) \(key)=\"\(value)\" is not a finite number"); continue }
                if isX && (v < -slack || v > width + slack) { problems.append("\(name) \(key)=\(value) outside 0...\(width)") }
                if isY && (v < -slack || v > height + slack) { problems.append("\(name) \(key)=\(value) outside 0...\(height)") }
                if isSize && v < 0 { problems.append("\(name) \(key)=\(value) negative") }
            }
            if name == "polyline", let points = attributes["points"] {
                for pair in points.split(separator: " ") {
                    let xy = pair.split(separator: ",").compactMap { Double($0) }
                    if xy.count != 2 || !xy.allSatisfy(\.isFinite) || xy[0] < -slack || xy[0] > width + slack
                        || xy[1] < -slack || xy[1] > height + slack {
                        problems.append("polyline point \(pair) out of range")
                    }
                }
            }
            if !selfClosing { stack.append(name) }
        }
        if !stack.isEmpty { problems.append("unclosed \(stack)") }
        return problems
    }
}
