import Matrix
import Persistence

/// User-interactive authentication (spec: client-server API, "User-interactive
/// authentication API"). Every flow offered here has one stage, so a request completes UIA
/// when its `auth` dict completes any flow; without `auth` (or with a failed stage) the
/// server answers 401 with the flows, their params and a session id.
///
/// Sessions are not stored: the id is echoed so that clients can follow the protocol, and
/// each request is authenticated on its own. Multi-stage flows (email, terms) need the
/// stored sessions Synapse has; they come with those stages.
struct UserInteractiveAuth {
    enum Stage: String {
        case dummy = "m.login.dummy"
        case password = "m.login.password"
        case registrationToken = "m.login.registration_token"
    }

    let flows: [[Stage]]
    /// Checks a password stage: the identified user must be the requester.
    var passwordUser: UserID?
    var registrationToken: String?
    /// The admin API's registration tokens (redeemed by a registration-token stage when the
    /// configured `registrationToken` does not match).
    var storedTokens: SecurityStore?

    /// The 401 body asking for authentication (`error` set when a stage failed).
    func challenge(session: String?, failure: MatrixError? = nil, completed: [Stage] = []) -> MatrixError {
        var extra: [String: JSON] = [
            "flows": .array(flows.map { .object(["stages": .array($0.map { .string($0.rawValue) })]) }),
            "params": .object([:]),
            "session": .string(session ?? Secrets.token(prefix: "uia")),
        ]
        if !completed.isEmpty { extra["completed"] = .array(completed.map { .string($0.rawValue) }) }
        guard let failure else {
            // The first challenge: flows, params and session only (spec: "User-interactive
            // authentication API"); no errcode, no `completed` (no stage was completed).
            var challenge = MatrixError("M_UNAUTHORIZED", "User-interactive authentication required", status: 401, extra: extra)
            challenge.bodyIsExtraOnly = true
            return challenge
        }
        return MatrixError(failure.code, failure.message, status: 401, extra: extra.merging(["completed": .array([])]) { a, _ in a })
    }

    /// Whether `token` passes the registration-token stage: the configured token, or a valid
    /// stored one, which is then reserved (returned; the caller finishes or releases it).
    func redeem(_ token: String) async throws -> (passed: Bool, reserved: String?) {
        if let expected = registrationToken, Secrets.constantTimeEqual(token, expected) { return (true, nil) }
        if let storedTokens, AdminRegistrationTokens.isValidToken(token),
           try await storedTokens.reserveRegistrationToken(token, now: Clock.nowMilliseconds()) {
            return (true, token)
        }
        return (false, nil)
    }

    /// Registration's token flow, as Synapse offers it with `registration_requires_token`:
    /// `m.login.registration_token` then `m.login.dummy`, in one session (`sessions`). The
    /// token stage answers 401 with it `completed`; the dummy stage after it returns the
    /// stored token the session reserved (nil for the configured token). Anything else throws
    /// the 401 challenge.
    func checkTokenFlow(_ body: [String: JSON], session: String, sessions: RegistrationSessions) async throws -> String? {
        let auth = body["auth"]?.objectValue
        let done = sessions.entry(session)?.tokenStageDone ?? false
        let completed: [Stage] = done ? [.registrationToken] : []
        switch auth?["type"]?.stringValue {
        case nil:
            throw challenge(session: session, completed: completed)
        case Stage.registrationToken.rawValue?:
            if !done {
                guard let token = auth?["token"]?.stringValue else {
                    throw challenge(session: session, failure: MatrixError(.missingParam, "Missing token"))
                }
                let (passed, reserved) = try await redeem(token)
                guard passed else { throw challenge(session: session, failure: MatrixError(.unauthorized, "Invalid registration token")) }
                sessions.completeTokenStage(session, reserved: reserved)
            }
            throw challenge(session: session, completed: [.registrationToken])
        case Stage.dummy.rawValue?:
            guard done, let entry = sessions.entry(session) else { throw challenge(session: session, completed: completed) }
            return entry.reservedToken
        case let other?:
            throw challenge(session: session, failure: MatrixError(.unrecognized, "Unrecognised login type \(other)"))
        }
    }

    /// Returns when `auth` completes a flow; otherwise throws the 401 challenge. A stored
    /// registration token that completed the stage is returned reserved (`pending` counted):
    /// the caller finishes it with `SecurityStore.finishRegistrationToken`.
    @discardableResult
    func check(_ body: [String: JSON], accounts: Accounts) async throws -> String? {
        guard let auth = body["auth"]?.objectValue, let type = auth["type"]?.stringValue else {
            throw challenge(session: body["auth"]?["session"]?.stringValue)
        }
        let session = auth["session"]?.stringValue
        guard let stage = Stage(rawValue: type), flows.contains(where: { $0 == [stage] }) else {
            throw challenge(session: session, failure: MatrixError(.unrecognized, "Unrecognised login type \(type)"))
        }
        switch stage {
        case .dummy:
            return nil
        case .registrationToken:
            guard let token = auth["token"]?.stringValue else {
                throw challenge(session: session, failure: MatrixError(.unauthorized, "Invalid registration token"))
            }
            let (passed, reserved) = try await redeem(token)
            guard passed else { throw challenge(session: session, failure: MatrixError(.unauthorized, "Invalid registration token")) }
            return reserved
        case .password:
            guard let expected = passwordUser else { throw challenge(session: session) }
            let userText = auth["identifier"]?["user"]?.stringValue ?? auth["user"]?.stringValue ?? expected.rawValue
            guard let password = auth["password"]?.stringValue else {
                throw challenge(session: session, failure: MatrixError(.missingParam, "Missing password"))
            }
            let claimed = try? accounts.localUserID(from: userText)
            guard claimed == expected else {
                // Another user's credentials: a plain 403, not a new challenge (as Synapse;
                // SyTest "DELETE /device/{deviceId} requires UI auth user to match device owner").
                throw MatrixError(.forbidden, "Requester does not match the authenticated user")
            }
            // Each guess costs an Argon2 verification: limited per account like login
            // (Synapse's failed-UIA limiter), and the 429 is not a challenge.
            try accounts.rateLimiter.check("login-account", client: expected.rawValue, accounts.configuration.rateLimits.login)
            do {
                _ = try await accounts.checkPassword(userID: expected, password: password)
            } catch let error as MatrixError where error.code != .limitExceeded {
                throw challenge(session: session, failure: error)
            }
            return nil
        }
    }
}
