import Logging
import Matrix
import Persistence
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// Starts everything a configuration describes (data directory, signing key, store, HTTP
/// listeners) and runs until SIGTERM/SIGINT or `stop()`.
final class MyelinServer: Sendable {
    let configuration: Configuration
    let app: MyelinApp
    let servers: [HTTPServer]
    let database: Database
    let logger: Logger
    /// Idle sweeps of room actors and notifiers, typing expiry.
    let maintenance: Task<Void, Never>
    /// Sets offline the users who stopped syncing.
    let presenceSweep: Task<Void, Never>
    /// Last-seen flushes and idle sweeps of the session actors.
    let sessionUpkeep: Task<Void, Never>

    /// Prepares the data directory and signing key, opens the store (applying migrations)
    /// and builds the listeners; nothing listens until `start()`.
    init(configuration: Configuration, logger: Logger, handlesSignals: Bool = true) async throws {
        self.configuration = configuration
        self.logger = logger
        try Self.makeDirectory(configuration.dataDirectory)
        let key = try SigningKeyFile.loadOrGenerate(path: configuration.resolvedSigningKeyPath)
        database = try await Database.open(configuration.databaseConfiguration, logger: logger)
        let accounts = try await Accounts(configuration: configuration, database: database, logger: logger)
        let roomService = try await RoomService(configuration: configuration, database: database, signingKey: key)
        let keys = try await KeyService(database: database, fanout: roomService.fanout, federation: roomService.federation,
                                        localServer: configuration.serverName)
        let app = MyelinApp(configuration: configuration, signingKey: key, database: database, accounts: accounts,
                            roomService: roomService, keys: keys, logger: logger)
        self.app = app
        try await app.media.prepare()
        try await app.security.start()
        try await app.accounts.rateLimiter.loadOverrides(from: database.security)
        if configuration.federation.enabled {
            // Joins, invites, key fetches and the destinations' transactions go out through
            // the real client (discovery, TLS, X-Matrix), built on the first request.
            app.connectFederation(app.federationClient)
            roomService.federation.connect(app.federationClient)
            app.connectRemoteMedia()
        }
        // Push rules per event for local members, and the pushers' queues (docs/push.md).
        let pushRules = app.pushRules
        roomService.push.connectRules(cached: { pushRules.cachedRuleSet(for: $0) }, load: { try await pushRules.ruleSet(for: $0) })
        await roomService.push.start()
        maintenance = Task.detached { await roomService.runMaintenance() }
        sessionUpkeep = Task.detached {
            await accounts.sessions.runUpkeep(flushEvery: Accounts.lastSeenFlushInterval,
                                              sweepEvery: Accounts.lastSeenFlushInterval)
        }
        presenceSweep = Task.detached { [configuration] in
            guard configuration.presence.enabled else { return }
            await app.sync.presence.run(app)
        }
        // One worker pool for every listener, when handlers run on workers.
        let workers = configuration.transport.handlers == .workers ? WorkerPool(threads: configuration.transport.workers) : nil
        let contexts = try configuration.listeners.enumerated().map { index, listener in
            try listener.tls.map { files throws(ConfigurationError) in try Self.tlsContext(files, path: "listeners[\(index)].tls") }
        }
        servers = configuration.listeners.enumerated().map { index, listener in
            var transport = configuration.transport
            transport.host = listener.host
            transport.port = listener.port
            // The per-address connection limit never applies to a reverse proxy: loopback
            // (a proxy on this host, and the load harness) and the trusted proxies.
            transport.connectionLimitExemptsLoopback = true
            transport.connectionLimitExemptPeers = configuration.rateLimits.trustedProxies
            return HTTPServer(configuration: transport, responder: app, logger: logger,
                              handlesSignals: handlesSignals && index == 0, commonHeaders: MyelinApp.corsHeaders,
                              workers: workers, tls: contexts[index], addressFilter: app.security.addressFilter)
        }
    }

    static func tlsContext(_ files: Configuration.TLSFiles, path: String) throws(ConfigurationError) -> TLSContext {
        do {
            return try TLSContext.server(certificateChainFile: files.certificate, privateKeyFile: files.privateKey)
        } catch {
            throw ConfigurationError(path: path, message: error.description)
        }
    }

    /// SIGHUP: every TLS listener re-reads its certificate and key; new connections use them.
    /// A listener whose files fail to load keeps its current ones (and the failure is logged).
    func reloadTLS() {
        for (index, (listener, server)) in zip(configuration.listeners, servers).enumerated() {
            guard let files = listener.tls else { continue }
            do {
                server.replaceTLSContext(try Self.tlsContext(files, path: "listeners[\(index)].tls"))
                logger.info("reloaded the TLS certificate of \(listener.host):\(listener.port)")
            } catch {
                logger.error("TLS reload failed, keeping the current certificate: \(error)")
            }
        }
    }

    /// Binds every listener; returns the ports bound (useful with port 0).
    @discardableResult
    func start() async throws -> [Int] {
        app.openConnections.withLock { counters in
            counters = servers.map { server in { server.openConnections } }
        }
        servers[0].onHangup { [weak self] in self?.reloadTLS() }
        var ports: [Int] = []
        for server in servers { ports.append(try await server.start()) }
        logger.info("Myelin \(MyelinVersion.string) serving \(configuration.serverName) on \(zip(configuration.listeners, ports).map { "\($0.tls == nil ? "http" : "https")://\($0.host):\($1)" }.joined(separator: ", "))")
        return ports
    }

    /// Waits until the first listener stops (signal or `stop()`), then stops the others.
    func waitUntilStopped() async {
        await servers[0].waitUntilStopped()
        for server in servers.dropFirst() { server.shutdown() }
        for server in servers.dropFirst() { await server.waitUntilStopped() }
        app.federationClient.shutdown()
        app.urlPreviews.shutdown()
        app.disconnectRemoteMedia()
        maintenance.cancel()
        presenceSweep.cancel()
        await app.roomService.rooms.registry.deactivateAll()
        app.roomService.push.stop()
        await app.roomService.push.deliveries.registry.deactivateAll()
        await app.roomService.federation.registry.deactivateAll()
        sessionUpkeep.cancel()
        await sessionUpkeep.value
        await app.accounts.sessions.shutdown()
        app.accessLog?.flush()
        await app.security.stop()
        await database.close()
        logger.info("stopped")
    }

    func stop() {
        for server in servers { server.shutdown() }
    }

    static func makeDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part + "/"
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw ConfigurationError(path: "data_dir", message: "cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }
}
