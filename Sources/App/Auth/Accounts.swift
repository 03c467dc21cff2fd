import Actors
import Logging
import Matrix
import Persistence
import Synchronization
import Transport

/// Who made an authenticated request.
struct Requester: Sendable {
    let userID: UserID
    let deviceID: String?
    let isGuest: Bool
    /// A server admin (`users.is_admin`, cached by the session).
    let isAdmin: Bool
    /// Suspended by an administrator (`users.suspended`): the actions of
    /// `AccountModeration.suspensionForbids` were refused before the handler ran.
    var isSuspended = false
    /// The stored hash of the access token used (logout deletes it).
    let tokenHash: String
    /// The device's resident session (nil for a token stored without a device).
    let session: SessionActor?
}

/// The state of the accounts API shared by its handlers: token authentication (through the
/// resident `SessionActor`s of `sessions`, which also batch last-seen), password hashing,
/// rate limits and the account-data and presence stream trackers. Built by `MyelinServer` after the store opens;
/// owned by `MyelinApp`.
final class Accounts: Sendable {
    let configuration: Configuration
    let database: Database
    let passwords: PasswordHasher
    /// The resident sessions (one actor per device) and their token index.
    let sessions: Sessions
    let rateLimiter: RateLimiter
    let accountDataStream: StreamTracker
    let presenceStream: StreamTracker
    let registrationSessions = RegistrationSessions()

    init(configuration: Configuration, database: Database, logger: Logger) async throws {
        self.configuration = configuration
        self.database = database
        passwords = PasswordHasher(cost: configuration.security.passwordHashCost)
        let pool = configuration.actors.sessions
        sessions = Sessions(store: database.tokens,
                            limits: RegistryLimits(maxResident: pool.maxResident, idleTimeoutSeconds: pool.idleTimeoutSeconds),
                            lastSeen: LastSeenBatcher(store: database.devices, logger: logger))
        rateLimiter = RateLimiter(enabled: configuration.rateLimits.enabled)
        accountDataStream = try await StreamTracker.load(name: "account_data", from: database,
                                                        maxPositionSQL: AccountDataStore.maxPositionSQL)
        presenceStream = try await StreamTracker.load(name: "presence", from: database,
                                                     maxPositionSQL: PresenceStore.maxPositionSQL)
    }

    var serverName: String { configuration.serverName }

    // MARK: authentication

    /// The access token of a request: `Authorization: Bearer` first, then the `access_token`
    /// query parameter (both are in the specification).
    static func accessToken(of context: RequestContext) -> String? {
        if let header = context.request.headers["Authorization"] {
            // The scheme is case-insensitive; compared as bytes (this runs on every request).
            let utf8 = header.utf8
            if utf8.count > 7, utf8.prefix(6).elementsEqual("bearer".utf8, by: { $0 | 0x20 == $1 }),
               utf8[utf8.index(utf8.startIndex, offsetBy: 6)] == UInt8(ascii: " ") {
                let token = header.utf8.dropFirst(7).drop { $0 == UInt8(ascii: " ") }
                return String(Substring(token))
            }
        }
        if let token = context.query["access_token"], !token.isEmpty { return token }
        return nil
    }

    /// Authenticates the request or throws 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN` (with
    /// `soft_logout` when expired) or 403 `M_USER_DEACTIVATED`. Records last-seen.
    func authenticate(_ context: RequestContext, allowGuests: Bool = true) async throws -> Requester {
        guard let token = Self.accessToken(of: context) else {
            throw MatrixError(.missingToken, "Missing access token")
        }
        let hash = Secrets.hash(token)
        let session = try await sessions.authenticate(tokenHash: hash, now: Clock.nowMilliseconds(), ip: context.clientAddress,
                                                      userAgent: context.request.headers["User-Agent"])
        // Account moderation (spec: "Account locking", "Account suspension"), decided here
        // once for every endpoint.
        if session.isLocked && !AccountModeration.isLogout(context.request.head.path) {
            throw AccountModeration.locked
        }
        if session.isSuspended && AccountModeration.suspensionForbids(context.request.method, context.request.head.path) {
            throw AccountModeration.suspended
        }
        if session.isGuest && !allowGuests {
            throw MatrixError(.guestAccessForbidden, "Guest access not allowed")
        }
        return Requester(userID: session.user, deviceID: session.deviceID, isGuest: session.isGuest, isAdmin: session.isAdmin,
                         isSuspended: session.isSuspended, tokenHash: hash,
                         session: session.session)
    }

    /// How often pending last-seen values are written (and idle sessions swept).
    static let lastSeenFlushInterval = Duration.seconds(5)

    /// The device's tokens were deleted (logout, device deletion, a reused device id): its
    /// session goes at once.
    func revokeSession(_ user: UserID, device: String) async {
        guard let device = try? DeviceID(parsing: device) else { return }
        await sessions.revoke(user, device: device)
    }

    // MARK: sessions

    struct IssuedSession: Sendable {
        var accessToken: String
        var refreshToken: String?
        var expiresInMs: Int64?
        var deviceID: String
    }

    /// Creates (or reuses) the device and issues its tokens. A refreshable session's access
    /// token expires after the configured lifetime.
    func issueSession(userID: UserID, deviceID requested: String?, displayName: String?, refreshable: Bool,
                      ip: String) async throws -> IssuedSession {
        let device = try requested.map { try DeviceID(parsing: $0) } ?? DeviceID.generate()
        let deviceID = device.rawValue
        let now = Clock.nowMilliseconds()
        // Device ids and cross-signing public keys share one namespace (spec: "Cross-signing").
        if requested != nil, try await CrossSigning.isCrossSigningKey(deviceID, of: userID, database) {
            throw MatrixError(.invalidParam, "Device id \(deviceID) is one of the user's cross-signing keys")
        }
        // Reusing a device id logs its previous sessions out (Synapse does the same).
        if requested != nil {
            try await database.tokens.deleteAccessTokens(of: userID, device: device)
            await sessions.revoke(userID, device: device)
        }
        try await database.devices.upsertDevice(DeviceRecord(userID: userID.rawValue, deviceID: deviceID,
                                                              displayName: displayName, lastSeenTs: now, lastSeenIP: ip,
                                                              createdTs: now))
        let session = newTokens(userID: userID, deviceID: deviceID, refreshable: refreshable, now: now)
        try await database.tokens.insertAccessToken(session.record)
        return session.issued
    }

    /// Fresh tokens for a device, and the row that stores their hashes.
    func newTokens(userID: UserID, deviceID: String, refreshable: Bool, now: Int64)
        -> (issued: IssuedSession, record: AccessTokenRecord) {
        let access = Secrets.token(prefix: "myl")
        let refresh = refreshable ? Secrets.token(prefix: "mylr") : nil
        let lifetime = Int64(configuration.registration.refreshableAccessTokenLifetimeMs)
        let refreshLifetime = Int64(configuration.registration.refreshTokenLifetimeMs)
        let record = AccessTokenRecord(tokenHash: Secrets.hash(access), userID: userID.rawValue, deviceID: deviceID,
                                       createdTs: now, expiresTs: refreshable ? now + lifetime : nil,
                                       refreshTokenHash: refresh.map(Secrets.hash),
                                       refreshExpiresTs: refreshable && refreshLifetime > 0 ? now + refreshLifetime : nil)
        return (IssuedSession(accessToken: access, refreshToken: refresh, expiresInMs: refreshable ? lifetime : nil,
                              deviceID: deviceID), record)
    }

    /// The login/registration response body of a session.
    func sessionBody(userID: UserID, _ session: IssuedSession) -> [String: JSON] {
        var body: [String: JSON] = [
            "user_id": .string(userID.rawValue),
            "access_token": .string(session.accessToken),
            "device_id": .string(session.deviceID),
            "home_server": .string(serverName),
        ]
        if let refresh = session.refreshToken { body["refresh_token"] = .string(refresh) }
        if let expires = session.expiresInMs { body["expires_in_ms"] = .int(expires) }
        return body
    }

    /// A user id of this server from a `user` field: a localpart or a full id (lower-cased
    /// as Synapse does at login).
    func localUserID(from text: String) throws -> UserID {
        if text.hasPrefix("@") {
            let parsed = try UserID(parsing: text)
            guard parsed.serverName.rawValue == serverName else {
                throw MatrixError(.forbidden, "Invalid username or password")
            }
            return try UserID(parsing: "@\(parsed.localpart.lowercased()):\(serverName)")
        }
        return try UserID(parsing: "@\(text.lowercased()):\(serverName)")
    }

    /// Checks a user's password; the user must exist, be active and have a password.
    func checkPassword(userID: UserID, password: String) async throws -> UserRecord {
        guard let user = try await database.accounts.user(id: userID) else {
            throw MatrixError(.forbidden, "Invalid username or password")
        }
        guard let hash = user.passwordHash else {
            // Deactivation removes the password; Synapse then answers M_USER_DEACTIVATED.
            if user.deactivated { throw MatrixError(.userDeactivated, "This account has been deactivated") }
            throw MatrixError(.forbidden, "Invalid username or password")
        }
        guard try await passwords.verify(password, hash: hash) else {
            throw MatrixError(.forbidden, "Invalid username or password")
        }
        if user.deactivated { throw MatrixError(.userDeactivated, "This account has been deactivated") }
        // A locked account's requests would all answer M_USER_LOCKED: no new session either.
        if user.locked { throw AccountModeration.locked }
        return user
    }
}
