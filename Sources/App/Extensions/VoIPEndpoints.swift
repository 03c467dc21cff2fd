import Matrix
import Transport

/// TURN credentials for calls (spec: client-server API, "Voice over IP",
/// `GET /voip/turnServer`) and the seed's `voip/turnServer/guest` and `voip/config`, from the
/// `voip:` configuration section (docs/extensions.md, "VoIP").
///
/// With a shared secret the credentials follow coturn's `use-auth-secret` REST scheme, as
/// Synapse makes them: `username = "<expiry unix seconds>:<user id>"` and `password =
/// base64(HMAC-SHA1(secret, username))`; coturn recomputes the password and refuses the
/// username once its expiry has passed.
enum VoIPEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/voip/turnServer", turnServer)
        routes.client(.get, "/voip/turnServer/guest", guestTurnServer)
        routes.client(.get, "/voip/config", voipConfig)
    }

    static let notConfigured = MatrixError(.notFound, "VoIP/TURN service is not configured")

    /// `GET /voip/turnServer`: credentials for the requester; 403 for guests unless
    /// `turn_allow_guests`.
    static func turnServer(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let voip = context.app.configuration.voip
        guard voip.isConfigured else { throw notConfigured }
        if requester.isGuest && !voip.turnAllowGuests { throw MatrixError(.forbidden, "Guest access to the TURN server is disabled") }
        return .json(.object(credentials(voip, for: requester.userID.rawValue, now: Clock.nowMilliseconds())))
    }

    /// `GET /voip/turnServer/guest` (the seed's, unauthenticated): credentials for an
    /// anonymous caller, only while `turn_allow_guests`.
    static func guestTurnServer(_ context: RequestContext) async throws -> HTTPResponse {
        let voip = context.app.configuration.voip
        guard voip.isConfigured else { throw notConfigured }
        guard voip.turnAllowGuests else { throw MatrixError(.forbidden, "Guest access to the TURN server is disabled") }
        return .json(.object(credentials(voip, for: guestName(), now: Clock.nowMilliseconds())))
    }

    /// `GET /voip/config` (the seed's): the TURN servers with credentials and the STUN
    /// servers, `null` for each when none is configured. Credentials go to a signed-in user,
    /// or to anyone while `turn_allow_guests`; otherwise only the URIs are listed.
    static func voipConfig(_ context: RequestContext) async throws -> HTTPResponse {
        let voip = context.app.configuration.voip
        var identity: String?
        if Accounts.accessToken(of: context) != nil {
            let requester = try await context.requireUser()
            if !requester.isGuest || voip.turnAllowGuests { identity = requester.userID.rawValue }
        } else if voip.turnAllowGuests {
            identity = guestName()
        }
        var turn: JSON = .null
        if voip.isConfigured {
            if let identity {
                turn = .array([.object(credentials(voip, for: identity, now: Clock.nowMilliseconds()))])
            } else {
                turn = .array([.object(["uris": .array(voip.turnUris.map { .string($0) }),
                                        "ttl": .int(Int64(voip.turnUserLifetimeMs / 1000))])])
            }
        }
        let stun: JSON = voip.stunUris.isEmpty ? .null : .array(voip.stunUris.map { .string($0) })
        return .json(["turn_servers": turn, "stun_servers": stun])
    }

    /// A fresh anonymous identity for the guest credentials (coturn only needs it unique).
    static func guestName() -> String {
        "guest-" + Base64.encodeURLSafe(Sodium.randomBytes(9))
    }

    /// The credentials body: `username`, `password`, `uris`, `ttl` (seconds).
    static func credentials(_ voip: Configuration.VoIP, for identity: String, now: Int64) -> [String: JSON] {
        let ttl = Int64(voip.turnUserLifetimeMs / 1000)
        let username: String
        let password: String
        if let secret = voip.turnSharedSecret {
            (username, password) = restCredentials(secret: secret, identity: identity, expiry: now / 1000 + ttl)
        } else {
            username = voip.turnUsername ?? ""
            password = voip.turnPassword ?? ""
        }
        return ["username": .string(username), "password": .string(password),
                "uris": .array(voip.turnUris.map { .string($0) }), "ttl": .int(ttl)]
    }

    /// coturn's `use-auth-secret` credentials valid until `expiry` (unix seconds).
    static func restCredentials(secret: String, identity: String, expiry: Int64) -> (username: String, password: String) {
        let username = "\(expiry):\(identity)"
        let mac = HMACSHA1.mac(key: Array(secret.utf8), message: Array(username.utf8))
        return (username, paddedBase64(mac))
    }

    /// Standard Base64 with `=` padding (Python's `b64encode`, which coturn's scheme uses).
    static func paddedBase64(_ bytes: [UInt8]) -> String {
        let text = Base64.encode(bytes)
        return text + String(repeating: "=", count: (4 - text.utf8.count % 4) % 4)
    }
}
