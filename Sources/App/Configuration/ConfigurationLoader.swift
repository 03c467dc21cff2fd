import Matrix
import Persistence
import Transport
#if canImport(Glibc)
import Glibc
#endif

/// A configuration error, with the key path it concerns (`transport.loops`).
struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    var path: String
    var message: String
    var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Reads the YAML configuration strictly: an unknown key or a value of the wrong kind is an
/// error naming its key path, so that a typo never silently falls back to a default.
enum ConfigurationLoader {
    static func load(yaml text: String) throws -> Configuration {
        var configuration = Configuration()
        let root: YAMLNode?
        do {
            root = try YAMLParser.parse(text)
        } catch {
            throw ConfigurationError(path: "", message: "not valid YAML: \(error)")
        }
        guard let root else { return configuration }  // an empty file: all defaults
        let top = try Section(root, path: "")
        try top.string("server_name") { configuration.serverName = try ServerNameCheck.validate($0, path: "server_name") }
        try top.string("data_dir") { configuration.dataDirectory = $0 }
        try top.string("signing_key_path") { configuration.signingKeyPath = $0 }
        try top.string("default_room_version") {
            guard (try? RoomVersion.named($0)) != nil else {
                throw ConfigurationError(path: "default_room_version", message: "'\($0.prefix(32))' is not a supported room version")
            }
            configuration.defaultRoomVersion = $0
        }
        try readListenersAndDatabase(top, &configuration)
        try readTransport(top, &configuration)
        try readActors(top, &configuration)
        try readAccounts(top, &configuration)
        try readRateLimits(top, &configuration)
        try readSecurity(top, &configuration)
        try readServices(top, &configuration)
        try readVoice(top, &configuration)
        try readVoIP(top, &configuration)
        try top.finish()
        return configuration
    }

    private static func readListenersAndDatabase(_ top: Section, _ configuration: inout Configuration) throws {
        try top.sequence("listeners") { items in
            configuration.listeners = try items.map { item in
                var listener = Configuration.Listener()
                let section = try item.mapping()
                try section.string("host") { listener.host = $0 }
                try section.int("port", range: 0...65535) { listener.port = $0 }
                try section.section("tls") { listener.tls = try readTLS($0) }
                try section.finish()
                return listener
            }
            if configuration.listeners.isEmpty { throw ConfigurationError(path: "listeners", message: "at least one listener is needed") }
        }
        try top.section("database") { db in
            try db.string("backend") {
                guard let backend = Configuration.DatabaseBackend(rawValue: $0) else {
                    throw ConfigurationError(path: "database.backend", message: "must be sqlite or postgres, not '\($0)'")
                }
                configuration.database.backend = backend
            }
            try db.section("sqlite") { s in
                try s.string("path") { configuration.database.sqlitePath = $0 }
                try s.int("readers", range: 1...64) { configuration.database.sqliteReaders = $0 }
                try s.int("checkpoint_pages", range: 0...SQLiteOptions.checkpointPagesRange.upperBound) { pages in
                    guard pages == 0 || SQLiteOptions.checkpointPagesRange.contains(pages) else {
                        throw ConfigurationError(path: s.keyPath("checkpoint_pages"), message:
                            "must be 0 (SQLite's automatic checkpoint) or \(SQLiteOptions.checkpointPagesRange.lowerBound)...\(SQLiteOptions.checkpointPagesRange.upperBound)")
                    }
                    configuration.database.sqliteOptions.checkpointPages = pages
                }
                try s.string("synchronous") {
                    guard let value = SQLiteOptions.Synchronous(rawValue: $0) else {
                        throw ConfigurationError(path: s.keyPath("synchronous"), message: "must be normal or full, not '\($0)'")
                    }
                    configuration.database.sqliteOptions.synchronous = value
                }
            }
            try db.section("postgres") { p in
                try p.string("conninfo") { configuration.database.postgresConninfo = $0 }
                try p.int("pool_size", range: 1...1000) { configuration.database.postgresPoolSize = $0 }
            }
        }
    }

    /// `tls: {certificate, private_key}`: both required and readable, so that a typo stops
    /// the server at load rather than at the first handshake.
    private static func readTLS(_ t: Section) throws -> Configuration.TLSFiles {
        var certificate = ""
        var privateKey = ""
        try t.string("certificate") { certificate = $0 }
        try t.string("private_key") { privateKey = $0 }
        try t.finish()
        for (key, path) in [("certificate", certificate), ("private_key", privateKey)] {
            if path.isEmpty { throw ConfigurationError(path: t.keyPath(key), message: "a TLS listener needs a \(key) file (PEM)") }
            if access(path, R_OK) != 0 {
                throw ConfigurationError(path: t.keyPath(key), message: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
        }
        return Configuration.TLSFiles(certificate: certificate, privateKey: privateKey)
    }

    private static func readTransport(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("transport") { t in
            try t.int("loops", range: 0...256) { configuration.transport.loops = $0 == 0 ? TransportConfiguration.defaultLoopCount : $0 }
            try t.int("workers", range: 0...256) { configuration.transport.workers = $0 == 0 ? TransportConfiguration.defaultLoopCount : $0 }
            try t.string("handlers") { text in
                guard let handlers = TransportConfiguration.HandlerThreads(rawValue: text) else {
                    throw ConfigurationError(path: t.keyPath("handlers"), message: "expected loops or workers, not '\(text)'")
                }
                configuration.transport.handlers = handlers
            }
            try t.int("backlog", range: 1...65535) { configuration.transport.backlog = Int32($0) }
            try t.int("max_header_bytes", range: 1024...(1 << 20)) { configuration.transport.maxHeaderBytes = $0 }
            try t.int("max_json_body_bytes", range: 1024...(1 << 30)) { configuration.transport.maxJSONBodyBytes = $0 }
            try t.int("max_media_body_bytes", range: 1024...(1 << 40)) { configuration.transport.maxMediaBodyBytes = $0 }
            try t.int("max_connections", range: 1...10_000_000) { configuration.transport.maxConnections = $0 }
            try t.int("max_connections_per_ip", range: 0...10_000_000) { configuration.transport.maxConnectionsPerIP = $0 }
            try t.int("header_read_timeout_ms", range: 100...3_600_000) { configuration.transport.headerReadTimeoutMs = UInt64($0) }
            try t.int("body_read_timeout_ms", range: 100...3_600_000) { configuration.transport.bodyReadTimeoutMs = UInt64($0) }
            try t.int("min_body_bytes_per_second", range: 0...(1 << 30)) { configuration.transport.minBodyBytesPerSecond = $0 }
            try t.int("idle_timeout_ms", range: 100...3_600_000) { configuration.transport.idleTimeoutMs = UInt64($0) }
            try t.int("shutdown_grace_ms", range: 0...3_600_000) { configuration.transport.shutdownGraceMs = UInt64($0) }
            try t.int("max_pipelined", range: 1...1024) { configuration.transport.maxPipelined = $0 }
            try t.int("max_unsent_output_bytes", range: 16_384...(1 << 30)) { configuration.transport.maxUnsentOutputBytes = $0 }
        }
    }

    private static func readActors(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("actors") { a in
            func pool(_ key: String, _ target: WritableKeyPath<Configuration.Actors, Configuration.ActorPool>) throws {
                try a.section(key) { p in
                    try p.int("max_resident", range: 1...100_000_000) { configuration.actors[keyPath: target].maxResident = $0 }
                    try p.int("idle_timeout_s", range: 1...86_400 * 7) { configuration.actors[keyPath: target].idleTimeoutSeconds = $0 }
                }
            }
            try pool("rooms", \.rooms)
            try pool("sessions", \.sessions)
            try pool("notifiers", \.notifiers)
            try pool("federation_destinations", \.federationDestinations)
            try pool("media_uploads", \.mediaUploads)
            try a.int("room_recent_events", range: 0...100_000) { configuration.actors.roomRecentEvents = $0 }
        }
    }

    private static func readAccounts(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("registration") { r in
            try r.bool("enabled") { configuration.registration.enabled = $0 }
            try r.optionalString("registration_token") {
                if let token = $0, token.isEmpty || token.utf8.count > 64 {
                    throw ConfigurationError(path: "registration.registration_token", message: "must be 1 to 64 characters")
                }
                configuration.registration.registrationToken = $0
            }
            try r.optionalString("shared_secret") { configuration.registration.sharedSecret = $0 }
            try r.bool("allow_guests") { configuration.registration.allowGuests = $0 }
            try r.int("refreshable_access_token_lifetime_ms", range: 1000...(1 << 40)) {
                configuration.registration.refreshableAccessTokenLifetimeMs = $0
            }
            try r.int("refresh_token_lifetime_ms", range: 0...(1 << 40)) { configuration.registration.refreshTokenLifetimeMs = $0 }
        }
        try top.section("presence") { p in
            try p.bool("enabled") { configuration.presence.enabled = $0 }
        }
        try top.section("user_directory") { u in
            try u.bool("search_all_users") { configuration.userDirectory.searchAllUsers = $0 }
        }
    }

    private static func readRateLimits(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("rate_limits") { r in
            try r.bool("enabled") { configuration.rateLimits.enabled = $0 }
            func limit(_ key: String, _ target: WritableKeyPath<Configuration.RateLimits, Configuration.RateLimit>) throws {
                try r.section(key) { l in
                    try l.double("per_second", range: 0.0001...1_000_000) { configuration.rateLimits[keyPath: target].perSecond = $0 }
                    try l.int("burst", range: 1...1_000_000) { configuration.rateLimits[keyPath: target].burst = $0 }
                }
            }
            try limit("messages", \.messages)
            try limit("login", \.login)
            try limit("registration", \.registration)
            try limit("ephemeral", \.ephemeral)
            try limit("presence", \.presence)
            try limit("to_device", \.toDevice)
            try limit("profile", \.profile)
            try limit("key_uploads", \.keyUploads)
            try r.sequence("trusted_proxies") { items in
                configuration.rateLimits.trustedProxies = try items.map { try $0.scalarString() }
            }
        }
    }

    private static func readSecurity(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("security") { s in
            try s.int("event_log_capacity", range: 100...10_000_000) { configuration.security.eventLogCapacity = $0 }
            try s.int("reputation_half_life_seconds", range: 1...(365 * 86400)) { configuration.security.reputationHalfLifeSeconds = $0 }
            try s.int("auto_block_score", range: 0...100) { configuration.security.autoBlockScore = $0 }
            try s.int("auto_block_duration_seconds", range: 1...(365 * 86400)) { configuration.security.autoBlockDurationSeconds = $0 }
            try s.bool("registration_requires_token") { configuration.security.registrationRequiresToken = $0 }
            try s.string("password_hash_cost") { text in
                guard let cost = Sodium.PasswordHash.Cost(rawValue: text) else {
                    throw ConfigurationError(path: s.keyPath("password_hash_cost"),
                                             message: "expected minimum, interactive, moderate or sensitive, not '\(text)'")
                }
                configuration.security.passwordHashCost = cost
            }
        }
    }

    private static func readServices(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("media") { m in
            try m.string("store_path") { configuration.media.storePath = $0 }
            try m.int("max_upload_bytes", range: 1...(1 << 40)) { configuration.media.maxUploadBytes = $0 }
            try m.bool("thumbnails") { configuration.media.thumbnails = $0 }
            try m.bool("enable_authenticated_media") { configuration.media.enableAuthenticatedMedia = $0 }
            try m.int("max_pending_uploads", range: 1...10_000) { configuration.media.maxPendingUploads = $0 }
            try m.int("pending_upload_expiry_ms", range: 1_000...(30 * 86_400_000)) {
                configuration.media.pendingUploadExpiryMs = $0
            }
            try m.section("url_preview") { try readURLPreview($0, &configuration.media.urlPreview) }
            try m.int("remote_cache_max_bytes", range: 0...(1 << 50)) { configuration.media.remoteCacheMaxBytes = $0 }
            try readThumbnailing(m, &configuration.media.thumbnailing)
        }
        try readServerNotices(top, &configuration)
        try top.section("push") { p in
            try p.bool("include_content") { configuration.push.includeContent = $0 }
            try p.int("notification_retention_days", range: 1...3650) { configuration.push.notificationRetentionDays = $0 }
            try p.int("backoff_initial_ms", range: 1...86_400_000) { configuration.push.backoffInitialMs = $0 }
            try p.int("backoff_max_ms", range: 1...604_800_000) { configuration.push.backoffMaxMs = $0 }
            try p.int("max_queued_per_pusher", range: 1...100_000) { configuration.push.maxQueuedPerPusher = $0 }
        }
        try top.section("federation") { f in
            try f.bool("enabled") { configuration.federation.enabled = $0 }
            try f.int("backoff_initial_ms", range: 1...86_400_000) { configuration.federation.backoffInitialMs = $0 }
            try f.int("backoff_max_ms", range: 1...604_800_000) { configuration.federation.backoffMaxMs = $0 }
            try f.sequence("trusted_key_servers") { items in
                configuration.federation.trustedKeyServers = try items.map {
                    try ServerNameCheck.validate(try $0.scalarString(), path: "federation.trusted_key_servers")
                }
            }
            try f.bool("verify_certificates") { configuration.federation.verifyCertificates = $0 }
            try f.sequence("extra_ca_files") { items in
                configuration.federation.extraCAFiles = try items.map { try $0.scalarString() }
            }
            try f.sequence("ip_range_whitelist") { items in
                configuration.federation.ipRangeWhitelist = try items.map { try $0.scalarString() }
                for range in configuration.federation.ipRangeWhitelist where IPRange(range) == nil {
                    throw ConfigurationError(path: "federation.ip_range_whitelist", message: "\(range.prefix(64)) is not a CIDR range")
                }
            }
            try f.sequence("domain_whitelist") { items in
                configuration.federation.domainWhitelist = try items.map { try $0.scalarString() }
            }
        }
        try top.section("well_known") { w in
            try w.string("client_base_url") { configuration.wellKnown.clientBaseURL = $0 }
            try w.string("server") { configuration.wellKnown.server = $0 }
        }
        try top.section("logging") { l in
            try l.string("level") {
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                guard levels.contains($0) else {
                    throw ConfigurationError(path: "logging.level", message: "must be one of \(levels.joined(separator: ", "))")
                }
                configuration.logging.level = $0
            }
            try l.bool("access_log") { configuration.logging.accessLog = $0 }
        }
        try top.section("metrics") { m in
            try m.bool("enabled") { configuration.metrics.enabled = $0 }
            try m.string("path") { configuration.metrics.path = $0 }
        }
        try top.section("admin_page") { a in
            try a.bool("enabled") { configuration.adminPage.enabled = $0 }
            try a.string("directory") { configuration.adminPage.directory = $0 }
        }
    }
}

/// Server names in configuration: a host name or IP literal, with an optional port.
enum ServerNameCheck {
    static func validate(_ name: String, path: String) throws -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:[]")
        guard !name.isEmpty, name.count <= 255, name.allSatisfy({ allowed.contains($0) }),
              (try? ServerName(parsing: name)) != nil else {
            throw ConfigurationError(path: path, message: "'\(name)' is not a valid server name")
        }
        return name
    }
}

/// One YAML mapping being read: tracks which keys were used so that `finish()` can refuse
/// the rest with their full key paths.
final class Section {
    let path: String
    var entries: [(key: String, value: YAMLNode)] = []
    var used: Set<String> = []

    init(_ node: YAMLNode, path: String) throws {
        self.path = path
        guard let mapping = node.mapping else {
            throw ConfigurationError(path: path, message: "expected a mapping of keys to values")
        }
        for entry in mapping { entries.append((entry.key, entry.value)) }
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func value(_ key: String) -> YAMLNode? {
        guard let entry = entries.first(where: { $0.key == key }) else { return nil }
        used.insert(key)
        return entry.value.isNull ? nil : entry.value
    }

    private func scalar(_ key: String) throws -> String? {
        guard let node = value(key) else { return nil }
        guard case .scalar(let s, _) = node else { throw ConfigurationError(path: keyPath(key), message: "expected a single value") }
        return s
    }

    func string(_ key: String, _ apply: (String) throws -> Void) throws {
        if let s = try scalar(key) { try apply(s) }
    }

    func optionalString(_ key: String, _ apply: (String?) throws -> Void) throws {
        guard entries.contains(where: { $0.key == key }) else { return }
        try apply(try scalar(key))
    }

    func int(_ key: String, range: ClosedRange<Int>, _ apply: (Int) throws -> Void) throws {
        guard let s = try scalar(key) else { return }
        guard let n = Int(s.replacingUnderscores()) else {
            throw ConfigurationError(path: keyPath(key), message: "expected an integer, not '\(s)'")
        }
        guard range.contains(n) else {
            throw ConfigurationError(path: keyPath(key), message: "\(n) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        try apply(n)
    }

    func double(_ key: String, range: ClosedRange<Double>, _ apply: (Double) throws -> Void) throws {
        guard let s = try scalar(key) else { return }
        guard let n = Double(s) else { throw ConfigurationError(path: keyPath(key), message: "expected a number, not '\(s)'") }
        guard range.contains(n) else { throw ConfigurationError(path: keyPath(key), message: "\(n) is out of range") }
        try apply(n)
    }

    func bool(_ key: String, _ apply: (Bool) throws -> Void) throws {
        guard let s = try scalar(key) else { return }
        switch s.lowercased() {
        case "true", "yes", "on": try apply(true)
        case "false", "no", "off": try apply(false)
        default: throw ConfigurationError(path: keyPath(key), message: "expected true or false, not '\(s)'")
        }
    }

    func section(_ key: String, _ read: (Section) throws -> Void) throws {
        guard let node = value(key) else { return }
        let inner = try Section(node, path: keyPath(key))
        try read(inner)
        try inner.finish()
    }

    func sequence(_ key: String, _ read: ([Item]) throws -> Void) throws {
        guard let node = value(key) else { return }
        guard let items = node.sequence else { throw ConfigurationError(path: keyPath(key), message: "expected a list") }
        try read(items.enumerated().map { Item(node: $0.element, path: "\(keyPath(key))[\($0.offset)]") })
    }

    func finish() throws {
        for entry in entries where !used.contains(entry.key) {
            throw ConfigurationError(path: keyPath(entry.key), message: "unknown key")
        }
    }

    /// An element of a YAML list.
    struct Item {
        let node: YAMLNode
        let path: String

        func scalarString() throws -> String {
            guard case .scalar(let s, _) = node else { throw ConfigurationError(path: path, message: "expected a single value") }
            return s
        }

        func mapping() throws -> Section { try Section(node, path: path) }
    }
}

extension String {
    func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
