import Transport

/// An absolute `http`/`https` URL as URL previews handle it: parsed into the parts
/// `media.url_preview.url_blacklist` entries match (Python's `urlsplit` names), and
/// references found in a page (`og:image`, redirects) resolved against it (RFC 3986 §5.2).
/// Pure; used by `URLPreviewFetcher` and `URLPreviewer`.
struct PreviewURL: Equatable, Sendable {
    var scheme: String
    /// `host[:port]` as written (IPv6 in brackets); no user information.
    var netloc: String
    var host: String
    var port: Int?
    /// Starts with `/`.
    var path: String
    var query: String?
    var fragment: String?

    static let maxLength = 4096

    /// nil unless `text` is an absolute http(s) URL with a usable host, within `maxLength`
    /// bytes and free of whitespace and control characters.
    init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= Self.maxLength,
              !text.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else { return nil }
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let scheme = text[..<colon].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        var rest = text[text.index(after: colon)...]
        guard rest.hasPrefix("//") else { return nil }
        rest = rest.dropFirst(2)
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<end]
        guard !authority.contains("@"), let (host, port) = HTTPClientRequest.splitAuthority(authority) else { return nil }
        self.scheme = scheme
        netloc = String(authority).lowercased()
        self.host = host.lowercased()
        self.port = port
        var tail = rest[end...]
        if let hash = tail.firstIndex(of: "#") {
            fragment = String(tail[tail.index(after: hash)...])
            tail = tail[..<hash]
        }
        if let question = tail.firstIndex(of: "?") {
            query = String(tail[tail.index(after: question)...])
            tail = tail[..<question]
        }
        path = tail.isEmpty ? "/" : String(tail)
    }

    /// The URL as text (the fragment, never sent, left out).
    var string: String {
        "\(scheme)://\(netloc)\(path)" + (query.map { "?\($0)" } ?? "")
    }

    /// The request the HTTP client sends for this URL.
    func request(headers: HTTPHeaders) -> HTTPClientRequest {
        var request = HTTPClientRequest(method: .get, scheme: scheme == "https" ? .https : .http, host: host, port: port,
                                        target: path + (query.map { "?\($0)" } ?? ""), headers: headers)
        request.headers = headers
        return request
    }

    /// `reference` (absolute, scheme-relative, absolute-path, query-only or relative) made
    /// absolute against this URL; nil when the result is not an http(s) URL.
    func resolve(_ reference: String) -> PreviewURL? {
        // Pages write spaces in URLs that browsers send as %20.
        let reference = reference.trimmingWhitespace().replacingSpaces()
        guard reference.utf8.count <= Self.maxLength else { return nil }
        if let schemeEnd = reference.firstIndex(of: ":"),
           reference[..<schemeEnd].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }),
           !reference[..<schemeEnd].isEmpty {
            return PreviewURL(reference)
        }
        if reference.hasPrefix("//") { return PreviewURL("\(scheme):\(reference)") }
        if reference.isEmpty || reference.hasPrefix("#") { return self }
        let origin = "\(scheme)://\(netloc)"
        if reference.hasPrefix("?") { return PreviewURL(origin + path + reference) }
        var referencePath = reference
        var suffix = ""
        if let cut = reference.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            referencePath = String(reference[..<cut])
            suffix = String(reference[cut...])
        }
        let merged: String
        if referencePath.hasPrefix("/") {
            merged = referencePath
        } else {
            let directory = path[...(path.lastIndex(of: "/") ?? path.startIndex)]
            merged = directory + referencePath
        }
        return PreviewURL(origin + Self.removingDotSegments(merged) + suffix)
    }

    /// RFC 3986 §5.2.4 on a path that starts with `/`.
    static func removingDotSegments(_ path: String) -> String {
        var output: [Substring] = []
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for (index, segment) in segments.enumerated() {
            let last = index == segments.count - 1
            switch segment {
            case ".":
                if last { output.append("") }
            case "..":
                if !output.isEmpty { output.removeLast() }
                if last { output.append("") }
            default:
                output.append(segment)
            }
        }
        return "/" + output.joined(separator: "/")
    }

    /// The part of the URL a blacklist entry's key names (`urlsplit` attribute names).
    func component(_ name: String) -> String? {
        switch name {
        case "scheme": return scheme
        case "netloc": return netloc
        case "hostname": return host
        case "port": return port.map(String.init)
        case "path": return path
        case "query": return query ?? ""
        case "fragment": return fragment ?? ""
        case "params": return ""
        case "username", "password": return nil
        default: return nil
        }
    }
}

/// One `media.url_preview.url_blacklist` entry: URL parts and the pattern each must match —
/// a regular expression when it starts with `^`, a glob (`*`, `?`) otherwise. A URL matching
/// every part of one entry is refused (403), as Synapse's `url_preview_url_blacklist`.
struct URLBlacklistEntry: Equatable, Sendable {
    var patterns: [String: String]

    static let components: Set<String> = ["scheme", "netloc", "hostname", "port", "path", "query", "fragment",
                                          "params", "username", "password"]

    func matches(_ url: PreviewURL) -> Bool {
        guard !patterns.isEmpty else { return false }
        for (name, pattern) in patterns {
            guard let value = url.component(name) else { return false }
            if pattern.hasPrefix("^") {
                guard let regex = try? Regex(pattern), (try? regex.prefixMatch(in: value)) != nil else { return false }
            } else {
                guard Self.glob(pattern, matches: value) else { return false }
            }
        }
        return true
    }

    /// `*` any run, `?` any one character, the rest literal; linear (no backtracking blow-up).
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let p = Array(pattern), t = Array(text)
        var pi = 0, ti = 0
        var star: Int? = nil, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if let s = star {
                pi = s + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

private extension String {
    func replacingSpaces() -> String {
        guard contains(" ") else { return self }
        return split(separator: " ", omittingEmptySubsequences: false).joined(separator: "%20")
    }
}
