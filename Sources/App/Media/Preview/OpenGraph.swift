import Matrix

/// The Open Graph description of an HTML page, for `preview_url`, computed as Synapse's
/// `parse_html_to_open_graph` does: `og:`, `article:` and `profile:` meta properties (also
/// `og:` given as `name`), Twitter card names mapped to `og:` where Open Graph said nothing,
/// then fallbacks — the first `<title>`/`<h1>`/`<h2>`/`<h3>` text for `og:title`, an
/// `itemprop="image"` meta, the largest `<img>` over 10×10, the first `<img>` or the icon for
/// `og:image`, the meta description or a summary of the body's text for `og:description`.
/// Where tags conflict the first one wins (ogp.me: "the first tag is preferred").
///
/// One pass over `HTMLScanner`'s tokens, keeping only what the answer needs (the best image
/// so far, the first title, ~200 characters of body text), so a hostile page costs time
/// linear in its size and memory bounded by its largest kept value. Pure; called by
/// `URLPreviewer` with a body already capped at `media.url_preview.max_spider_size`.
enum OpenGraph {
    /// More tags than this under one prefix and the prefix is ignored (Synapse's rule).
    static let maxTagsPerPrefix = 50
    static let summaryMinimum = 200
    static let summaryMaximum = 500

    /// The page's description: string values, or null for a title or description the page
    /// lacks (as Synapse answers). Empty for an empty body.
    static func parse(html body: [UInt8], contentType: String?) -> [String: JSON] {
        guard let utf8 = HTMLText.decodeDocument(body, contentType: contentType) else { return [:] }
        var page = Page()
        var scanner = HTMLScanner(utf8)
        while let token = scanner.next() { page.take(token) }
        return page.result()
    }

    /// What the scan keeps.
    struct Page {
        var prefixes: [String: [String: String]] = ["og": [:], "article": [:], "profile": [:]]
        var overflowed: Set<String> = []
        var ogByName: [String: String] = [:]
        var twitter: [String: String] = [:]
        var metaImage: String?
        var metaDescription: String?
        var title: String?
        /// The first of each title-bearing element seen so far.
        var titleElementsSeen: Set<String> = []
        /// The title-bearing element whose direct text is being read, and the depth inside it.
        var titleElement: (name: String, depth: Int)?
        var bestImage: (src: String, area: Double)?
        var firstImage: String?
        var icon: String?
        var inHead = false
        /// An element whose text is not part of the description, and how many of its name are open.
        var skipping: (name: String, depth: Int)?
        var texts: [String] = []
        var textLength = 0

        /// Synapse's list, plus `title` and `template` (never displayed in the body either).
        static let skippedElements: Set<String> = ["header", "nav", "aside", "footer", "script", "noscript", "style",
                                                    "svg", "iframe", "video", "canvas", "picture", "template", "title"]
        static let ignoredRoles: Set<String> = ["directory", "menu", "menubar", "toolbar"]
        static let voidElements: Set<String> = ["area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                                                 "meta", "param", "source", "track", "wbr"]
        static let titleElements: Set<String> = ["title", "h1", "h2", "h3"]

        mutating func take(_ token: HTMLScanner.Token) {
            switch token {
            case .start(let name, let attributes, let selfClosing):
                start(name, attributes, isVoid: selfClosing || Self.voidElements.contains(name))
            case .end(let name):
                end(name)
            case .text(let bytes):
                text(bytes)
            }
        }

        private mutating func start(_ name: String, _ attributes: [HTMLScanner.Attribute], isVoid: Bool) {
            func attribute(_ key: String) -> String? { attributes.first(where: { $0.name == key })?.value }
            switch name {
            case "head": inHead = true
            case "body": inHead = false
            case "meta": meta(attribute)
            case "img": image(attribute)
            case "link":
                if icon == nil, let rel = attribute("rel"), rel.contains("icon"), let href = attribute("href"), !href.isEmpty {
                    icon = href
                }
            default: break
            }
            if var open = titleElement, !isVoid {
                open.depth += 1
                titleElement = open
            } else if title == nil, Self.titleElements.contains(name), !titleElementsSeen.contains(name), !isVoid {
                titleElementsSeen.insert(name)
                titleElement = (name, 1)
            }
            guard !isVoid else { return }
            if var skip = skipping {
                if skip.name == name { skip.depth += 1; skipping = skip }
            } else if Self.skippedElements.contains(name)
                        || attribute("role").map({ Self.ignoredRoles.contains($0.lowercased()) }) == true {
                skipping = (name, 1)
            }
        }

        private mutating func end(_ name: String) {
            if name == "head" { inHead = false }
            if var open = titleElement {
                open.depth -= 1
                titleElement = open.depth > 0 ? open : nil
            }
            if var skip = skipping, skip.name == name {
                skip.depth -= 1
                skipping = skip.depth > 0 ? skip : nil
            }
        }

        private mutating func text(_ bytes: ArraySlice<UInt8>) {
            if title == nil, let open = titleElement, open.depth == 1 {
                let value = HTMLText.decode(bytes.prefix(4096)).trimmingWhitespace()
                if !value.isEmpty { title = value }
            }
            guard skipping == nil, !inHead, textLength < OpenGraph.summaryMinimum else { return }
            // The text node with each run of whitespace made one line break (Synapse's
            // `re.sub(r"\s+", "\n", el).strip()`), kept to a bounded length.
            let decoded = HTMLText.decode(bytes.prefix(8192))
            let node = decoded.split(whereSeparator: \.isWhitespace).joined(separator: "\n")
            // Whitespace between tags says nothing (Synapse counts it towards the minimum).
            guard !node.isEmpty else { return }
            texts.append(node)
            textLength += node.unicodeScalars.count + 2
        }

        private mutating func meta(_ attribute: (String) -> String?) {
            let content = attribute("content") ?? ""
            if let property = attribute("property"), !content.isEmpty, let colon = property.firstIndex(of: ":") {
                let prefix = String(property[..<colon])
                if var tags = prefixes[prefix], !overflowed.contains(prefix) {
                    if tags.count >= OpenGraph.maxTagsPerPrefix {
                        overflowed.insert(prefix)
                    } else if tags[property] == nil {
                        tags[property] = content
                        prefixes[prefix] = tags
                    }
                }
            }
            if let name = attribute("name"), !content.isEmpty {
                if name.hasPrefix("og:"), ogByName[name] == nil, ogByName.count < OpenGraph.maxTagsPerPrefix {
                    ogByName[name] = content
                } else if name.hasPrefix("twitter:"), twitter.count < OpenGraph.maxTagsPerPrefix,
                          let key = Self.twitterToOpenGraph(name), twitter[key] == nil {
                    twitter[key] = content
                } else if metaDescription == nil, name.lowercased() == "description" {
                    metaDescription = content
                }
            }
            if metaImage == nil, !content.isEmpty, attribute("itemprop")?.lowercased() == "image" {
                metaImage = content
            }
        }

        private mutating func image(_ attribute: (String) -> String?) {
            guard let src = attribute("src"), !src.isEmpty else { return }
            if firstImage == nil { firstImage = src }
            guard let width = attribute("width").flatMap(Self.number), let height = attribute("height").flatMap(Self.number),
                  width > 10, height > 10 else { return }
            let area = width * height
            if bestImage == nil || area > bestImage!.area { bestImage = (src, area) }
        }

        /// XPath's `number()` of an attribute: a plain decimal, else not a number.
        static func number(_ text: String) -> Double? {
            let trimmed = text.trimmingWhitespace()
            guard !trimmed.isEmpty, trimmed.count <= 32,
                  trimmed.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "." || $0 == "-") }),
                  let value = Double(trimmed), value.isFinite else { return nil }
            return value
        }

        /// `twitter:site` is the site's name; `card` and `creator` have no Open Graph twin.
        static func twitterToOpenGraph(_ key: String) -> String? {
            switch key {
            case "twitter:card", "twitter:creator": return nil
            case "twitter:site": return "og:site_name"
            default: return "og" + key.dropFirst("twitter".count)
            }
        }

        func result() -> [String: JSON] {
            var og: [String: String] = [:]
            for prefix in ["og", "article", "profile"] where !overflowed.contains(prefix) {
                og.merge(prefixes[prefix] ?? [:]) { first, _ in first }
            }
            og.merge(ogByName) { first, _ in first }
            og.merge(twitter) { first, _ in first }
            var out = og.mapValues { JSON.string($0) }
            if og["og:title"] == nil { out["og:title"] = title.map(JSON.string) ?? .null }
            if og["og:image"] == nil, let image = metaImage ?? bestImage?.src ?? firstImage ?? icon {
                out["og:image"] = .string(image)
            }
            if let description = og["og:description"] {
                out["og:description"] = OpenGraph.summarize([description]).map(JSON.string) ?? .null
            } else {
                out["og:description"] = (metaDescription ?? OpenGraph.summarize(texts)).map(JSON.string) ?? .null
            }
            return out
        }
    }

    /// Synapse's `summarize_paragraphs`: paragraphs until `summaryMinimum` characters, then
    /// cut at a word boundary before `summaryMaximum` with an ellipsis.
    static func summarize(_ nodes: [String]) -> String? {
        var description = ""
        for node in nodes {
            guard description.unicodeScalars.count < summaryMinimum else { break }
            description += node.collapsingWhitespace(keepingLineBreaks: false) + "\n\n"
        }
        description = description.collapsingWhitespace(keepingLineBreaks: true)
        if description.unicodeScalars.count > summaryMaximum {
            var summary = ""
            var count = 0
            for word in description.wordsWithLeadingSpace() {
                let length = word.unicodeScalars.count
                if length + count < summaryMaximum {
                    summary += word
                    count += length
                } else {
                    if count < summaryMinimum { summary += word; count += length }
                    break
                }
            }
            if count > summaryMaximum { summary = String(summary.unicodeScalars.prefix(summaryMaximum)) }
            description = summary.trimmingWhitespace() + "…"
        }
        return description.isEmpty ? nil : description
    }
}

extension String {
    func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }

    /// Runs of spaces and tabs become one space and, with `keepingLineBreaks`, any run of
    /// whitespace holding a line break becomes one blank line (`\n\n`); without it every
    /// whitespace run becomes one space. Trimmed.
    func collapsingWhitespace(keepingLineBreaks: Bool) -> String {
        var out = ""
        var pendingSpace = false
        var pendingBreak = false
        for character in self {
            if character.isWhitespace {
                if keepingLineBreaks && character.isNewline { pendingBreak = true } else { pendingSpace = true }
                continue
            }
            if !out.isEmpty {
                if pendingBreak { out += "\n\n" } else if pendingSpace { out += " " }
            }
            pendingSpace = false
            pendingBreak = false
            out.append(character)
        }
        return out
    }

    /// Each word with the whitespace before it (Python's `re.finditer(r"\s*\S+", ...)`).
    func wordsWithLeadingSpace() -> [Substring] {
        var words: [Substring] = []
        var start = startIndex
        var index = startIndex
        while index < endIndex {
            while index < endIndex, self[index].isWhitespace { index = self.index(after: index) }
            guard index < endIndex else { break }
            while index < endIndex, !self[index].isWhitespace { index = self.index(after: index) }
            words.append(self[start..<index])
            start = index
        }
        return words
    }
}
