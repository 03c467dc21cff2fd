import Actors
import Logging
import Matrix
import Persistence
import Synchronization
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The application as the transport sees it: routes each request to its handler, renders
/// Matrix errors, adds CORS headers, answers preflights, and writes the access log.
/// Owned by `MyelinServer`; called on the concurrency pool for every request.
final class MyelinApp: HTTPResponder {
    let configuration: Configuration
    let signingKey: SigningKey
    let database: Database
    let accounts: Accounts
    let roomService: RoomService
    let keys: KeyService
    /// Other servers' verify keys (federation request and PDU signatures, the notary).
    let keyRing: ServerKeyRing
    /// Outbound federation for the room handlers (joins, invites, leaves, missing events).
    let federationLink = FederationLink()
    /// History fetched from other servers for `/messages` (runs coalesced per room).
    let backfill = FederationBackfill()
    /// `preview_url`: fetching, describing and caching pages (`Media/Preview/`).
    let urlPreviews: URLPreviewer
    /// Outbound federation requests (discovery, X-Matrix signing, the HTTP client).
    let federationClient: LazyFederationClient
    let logger: Logger
    /// The newest log lines, for the admin `logs` endpoint (`Admin/LogRing.swift`).
    let logRing: LogRing
    /// The browser admin page's files, when `admin_page.enabled` (`Admin/AdminPage.swift`).
    let adminPage: AdminPage
    /// One line per request when `logging.access_log` is on and the level shows `info`.
    let accessLog: AccessLog?
    let startedAt: Int64
    let metrics = Metrics()
    /// What `/sync` keeps between requests (response sharing, filters, unread counts,
    /// presence of syncing users).
    let sync: SyncService
    /// Open connections across the listeners, for the metrics page (set once they exist).
    let openConnections = Mutex<[@Sendable () -> Int]>([])
    let router: Router
    /// Uploads, downloads and the content store (`Media/`).
    let media: MediaRepository
    /// The voice-message extension (`Voice/`).
    let voice: VoiceMessages
    /// Thumbnails of the stored images (`Media/MediaThumbnails.swift`).
    let thumbnails: MediaThumbnails
    /// Every user's effective push rules, cached (`Push/PushRulesService.swift`).
    let pushRules: PushRulesService
    /// IP blocks, reputation per address and the security event log (`Admin/`).
    let security: SecurityService

    init(configuration: Configuration, signingKey: SigningKey, database: Database, accounts: Accounts,
         roomService: RoomService, keys: KeyService, logger: Logger) {
        self.configuration = configuration
        self.signingKey = signingKey
        self.database = database
        self.accounts = accounts
        self.roomService = roomService
        self.keys = keys
        urlPreviews = URLPreviewer(configuration: configuration.media.urlPreview, serverName: configuration.serverName,
                                   store: database.urlPreviews)
        // The loader validated the name (`ServerNameCheck`).
        keyRing = ServerKeyRing(serverName: try! ServerName(parsing: configuration.serverName), signingKey: signingKey,
                                store: ServerKeyStore(database: database),
                                notaries: configuration.federation.trustedKeyServers.compactMap { try? ServerName(parsing: $0) })
        media = MediaRepository(configuration: configuration, database: database)
        voice = VoiceMessages(configuration: configuration)
        thumbnails = MediaThumbnails(configuration: configuration, database: database)
        pushRules = PushRulesService(store: database.accountData)
        security = SecurityService(configuration: configuration.security, trustedProxies: configuration.rateLimits.trustedProxies,
                                   database: database, logger: logger, rateLimiter: accounts.rateLimiter)
        federationClient = LazyFederationClient { try FederationClient(configuration: configuration, signingKey: signingKey) }
        // The admin `logs` endpoint reads the ring this logger writes to (the process's
        // when `Serve` installed it; otherwise one of this app's, fed by this logger).
        if let ring = LogRing.ring(of: logger) {
            logRing = ring
            self.logger = logger
        } else {
            logRing = LogRing()
            self.logger = logRing.attach(to: logger, level: Logger.Level(rawValue: configuration.logging.level) ?? .info)
        }
        adminPage = AdminPage(configuration: configuration.adminPage)
        if let problem = adminPage.problem { self.logger.error("admin page: \(problem)") }
        sync = SyncService(rooms: roomService, accounts: accounts, keys: keys)
        accessLog = configuration.logging.accessLog && logger.logLevel <= .info ? AccessLog() : nil
        startedAt = Clock.nowMilliseconds()
        let metricsPath = configuration.metrics.enabled ? configuration.metrics.path : nil
        router = Router { routes in
            Endpoints.register(&routes)
            KeyNotary.register(&routes)
            if let metricsPath {
                routes.get(metricsPath) { context in
                    let app = context.app
                    let open = app.openConnections.withLock { $0.reduce(0) { $0 + $1() } }
                    let runtime = await AdminRuntime.prometheus(app) + app.database.metrics.prometheus()
                    return HTTPResponse(contentType: "text/plain; version=0.0.4",
                                        bytes: Array(app.metrics.render(openConnections: open, runtime: runtime).utf8))
                }
            }
        }
        let thumbnails = self.thumbnails
        media.onContentRemoved { sha256 in try? await thumbnails.remove(sha256: sha256) }
    }

    // MARK: HTTPResponder

    func bodyPolicy(for head: HTTPRequestHead) -> BodyPolicy {
        if head.method == .post || head.method == .put {
            let path = head.path.utf8
            if path.starts(with: "/_matrix/media/".utf8) && path.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual("upload".utf8) }) {
                return .stream(limit: min(configuration.transport.maxMediaBodyBytes, configuration.media.maxUploadBytes))
            }
            if VoiceEndpoints.isUploadPath(head.path) { return .stream(limit: VoiceEndpoints.maxBodyBytes(configuration)) }
        }
        return .buffer(limit: configuration.transport.maxJSONBodyBytes)
    }

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        // Always measured: the runtime endpoint and the admin page show rates and p99 even
        // without the Prometheus page (two clock reads and a few relaxed atomics).
        let start = Clock.monotonicNanoseconds()
        metrics.begin()
        let (response, errcode, context) = await route(request)
        finished(request, response, errcode, context, start: start)
        return response
    }

    /// The handler's answer, or the Matrix error it threw. A function of its own, as is
    /// `finished`: this frame and `respond`'s are held for as long as the handler runs (a
    /// long-poll's whole wait), so what is needed only before or after stays out of them.
    @inline(never)
    private func route(_ request: HTTPRequest) async -> (HTTPResponse, MatrixError.Code?, RequestContext?) {
        // CORS preflight, answered for every path as Synapse does.
        if request.method == .options { return (.json(.object([:])), nil, nil) }
        switch router.match(method: request.method, path: request.head.path) {
        case .found(let handler, let parameters):
            let context = RequestContext(request: request, parameters: parameters, app: self)
            do {
                return (try await handler(context), nil, context)
            } catch {
                let (response, errcode) = failed(request, error)
                return (response, errcode, context)
            }
        case .wrongMethod:
            return (.matrixError(MatrixError(.unrecognized, "Method \(request.method) not allowed for this endpoint", status: 405)), nil, nil)
        case .notFound:
            return (.matrixError(MatrixError(.unrecognized, "Unrecognized request")), nil, nil)
        }
    }

    /// The response to a handler's error: its Matrix error, or a logged 500.
    private func failed(_ request: HTTPRequest, _ error: any Error) -> (HTTPResponse, MatrixError.Code?) {
        if let error = error as? MatrixError { return (.matrixError(error), error.code) }
        logger.error("request \(request.requestID) \(request.method) \(request.head.path) failed: \(error)")
        return (.matrixError(MatrixError(.unknown, "Internal server error")), nil)
    }

    /// The security log, the metrics and the access log of an answered request.
    private func finished(_ request: HTTPRequest, _ response: HTTPResponse, _ errcode: MatrixError.Code?,
                          _ context: RequestContext?, start: Int64) {
        // The security log and reputation, for every route at once (logins, admin actions,
        // 429s, malformed bodies): one status and prefix check on the common path.
        if let context { security.observe(context, status: response.status, errcode: errcode) }
        let micros = (Clock.monotonicNanoseconds() - start) / 1000
        metrics.end(status: response.status, micros: Int(micros))
        accessLog?.record(address: request.remoteAddress, requestID: request.requestID, method: request.method,
                          target: request.head.target, status: response.status, micros: micros)
    }

    func errorResponse(_ error: TransportError, remoteAddress: String) -> HTTPResponse {
        if case .badRequest = error { security.observeMalformed(address: remoteAddress) }
        return errorResponse(error)
    }

    func errorResponse(_ error: TransportError) -> HTTPResponse {
        var response: HTTPResponse
        switch error {
        case .badRequest(let why): response = .matrixError(MatrixError(.unknown, "Bad request: \(why)", status: 400))
        case .headersTooLarge: response = .matrixError(MatrixError(.unknown, "Request headers too large", status: 431))
        case .bodyTooLarge: response = .matrixError(MatrixError(.tooLarge, "Request body too large", status: 413))
        case .timeout: response = .matrixError(MatrixError(.unknown, "Request timed out", status: 408))
        }
        return response
    }

    /// CORS as the client-server API requires, on every response (the transport adds them,
    /// rendered once).
    static let corsHeaders: HTTPHeaders = [
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    ]

    /// `target` with its access tokens redacted, appended as bytes (the access log's path: a
    /// target without a token is copied as it is). Every request's target passes here, and a
    /// sync's carries its filter (hundreds of bytes): scanned and copied as one buffer.
    static func appendRedacted(_ target: String, to out: inout [UInt8]) {
        var target = target
        let clean = target.withUTF8 { bytes in
            guard !containsAccessToken(bytes) else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if !clean { out.append(contentsOf: redacted(target).utf8) }
    }

    private static let accessTokenMarker: [UInt8] = Array("access_token=".utf8)

    /// Whether `bytes` contain `access_token=`.
    static func containsAccessToken(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard bytes.count >= accessTokenMarker.count, let base = bytes.baseAddress else { return false }
        return accessTokenMarker.withUnsafeBufferPointer { (needle: UnsafeBufferPointer<UInt8>) -> Bool in
            // `memchr` to each candidate first byte, then the rest compared.
            let first = Int32(needle[0])
            var offset = 0
            while bytes.count - offset >= needle.count {
                guard let found = memchr(base + offset, first, bytes.count - offset) else { return false }
                let at: Int = UnsafeRawPointer(found) - UnsafeRawPointer(base)
                if bytes.count - at < needle.count { return false }
                if memcmp(base + at, needle.baseAddress!, needle.count) == 0 { return true }
                offset = at + 1
            }
            return false
        }
    }

    /// Access tokens never reach the log.
    static func redacted(_ target: String) -> String {
        // Every occurrence: a repeated parameter must not leak its second value.
        var rest = Substring(target)
        var out = ""
        while let range = rest.firstRange(of: "access_token=") {
            out += rest[..<range.upperBound] + "<redacted>"
            let tail = rest[range.upperBound...]
            rest = tail[(tail.firstIndex(of: "&") ?? tail.endIndex)...]
        }
        return out + rest
    }
}

extension HTTPResponse {
    /// A JSON response.
    static func json(_ value: JSON, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", bytes: value.encoded())
    }

    static func matrixError(_ error: MatrixError) -> HTTPResponse {
        var response = HTTPResponse.json(error.body, status: error.status)
        if error.code == .limitExceeded, let retry = error.extra["retry_after_ms"]?.intValue {
            response.headers.add("Retry-After", String((retry + 999) / 1000))
        }
        return response
    }
}

/// Wall-clock and monotonic time without Foundation.
enum Clock {
    static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
