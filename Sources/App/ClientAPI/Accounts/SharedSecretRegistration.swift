import COpenSSL
import Matrix
import Persistence
import Synchronization
import Transport

/// Synapse's admin registration API, `GET/POST /_synapse/admin/v1/register`: with
/// `registration.shared_secret` set, whoever knows the secret creates accounts (even when
/// open registration is off), as `register_new_matrix_user` and test harnesses do. The MAC is
/// HMAC-SHA1 over `nonce NUL username NUL password NUL admin|notadmin [NUL user_type]`, hex;
/// a nonce is good once, for a minute (in memory, as in Synapse).
enum SharedSecretRegistration {
    static let nonceLifetimeMs: Int64 = 60_000
    static let nonces = Mutex<[String: Int64]>([:])

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_synapse/admin/v1/register", nonce)
        routes.get("/_synapse/admin/v1/register/nonce", nonce)  // the seed's path of the same
        routes.post("/_synapse/admin/v1/register", registerWithSharedSecret)
    }

    /// `GET /_synapse/admin/v1/register`: a fresh nonce for one registration.
    static func nonce(_ context: RequestContext) async throws -> HTTPResponse {
        guard context.app.configuration.registration.sharedSecret != nil else {
            throw MatrixError(.unknown, "Shared secret registration is not enabled", status: 400)
        }
        let nonce = String(Secrets.token(prefix: "n").dropFirst(2))
        let now = Clock.nowMilliseconds()
        nonces.withLock { nonces in
            nonces = nonces.filter { $0.value > now }
            nonces[nonce] = now + nonceLifetimeMs
        }
        return .json(["nonce": .string(nonce)])
    }

    /// `POST /_synapse/admin/v1/register`: creates an account whose request carries the secret's MAC.
    static func registerWithSharedSecret(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        guard let secret = context.app.configuration.registration.sharedSecret else {
            throw MatrixError(.unknown, "Shared secret registration is not enabled", status: 400)
        }
        let body = try await context.jsonObject()
        guard let nonce = body["nonce"]?.stringValue else { throw MatrixError(.missingParam, "nonce must be specified") }
        let now = Clock.nowMilliseconds()
        let known = nonces.withLock { nonces in nonces.removeValue(forKey: nonce).map { $0 > now } ?? false }
        guard known else { throw MatrixError(.unknown, "unrecognised nonce", status: 400) }
        guard let username = body["username"]?.stringValue, username.utf8.count <= 512 else {
            throw MatrixError(.invalidParam, "Invalid username")
        }
        guard let password = body["password"]?.stringValue, password.utf8.count <= Registration.maxPasswordLength else {
            throw MatrixError(.invalidParam, "Invalid password")
        }
        let admin = body["admin"]?.boolValue ?? false
        var message = Array(nonce.utf8) + [0] + Array(username.utf8) + [0] + Array(password.utf8) + [0]
            + Array((admin ? "admin" : "notadmin").utf8)
        if let userType = body["user_type"]?.stringValue { message += [0] + Array(userType.utf8) }
        let expected = HMACSHA1.hex(key: Array(secret.utf8), message: message)
        guard let mac = body["mac"]?.stringValue, Secrets.constantTimeEqual(mac.lowercased(), expected) else {
            throw MatrixError(.forbidden, "HMAC incorrect")
        }
        let userID = try Registration.validatedNewUserID(username.lowercased(), serverName: accounts.serverName)
        let hash = try await accounts.passwords.hash(password)
        let record = UserRecord(userID: userID.rawValue, passwordHash: hash, isAdmin: admin,
                                displayname: body["displayname"]?.stringValue)
        guard try await accounts.database.accounts.createUser(record) else {
            throw MatrixError(.userInUse, "User ID already taken.")
        }
        context.app.logger.info("registered \(userID) by shared secret\(admin ? " (admin)" : "")")
        let session = try await accounts.issueSession(userID: userID, deviceID: nil, displayName: nil, refreshable: false,
                                                      ip: context.clientAddress)
        return .json(.object(accounts.sessionBody(userID: userID, session)))
    }
}

/// HMAC-SHA1, only for the Synapse-compatible MAC above (libsodium has no SHA-1, and the wire
/// format is fixed by Synapse's tools): OpenSSL's, which the transport links anyway.
enum HMACSHA1 {
    static func hex(key: [UInt8], message: [UInt8]) -> String {
        let digest = mac(key: key, message: message)
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }

    static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                HMAC(EVP_sha1(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count,
                     &out, &length)
            }
        }
        precondition(result != nil, "OpenSSL HMAC-SHA1 failed")
        return Array(out.prefix(Int(length)))
    }
}
