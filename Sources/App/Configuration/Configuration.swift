import Matrix
import Persistence
import Transport

/// The daemon's configuration: one YAML file, every key with a default, so that `myelin`
/// runs with no file at all (SQLite under `./data`, 127.0.0.1:8008, server name `localhost`).
/// `ConfigurationLoader` reads it strictly; `ConfigurationTemplate` prints the commented file.
struct Configuration: Sendable, Equatable {
    struct Listener: Sendable, Equatable {
        var host = "127.0.0.1"
        var port = 8008
        /// Set: the listener speaks HTTPS only (the whole API on that port).
        var tls: TLSFiles?
    }

    /// A TLS listener's certificate chain (leaf first, PEM) and private key (PEM); read at
    /// start and again on SIGHUP.
    struct TLSFiles: Sendable, Equatable {
        var certificate: String
        var privateKey: String
    }

    enum DatabaseBackend: String, Sendable, Equatable { case sqlite, postgres }

    struct Database: Sendable, Equatable {
        var backend = DatabaseBackend.sqlite
        /// Empty means `<data_dir>/myelin.db`.
        var sqlitePath = ""
        var sqliteReaders = 4
        /// `database.sqlite.checkpoint_pages` and `.synchronous` (`SQLiteOptions`).
        var sqliteOptions = SQLiteOptions()
        var postgresConninfo = "host=127.0.0.1 port=5432 dbname=myelin user=myelin"
        var postgresPoolSize = 8
    }

    struct ActorPool: Sendable, Equatable {
        var maxResident: Int
        var idleTimeoutSeconds: Int
    }

    struct Actors: Sendable, Equatable {
        var rooms = ActorPool(maxResident: 10_000, idleTimeoutSeconds: 600)
        var sessions = ActorPool(maxResident: 50_000, idleTimeoutSeconds: 900)
        var notifiers = ActorPool(maxResident: 50_000, idleTimeoutSeconds: 300)
        var federationDestinations = ActorPool(maxResident: 1_000, idleTimeoutSeconds: 600)
        var mediaUploads = ActorPool(maxResident: 256, idleTimeoutSeconds: 60)
        /// Events each room actor keeps in memory (with their bytes) for caught-up syncs.
        var roomRecentEvents = 128
    }

    struct Registration: Sendable, Equatable {
        /// True by default so that `myelin` with no file (loopback, `localhost`) can be tried at
        /// once; `generate-config` writes false.
        var enabled = true
        /// When set, registration is token-only: the `m.login.registration_token` stage with
        /// this token.
        var registrationToken: String? = nil
        var sharedSecret: String? = nil
        var allowGuests = false
        /// Lifetime of access tokens issued with a refresh token (the client asked for
        /// `refresh_token`); tokens without one never expire, as in Synapse.
        var refreshableAccessTokenLifetimeMs = 300_000
        /// Lifetime of a refresh token; 0 means it never expires.
        var refreshTokenLifetimeMs = 0
    }

    struct Presence: Sendable, Equatable {
        var enabled = true
    }

    struct UserDirectory: Sendable, Equatable {
        /// false (Synapse's default): only users who share a room with the searcher or are in
        /// a public room; true: every local user.
        var searchAllUsers = false
    }

    struct RateLimit: Sendable, Equatable {
        var perSecond: Double
        var burst: Int
    }

    /// Every limit is per user for authenticated actions and per client address otherwise
    /// (docs/security.md lists which action draws on which bucket).
    struct RateLimits: Sendable, Equatable {
        var enabled = true
        /// Room events of every kind: messages, state, redactions, room creation (Synapse's
        /// rc_message).
        var messages = RateLimit(perSecond: 0.2, burst: 10)
        /// Password checks: login, and every user-interactive password stage; per address
        /// and per account (Synapse's rc_login).
        var login = RateLimit(perSecond: 0.17, burst: 3)
        var registration = RateLimit(perSecond: 0.17, burst: 3)
        /// Typing notifications, receipts and read markers.
        var ephemeral = RateLimit(perSecond: 5, burst: 30)
        /// `PUT /presence` (Synapse's rc_presence is 0.1/s with a burst of 1).
        var presence = RateLimit(perSecond: 0.5, burst: 5)
        /// Send-to-device requests (Synapse's rc_key_requests).
        var toDevice = RateLimit(perSecond: 20, burst: 100)
        /// Display name and avatar changes: each is a member event in every joined room.
        var profile = RateLimit(perSecond: 0.1, burst: 5)
        /// Cross-signing and signature uploads.
        var keyUploads = RateLimit(perSecond: 2, burst: 50)
        /// Addresses of reverse proxies whose `X-Forwarded-For` names the real client; from
        /// any other peer the header is ignored (a client could name anyone).
        var trustedProxies: [String] = []
    }

    /// The admin API's security extension (docs/admin.md, "Security").
    struct Security: Sendable, Equatable {
        /// Rows kept in the security event log (the oldest go first).
        var eventLogCapacity = 10_000
        /// Half-life of an address's reputation penalty.
        var reputationHalfLifeSeconds = 3600
        /// Block an address automatically when its reputation score reaches this (1...100;
        /// 0: never).
        var autoBlockScore = 0
        /// How long an automatic block lasts.
        var autoBlockDurationSeconds = 3600
        /// Registration needs a token (a stored one, from the admin API, or
        /// `registration.registration_token`): Synapse's `registration_requires_token`.
        var registrationRequiresToken = false
        /// Argon2id limits of new password hashes: `interactive` (libsodium's, the default),
        /// `moderate`, `sensitive`, or `minimum` (benchmarks that create thousands of
        /// accounts; never for real users' passwords). Existing hashes keep their own.
        var passwordHashCost = Sodium.PasswordHash.Cost.interactive
    }

    struct Media: Sendable, Equatable {
        /// Empty means `<data_dir>/media`.
        var storePath = ""
        var maxUploadBytes = 50 << 20
        var thumbnails = true
        /// Synapse's `enable_authenticated_media` (its default since 1.120): media stored
        /// while it is on is served only by the authenticated `/_matrix/client/v1/media`
        /// paths; the legacy `/_matrix/media/v3` downloads answer 404 for it (older media
        /// stays reachable there).
        var enableAuthenticatedMedia = true
        /// Ids reserved by `POST /_matrix/media/v1/create` and not yet uploaded, per user
        /// (Synapse's `max_pending_media_uploads`); one more is 429 `M_LIMIT_EXCEEDED`.
        var maxPendingUploads = 5
        /// How long a created id waits for its upload (Synapse's `unused_expiration_time`).
        var pendingUploadExpiryMs = 24 * 3_600_000
        var urlPreview = URLPreview()
        /// Bytes of cached remote media kept at most (least recently used evicted); 0: no limit.
        var remoteCacheMaxBytes = 1 << 30
        var thumbnailing = Thumbnailing()
    }

    struct Federation: Sendable, Equatable {
        var enabled = true
        /// Notaries asked for keys a server does not serve itself; none by default (trusting
        /// one is a choice the administrator makes).
        var trustedKeyServers: [String] = []
        /// The first retry delay of a destination after a failed transaction, doubled at each
        /// further failure up to `backoffMaxMs` (with jitter).
        var backoffInitialMs = 1_000
        var backoffMaxMs = 3_600_000
        /// Outbound TLS: verify certificates against the system store plus `extraCAFiles`;
        /// false only for test set-ups.
        var verifyCertificates = true
        var extraCAFiles: [String] = []
        /// CIDR ranges the outbound client may connect to despite its blacklist (loopback
        /// and private ranges are refused by default).
        var ipRangeWhitelist: [String] = []
        /// When not empty, the only server names federation talks to.
        var domainWhitelist: [String] = []
    }

    /// Push rule outcomes and HTTP pushers (docs/push.md, "Pushers and notifications").
    struct Push: Sendable, Equatable {
        /// The full push format carries the event's `content` (Synapse's `include_content`).
        var includeContent = true
        /// `/notifications` keeps this many days of outcomes (Synapse keeps about 30).
        var notificationRetentionDays = 30
        /// The first retry delay of a pusher after a failed request, doubled per failure.
        var backoffInitialMs = 1_000
        /// The longest delay; once reached, a notification that fails again is dropped.
        var backoffMaxMs = 3_600_000
        /// Notifications waiting per pusher (the oldest go first when full).
        var maxQueuedPerPusher = 1_000
    }

    struct WellKnown: Sendable, Equatable {
        /// `m.homeserver.base_url` served at `/.well-known/matrix/client`; empty → not served.
        var clientBaseURL = ""
        /// `m.server` served at `/.well-known/matrix/server`; empty → not served.
        var server = ""
    }

    struct Logging: Sendable, Equatable {
        var level = "info"
        var accessLog = true
    }

    struct Metrics: Sendable, Equatable {
        var enabled = false
        var path = "/_myelin/metrics"
    }

    /// The browser admin page (`Admin/AdminPage.swift`, docs/admin.md): off by default.
    struct AdminPage: Sendable, Equatable {
        var enabled = false
        /// The page's files (`index.html`, `app.js`, `style.css`), read at start. Relative to
        /// the working directory: the default is the repository's `admin-page/`, where `make
        /// run` starts the daemon.
        var directory = "admin-page"
    }

    var serverName = "localhost"
    /// The version of rooms created without `room_version` (and advertised as the default in
    /// `m.room_versions`); SyTest runs with 10 because its mock servers speak 1–11.
    var defaultRoomVersion = RoomVersion.recommendedDefault.id
    var dataDirectory = "./data"
    /// Empty means `<data_dir>/signing.key`.
    var signingKeyPath = ""
    var listeners = [Listener()]
    var database = Database()
    var transport = TransportConfiguration()
    var actors = Actors()
    var registration = Registration()
    var rateLimits = RateLimits()
    var security = Security()
    var presence = Presence()
    var userDirectory = UserDirectory()
    var media = Media()
    var voice = Voice()
    var voip = VoIP()
    var federation = Federation()
    var push = Push()
    var serverNotices = ServerNotices()
    var wellKnown = WellKnown()
    var logging = Logging()
    var metrics = Metrics()
    var adminPage = AdminPage()

    var resolvedSQLitePath: String { database.sqlitePath.isEmpty ? dataDirectory + "/myelin.db" : database.sqlitePath }
    var resolvedSigningKeyPath: String { signingKeyPath.isEmpty ? dataDirectory + "/signing.key" : signingKeyPath }
    var databaseConfiguration: DatabaseConfiguration {
        switch database.backend {
        case .sqlite: return .sqlite(path: resolvedSQLitePath, readerCount: database.sqliteReaders,
                                     options: database.sqliteOptions)
        case .postgres: return .postgres(conninfo: database.postgresConninfo, poolSize: database.postgresPoolSize)
        }
    }
    var resolvedMediaPath: String { media.storePath.isEmpty ? dataDirectory + "/media" : media.storePath }
}
