import Transport

extension Configuration {
    /// `media.url_preview`: whether `preview_url` fetches pages, and the limits it fetches
    /// them under (read by `URLPreviewer`). Off by default, as in Synapse: a server that
    /// previews URLs fetches what any user asks it to.
    struct URLPreview: Sendable, Equatable {
        var enabled = false
        /// Addresses never connected to (checked after name resolution, redirects included).
        var ipRangeBlacklist: [String] = URLPreview.defaultBlacklist
        /// Ranges allowed despite the blacklist.
        var ipRangeWhitelist: [String] = []
        var urlBlacklist: [URLBlacklistEntry] = []
        /// Bytes of one page or image; past it the fetch stops (502 `M_TOO_LARGE`).
        var maxSpiderSize = 10 << 20
        /// The whole preview: every redirect, the page and its image.
        var timeoutSeconds = 10
        var acceptLanguage = ["en"]

        /// Synapse's recommended `url_preview_ip_range_blacklist`: loopback, private
        /// (RFC 1918), CGNAT, link-local, documentation, benchmarking, multicast and
        /// reserved ranges, IPv6 unique-local, link-local, site-local and multicast.
        static let defaultBlacklist = [
            "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24",
            "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24",
            "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "0.0.0.0/8",
            "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10", "64:ff9b::/96", "100::/64",
        ]

        /// Never connectable whatever the configuration says (Synapse adds them too).
        static let alwaysBlocked = ["0.0.0.0/32", "::/128"]

        /// The HTTP client's blacklist (the loader validated every range).
        var blacklist: IPBlacklist {
            IPBlacklist(blocked: (ipRangeBlacklist + Self.alwaysBlocked).compactMap { IPRange($0) },
                        allowed: ipRangeWhitelist.compactMap { IPRange($0) })
        }
    }
}

extension ConfigurationLoader {
    /// Reads `media.url_preview` strictly (unknown keys, bad ranges, bad patterns refused).
    static func readURLPreview(_ u: Section, _ preview: inout Configuration.URLPreview) throws {
        try u.bool("enabled") { preview.enabled = $0 }
        func ranges(_ key: String) throws -> [String]? {
            var out: [String]?
            try u.sequence(key) { items in
                out = try items.map { try $0.scalarString() }
                for range in out! where IPRange(range) == nil {
                    throw ConfigurationError(path: u.keyPath(key), message: "\(range.prefix(64)) is not a CIDR range")
                }
            }
            return out
        }
        if let blocked = try ranges("ip_range_blacklist") { preview.ipRangeBlacklist = blocked }
        if let allowed = try ranges("ip_range_whitelist") { preview.ipRangeWhitelist = allowed }
        try u.sequence("url_blacklist") { items in
            preview.urlBlacklist = try items.map { item in
                let entry = try item.mapping()
                var patterns: [String: String] = [:]
                for name in URLBlacklistEntry.components.sorted() {
                    try entry.string(name) { pattern in
                        if pattern.hasPrefix("^"), (try? Regex(pattern)) == nil {
                            throw ConfigurationError(path: entry.keyPath(name), message: "not a valid regular expression")
                        }
                        patterns[name] = pattern
                    }
                }
                try entry.finish()
                guard !patterns.isEmpty else { throw ConfigurationError(path: item.path, message: "an entry needs at least one URL part") }
                return URLBlacklistEntry(patterns: patterns)
            }
        }
        try u.int("max_spider_size", range: 1024...(1 << 30)) { preview.maxSpiderSize = $0 }
        try u.int("timeout_seconds", range: 1...300) { preview.timeoutSeconds = $0 }
        try u.sequence("accept_language") { items in
            preview.acceptLanguage = try items.map {
                let tag = try $0.scalarString()
                guard !tag.isEmpty, tag.utf8.count <= 64,
                      tag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-*;=.".contains($0)) }) else {
                    throw ConfigurationError(path: $0.path, message: "not a language tag")
                }
                return tag
            }
        }
    }
}

extension ConfigurationTemplate {
    /// The `url_preview:` block of the `media:` section.
    static func urlPreview(_ d: Configuration) -> String {
        let p = d.media.urlPreview
        func list(_ items: [String]) -> String { "[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        return """
          # GET .../preview_url: the server fetches a page a user names and describes it (Open
          # Graph). Off by default; when off the endpoint answers 404 M_UNRECOGNIZED.
          url_preview:
            enabled: \(p.enabled)
            # never connected to, checked on every resolved address and every redirect
            ip_range_blacklist: \(list(p.ipRangeBlacklist))
            # allowed despite the blacklist (e.g. an intranet's wiki)
            ip_range_whitelist: \(list(p.ipRangeWhitelist))
            # entries of URL parts (scheme, netloc, hostname, port, path, query, fragment), each a
            # glob or a ^regex; a URL matching all parts of one entry is refused with 403
            url_blacklist: []
            # bytes of one page or image; a larger one answers 502 M_TOO_LARGE
            max_spider_size: \(p.maxSpiderSize)
            # the whole preview: redirects, the page and its image
            timeout_seconds: \(p.timeoutSeconds)
            accept_language: \(list(p.acceptLanguage))
        """
    }
}
