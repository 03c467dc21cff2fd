import Matrix
import Persistence
import Transport

/// `POST /register`, `GET /register/available` and the registration-token validity check
/// (spec: client-server API, "Account registration").
enum Registration {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/register", register)
        routes.client(.get, "/register/available", available)
        routes.client(.get, "/register/m.login.registration_token/validity", versions: ["v1"], registrationTokenValidity)
    }

    /// `GET /register/available`: whether a username is free.
    static func available(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        try context.rateLimit("available", accounts.configuration.rateLimits.registration)
        guard let username = context.query["username"] else {
            throw MatrixError(.missingParam, "Missing username")
        }
        let userID = try validatedNewUserID(username, serverName: accounts.serverName)
        if try await accounts.database.accounts.user(id: userID) != nil {
            throw MatrixError(.userInUse, "User ID already taken.")
        }
        return .json(["available": true])
    }

    /// `GET /register/m.login.registration_token/validity`: whether a registration token is valid.
    static func registrationTokenValidity(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        try context.rateLimit("token-validity", accounts.configuration.rateLimits.registration)
        guard let token = context.query["token"] else { throw MatrixError(.missingParam, "Missing token") }
        let configured = accounts.configuration.registration.registrationToken
        guard accounts.configuration.registration.enabled,
              configured != nil || accounts.configuration.security.registrationRequiresToken else {
            throw MatrixError(.forbidden, "Registration tokens are not enabled")
        }
        guard token.utf8.count <= AdminRegistrationTokens.maxLength else {
            throw MatrixError(.invalidParam, "Registration tokens are at most 64 characters")
        }
        if let configured, Secrets.constantTimeEqual(token, configured) { return .json(["valid": true]) }
        // The admin API's tokens: unexpired, with a use left (counting registrations in progress).
        let stored = AdminRegistrationTokens.isValidToken(token) ? try await accounts.database.security.registrationToken(token) : nil
        return .json(["valid": .bool(stored?.isValid(now: Clock.nowMilliseconds()) ?? false)])
    }

    /// The specification's rules for a new localpart (historical grammar excluded) plus
    /// Synapse's reservations: a leading `_` (bridges' namespaces) and all-digit names
    /// (guests). Throws `M_INVALID_USERNAME`.
    static func validatedNewUserID(_ localpart: String, serverName: String) throws -> UserID {
        guard !localpart.isEmpty else { throw MatrixError(.invalidUsername, "User ID cannot be empty") }
        if localpart.lowercased() != localpart {
            throw MatrixError(.invalidUsername, "User ID may not contain upper-case letters")
        }
        guard localpart.utf8.allSatisfy(UserID.isStrictLocalpartByteValue) else {
            throw MatrixError(.invalidUsername, "User ID can only contain characters a-z, 0-9, or '=_-./+'")
        }
        if localpart.hasPrefix("_") { throw MatrixError(.invalidUsername, "User ID may not begin with _") }
        if localpart.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            throw MatrixError(.invalidUsername, "Numeric user IDs are reserved for guest users.")
        }
        guard ("@" + localpart + ":" + serverName).utf8.count <= 255 else {
            throw MatrixError(.invalidUsername, "User ID may not be longer than 255 characters")
        }
        do {
            return try UserID(parsing: "@\(localpart):\(serverName)")
        } catch {
            throw MatrixError(.invalidUsername, "Invalid user ID")
        }
    }

    static let maxPasswordLength = 512

    /// `POST /register`: creates an account (or, with `kind=guest`, a guest) and signs it in.
    static func register(_ context: RequestContext) async throws -> HTTPResponse {
        let kind = context.query["kind"] ?? "user"
        guard kind == "user" || kind == "guest" else {
            throw MatrixError(.invalidParam, "Invalid kind \(kind)")
        }
        var body = try await context.jsonObject()
        if kind == "guest" { return try await registerGuest(context, body: body) }

        let accounts = context.app.accounts
        let settings = accounts.configuration.registration
        guard settings.enabled else { throw MatrixError(.forbidden, "Registration has been disabled") }
        let sessionID = body["auth"]?["session"]?.stringValue ?? Secrets.token(prefix: "uia")
        if let entry = accounts.registrationSessions.entry(sessionID) {
            // A session completed again: the same account, signed in again.
            if let done = entry.userID { return try await signIn(done, body: entry.params, context: context) }
            body = entry.params.merging(body) { _, given in given }
        } else {
            var params = body
            params["auth"] = nil
            accounts.registrationSessions.start(sessionID, params: params)
        }
        // One session id throughout, also when the client sent `auth` without one.
        if var auth = body["auth"]?.objectValue {
            if auth["session"] == nil { auth["session"] = .string(sessionID); body["auth"] = .object(auth) }
        } else {
            body["auth"] = ["session": .string(sessionID)]
        }
        if let guestToken = body["guest_access_token"]?.stringValue {
            return try await upgradeGuest(context, guestToken: guestToken, body: body)
        }
        let password = try validatedPassword(body)
        // The username is checked before authentication, as Synapse does, so that a client
        // learns of a bad or taken name before the user completes any stage.
        var requested: UserID?
        if let username = body["username"]?.stringValue {
            // Lower-cased first, as Synapse does: `Alice` registers `@alice` (SyTest
            // "POST /register downcases capitals in usernames").
            let userID = try validatedNewUserID(username.lowercased(), serverName: accounts.serverName)
            if try await accounts.database.accounts.user(id: userID) != nil {
                throw MatrixError(.userInUse, "User ID already taken.")
            }
            requested = userID
        }
        // Reservations of sessions abandoned after their token stage go back to their tokens.
        for token in accounts.registrationSessions.takeExpiredReservations() {
            try? await accounts.database.security.finishRegistrationToken(token, completed: false)
        }
        var reservedToken: String?
        if settings.registrationToken != nil || accounts.configuration.security.registrationRequiresToken {
            // Synapse's flow: the token, then the dummy stage. A stored token is counted
            // `pending` from its stage until the account exists (`completed`).
            let uia = UserInteractiveAuth(flows: [[.registrationToken, .dummy]], registrationToken: settings.registrationToken,
                                          storedTokens: accounts.database.security)
            reservedToken = try await uia.checkTokenFlow(body, session: sessionID, sessions: accounts.registrationSessions)
        } else {
            try await UserInteractiveAuth(flows: [[.dummy]]).check(body, accounts: accounts)
        }
        guard let password else { throw MatrixError(.missingParam, "Missing password") }
        // Only account creations count (as in Synapse): the UIA round trips before do not.
        try context.rateLimit("register", accounts.configuration.rateLimits.registration)
        let userID = try await createAccount(requested, password: password, accounts: accounts)
        if let reservedToken { try await accounts.database.security.finishRegistrationToken(reservedToken, completed: true) }
        accounts.registrationSessions.complete(sessionID, userID: userID)
        context.app.logger.info("registered \(userID)")
        if body["inhibit_login"]?.boolValue == true {
            return .json(["user_id": .string(userID.rawValue), "home_server": .string(accounts.serverName)])
        }
        return try await signIn(userID, body: body, context: context)
    }

    /// The optional `password` of a registration body, typed and bounded; the `username`,
    /// if present, must be a string.
    static func validatedPassword(_ body: [String: JSON]) throws -> String? {
        if let value = body["username"], value.stringValue == nil {
            throw MatrixError(.invalidParam, "Invalid username")
        }
        if let value = body["password"], value.stringValue == nil {
            throw MatrixError(.invalidParam, "Invalid password")
        }
        let password = body["password"]?.stringValue
        if let password, password.utf8.count > maxPasswordLength {
            throw MatrixError(.invalidParam, "Password too long")
        }
        return password
    }

    /// Stores the account under `requested`, or under a fresh random localpart when nil.
    static func createAccount(_ requested: UserID?, password: String, accounts: Accounts) async throws -> UserID {
        let hash = try await accounts.passwords.hash(password)
        if let requested {
            guard try await accounts.database.accounts.createUser(UserRecord(userID: requested.rawValue, passwordHash: hash)) else {
                throw MatrixError(.userInUse, "User ID already taken.")
            }
            return requested
        }
        var userID: UserID
        repeat {
            let random = Secrets.token(prefix: "u").utf8.dropFirst(2).prefix(10)
                .map { Character(Unicode.Scalar(UInt8(ascii: "a") + $0 % 26)) }
            userID = try UserID(parsing: "@\(String(random)):\(accounts.serverName)")
        } while try await !accounts.database.accounts.createUser(UserRecord(userID: userID.rawValue, passwordHash: hash))
        return userID
    }

    /// `POST /register` with `guest_access_token`: the guest's own account becomes a full one
    /// (its user id kept, a password set), as Synapse allows; the guest's username only.
    static func upgradeGuest(_ context: RequestContext, guestToken: String, body: [String: JSON]) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let session = try await accounts.sessions.authenticate(tokenHash: Secrets.hash(guestToken), now: Clock.nowMilliseconds(),
                                                               ip: context.clientAddress, userAgent: nil)
        guard session.isGuest else { throw MatrixError(.forbidden, "Only guests can be upgraded") }
        if let username = body["username"]?.stringValue, username.lowercased() != String(session.user.localpart) {
            throw MatrixError(.forbidden, "Cannot upgrade another user")
        }
        guard let password = try validatedPassword(body) else { throw MatrixError(.missingParam, "Missing password") }
        try await UserInteractiveAuth(flows: [[.dummy]]).check(body, accounts: accounts)
        guard var record = try await accounts.database.accounts.user(id: session.user) else {
            throw MatrixError(.forbidden, "Unknown guest")
        }
        record.passwordHash = try await accounts.passwords.hash(password)
        record.isGuest = false
        try await accounts.database.accounts.updateUser(record)
        return try await signIn(session.user, body: body, context: context)
    }

    /// `POST /register?kind=guest`: a guest account with a numeric localpart, signed in.
    static func registerGuest(_ context: RequestContext, body: [String: JSON]) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        try context.rateLimit("register", accounts.configuration.rateLimits.registration)
        guard accounts.configuration.registration.allowGuests else { throw MatrixError(.forbidden, "Guest access is disabled") }
        var localpart = ""
        for b in Secrets.token(prefix: "g").utf8.dropFirst(2) where localpart.count < 12 {
            localpart.append(String(b % 10))
        }
        let userID = try UserID(parsing: "@\(localpart):\(accounts.serverName)")
        guard try await accounts.database.accounts.createUser(UserRecord(userID: userID.rawValue, isGuest: true)) else {
            throw MatrixError(.userInUse, "User ID already taken.")
        }
        return try await signIn(userID, body: body, context: context)
    }

    /// Issues the new account's first session, with the device fields of the body.
    static func signIn(_ userID: UserID, body: [String: JSON], context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let session = try await accounts.issueSession(
            userID: userID, deviceID: body["device_id"]?.stringValue,
            displayName: body["initial_device_display_name"]?.stringValue,
            refreshable: body["refresh_token"]?.boolValue ?? false, ip: context.clientAddress)
        return .json(.object(accounts.sessionBody(userID: userID, session)))
    }
}

extension UserID {
    /// The strict localpart grammar, byte by byte (`a-z 0-9 . _ = - / +`).
    static func isStrictLocalpartByteValue(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
            || b == UInt8(ascii: "=") || b == UInt8(ascii: "_") || b == UInt8(ascii: "/") || b == UInt8(ascii: "+")
    }
}
