import Matrix
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// Where and how to reach a homeserver: the address to connect to, the `Host` header to
/// send and the name TLS sends as SNI and checks the certificate against.
struct ResolvedServer: Sendable, Equatable {
    var host: String
    var port: Int
    var hostHeader: String
    /// nil for an IP literal (no SNI; the certificate is checked for the IP).
    var tlsServerName: String?
}

/// Server discovery (server-server API, "Resolving server names"): IP literals, explicit
/// ports, `/.well-known/matrix/server` (cached), SRV `_matrix-fed._tcp` then the deprecated
/// `_matrix._tcp`, then the host on port 8448. Owned by the `FederationClient`; the
/// well-known requests go through the same HTTP client, so its IP blacklist applies to them
/// and to their redirects.
final class ServerDiscovery: Sendable {
    struct CacheEntry: Sendable {
        /// The delegated server name, or nil when the server has no (valid) well-known.
        var delegated: String?
        var expiresAt: Int64
    }

    let client: HTTPClient
    /// `https` in production; tests serve well-known over plain HTTP on their own port.
    let wellKnownScheme: HTTPClientRequest.Scheme
    let wellKnownPort: Int?
    let srv: @Sendable (String) async -> [SRVRecord]
    let now: @Sendable () -> Int64
    let cache = Mutex<[String: CacheEntry]>([:])

    static let defaultPort = 8448
    /// Synapse's limits: 24 h when the answer does not say, at most 48 h, failures for 1 h,
    /// a body of at most 50 KiB, a few redirects.
    static let defaultCacheMS: Int64 = 24 * 3600 * 1000
    static let maxCacheMS: Int64 = 48 * 3600 * 1000
    static let failureCacheMS: Int64 = 3600 * 1000
    static let maxWellKnownBytes = 50 * 1024
    static let maxRedirects = 5
    static let maxCacheEntries = 10_000

    init(client: HTTPClient, wellKnownScheme: HTTPClientRequest.Scheme = .https, wellKnownPort: Int? = nil,
         srv: (@Sendable (String) async -> [SRVRecord])? = nil,
         now: @escaping @Sendable () -> Int64 = { Clock.nowMilliseconds() }) {
        self.client = client
        self.wellKnownScheme = wellKnownScheme
        self.wellKnownPort = wellKnownPort
        self.srv = srv ?? { name in (try? await client.srvRecords(name)).map { SRVRecord.ordered($0) } ?? [] }
        self.now = now
    }

    /// The places to try for `server`, in order (more than one only from SRV).
    func resolve(_ server: ServerName) async -> [ResolvedServer] {
        let host = String(server.host)
        // Step 1: an IP literal; Host is the server name as given, no SNI.
        if let ip = ipLiteral(host) {
            return [ResolvedServer(host: ip, port: Int(server.port ?? 8448), hostHeader: server.rawValue, tlsServerName: nil)]
        }
        // Step 2: a host name with an explicit port: no well-known, no SRV.
        if let port = server.port {
            return [ResolvedServer(host: host, port: Int(port), hostHeader: server.rawValue, tlsServerName: host)]
        }
        // Step 3: delegation through /.well-known/matrix/server.
        if let delegatedText = await wellKnown(host), let delegated = try? ServerName(parsing: delegatedText) {
            let dHost = String(delegated.host)
            if let ip = ipLiteral(dHost) {
                return [ResolvedServer(host: ip, port: Int(delegated.port ?? 8448), hostHeader: delegated.rawValue, tlsServerName: nil)]
            }
            if let port = delegated.port {
                return [ResolvedServer(host: dHost, port: Int(port), hostHeader: delegated.rawValue, tlsServerName: dHost)]
            }
            return await bySRV(dHost)
        }
        // Steps 4-6: SRV on the server name, then the name itself on 8448.
        return await bySRV(host)
    }

    /// SRV `_matrix-fed._tcp`, then `_matrix._tcp` (deprecated), then A/AAAA on 8448; Host
    /// and SNI stay `host` in every case (the spec: not the SRV target).
    private func bySRV(_ host: String) async -> [ResolvedServer] {
        for service in ["_matrix-fed._tcp.", "_matrix._tcp."] {
            let records = await srv(service + host)
            if !records.isEmpty {
                return records.prefix(8).map {
                    ResolvedServer(host: $0.target, port: Int($0.port), hostHeader: host, tlsServerName: host)
                }
            }
        }
        return [ResolvedServer(host: host, port: ServerDiscovery.defaultPort, hostHeader: host, tlsServerName: host)]
    }

    private func ipLiteral(_ host: String) -> String? {
        if host.hasPrefix("[") && host.hasSuffix("]") { return String(host.dropFirst().dropLast()) }
        return IPAddress(host) != nil ? host : nil
    }

    // MARK: Well-known

    /// The `m.server` of `host`'s well-known, from the cache or fetched.
    func wellKnown(_ host: String) async -> String? {
        let key = host.lowercased()
        let now = self.now()
        if let entry = cache.withLock({ $0[key] }), entry.expiresAt > now { return entry.delegated }
        let (delegated, lifetime) = await fetchWellKnown(host)
        store(key, CacheEntry(delegated: delegated, expiresAt: now + lifetime))
        return delegated
    }

    private func store(_ key: String, _ entry: CacheEntry) {
        let now = self.now()
        cache.withLock { cache in
            if cache.count >= ServerDiscovery.maxCacheEntries {
                cache = cache.filter { $0.value.expiresAt > now }
                // Still full: drop the entries closest to expiry.
                if cache.count >= ServerDiscovery.maxCacheEntries {
                    let drop = cache.sorted { $0.value.expiresAt < $1.value.expiresAt }.prefix(cache.count / 4 + 1)
                    for (k, _) in drop { cache.removeValue(forKey: k) }
                }
            }
            cache[key] = entry
        }
    }

    private func fetchWellKnown(_ host: String) async -> (String?, Int64) {
        var request = HTTPClientRequest(method: .get, scheme: wellKnownScheme, host: host, port: wellKnownPort,
                                        target: "/.well-known/matrix/server")
        request.maxResponseBytes = ServerDiscovery.maxWellKnownBytes
        guard let response = try? await client.buffered(request, maxRedirects: ServerDiscovery.maxRedirects),
              response.status == 200,
              let json = try? JSON.parse(response.body), let server = json["m.server"]?.stringValue,
              (try? ServerName(parsing: server)) != nil else {
            return (nil, ServerDiscovery.failureCacheMS)
        }
        return (server, ServerDiscovery.cacheLifetime(response.headers, now: now()))
    }

    /// How long a well-known answer is kept: `Cache-Control: max-age`, else `Expires`, else
    /// 24 h; at most 48 h; `no-store`/`no-cache` keep it for no time.
    static func cacheLifetime(_ headers: HTTPHeaders, now: Int64) -> Int64 {
        if let control = headers["Cache-Control"] {
            for directive in control.split(separator: ",") {
                let d = trimmed(directive).lowercased()
                if d == "no-store" || d == "no-cache" { return 0 }
                if d.hasPrefix("max-age="), d.count <= 20, let seconds = Int64(d.dropFirst(8)), seconds >= 0 {
                    return min(seconds * 1000, maxCacheMS)
                }
            }
        }
        if let expires = headers["Expires"], let at = httpDate(expires) {
            return max(0, min(at - now, maxCacheMS))
        }
        return defaultCacheMS
    }

    private static func trimmed(_ s: Substring) -> Substring {
        var s = s
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }

    /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix milliseconds.
    static func httpDate(_ text: String) -> Int64? {
        guard text.utf8.count <= 64 else { return nil }
        let parts = text.split(separator: " ")
        let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), (1...31).contains(day),
              let month = months.firstIndex(of: parts[2].lowercased()), let year = Int(parts[3]), (1970...9999).contains(year)
        else { return nil }
        let time = parts[4].split(separator: ":")
        guard time.count == 3, let h = Int(time[0]), let m = Int(time[1]), let sec = Int(time[2]),
              (0...23).contains(h), (0...59).contains(m), (0...60).contains(sec) else { return nil }
        // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
        let y = month < 2 ? year - 1 : year
        let era = y / 400
        let yoe = y - era * 400
        let mp = (month + 10) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Int64(((days * 24 + h) * 60 + m) * 60 + sec) * 1000
    }
}

