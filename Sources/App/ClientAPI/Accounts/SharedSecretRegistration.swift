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
        routes.get("/_synapse/admin/v1/register") { context in
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
        routes.post("/_synapse/admin/v1/register") { context in
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
            guard let mac = body["mac"]?.stringValue, constantTimeEqual(Array(mac.lowercased().utf8), Array(expected.utf8)) else {
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
                                                          ip: context.request.remoteAddress)
            return .json(.object(accounts.sessionBody(userID: userID, session)))
        }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

/// HMAC-SHA1 (RFC 2104 over FIPS 180-4 SHA-1), only for the Synapse-compatible MAC above:
/// libsodium has no SHA-1, and the wire format is fixed by Synapse's tools.
enum HMACSHA1 {
    static func hex(key: [UInt8], message: [UInt8]) -> String {
        let digest = mac(key: key, message: message)
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }

    static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var k = key.count > 64 ? sha1(key) : key
        k += [UInt8](repeating: 0, count: 64 - k.count)
        let inner = sha1(k.map { $0 ^ 0x36 } + message)
        return sha1(k.map { $0 ^ 0x5c } + inner)
    }

    static func sha1(_ input: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
        var message = input
        let bitLength = UInt64(input.count) * 8
        message.append(0x80)
        while message.count % 64 != 56 { message.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: message.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(message[j]) << 24 | UInt32(message[j + 1]) << 16 | UInt32(message[j + 2]) << 8 | UInt32(message[j + 3])
            }
            for i in 16..<80 { w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotatedLeft(1) }
            var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32)
                switch i {
                case 0..<20: (f, k) = ((b & c) | (~b & d), 0x5A827999)
                case 20..<40: (f, k) = (b ^ c ^ d, 0x6ED9EBA1)
                case 40..<60: (f, k) = ((b & c) | (b & d) | (c & d), 0x8F1BBCDC)
                default: (f, k) = (b ^ c ^ d, 0xCA62C1D6)
                }
                let t = a.rotatedLeft(5) &+ f &+ e &+ k &+ w[i]
                (e, d, c, b, a) = (d, c, b.rotatedLeft(30), a, t)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e
        }
        return h.flatMap { v in [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    }
}

extension UInt32 {
    func rotatedLeft(_ n: UInt32) -> UInt32 { (self << n) | (self >> (32 - n)) }
}
