import Matrix
import Persistence
import Transport

/// Synapse's registration-token admin API (`/_synapse/admin/v1/registration_tokens`,
/// docs/admin.md, "Registration tokens and rate limits"). The tokens are stored in
/// `registration_tokens`; `POST /register`'s `m.login.registration_token` stage redeems them
/// (`RegistrationTokens.reserve/finish`), counting `pending` while a registration runs and
/// `completed` once its account exists.
enum AdminRegistrationTokens {
    static let prefix = "/_synapse/admin/v1/registration_tokens"
    /// Synapse's token alphabet and bound.
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-".utf8)
    static let maxLength = 64

    static func register(_ routes: inout RouteBuilder) {
        routes.get(prefix, list)
        routes.post(prefix + "/new", create)
        routes.get(prefix + "/{token}", get)
        routes.put(prefix + "/{token}", update)
        routes.delete(prefix + "/{token}", delete)
    }

    static func json(_ record: RegistrationTokenRecord) -> JSON {
        .object([
            "token": .string(record.token),
            "uses_allowed": record.usesAllowed.map { .int($0) } ?? .null,
            "pending": .int(record.pending),
            "completed": .int(record.completed),
            "expiry_time": record.expiryTime.map { .int($0) } ?? .null,
        ])
    }

    static func isValidToken(_ token: String) -> Bool {
        !token.isEmpty && token.utf8.count <= maxLength && token.utf8.allSatisfy { alphabet.contains($0) }
    }

    /// `uses_allowed`: absent (`nil`), null (`.some(nil)`, unlimited) or a non-negative integer.
    static func usesAllowed(_ body: [String: JSON]) throws -> Int64?? {
        guard let value = body["uses_allowed"] else { return nil }
        if value.isNull { return .some(nil) }
        guard case .int(let n) = value, n >= 0 else {
            throw MatrixError(.invalidParam, "uses_allowed must be a non-negative integer or null")
        }
        return .some(n)
    }

    /// `expiry_time`: absent, null (never) or a time (ms) not in the past.
    static func expiryTime(_ body: [String: JSON], now: Int64) throws -> Int64?? {
        guard let value = body["expiry_time"] else { return nil }
        if value.isNull { return .some(nil) }
        guard case .int(let t) = value else { throw MatrixError(.invalidParam, "expiry_time must be an integer or null") }
        guard t >= now else { throw MatrixError(.invalidParam, "expiry_time must not be in the past") }
        return .some(t)
    }

    /// `GET .../registration_tokens?valid=true|false`.
    static func list(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        var valid: Bool?
        if let text = context.query["valid"] {
            guard text == "true" || text == "false" else { throw MatrixError(.invalidParam, "valid must be true or false") }
            valid = text == "true"
        }
        let now = Clock.nowMilliseconds()
        var tokens = try await context.app.database.security.registrationTokens()
        if let valid { tokens = tokens.filter { $0.isValid(now: now) == valid } }
        return .json(["registration_tokens": .array(tokens.map(json))])
    }

    static func get(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        guard let record = try await context.app.database.security.registrationToken(context.parameter("token")) else {
            throw MatrixError(.notFound, "No such registration token")
        }
        return .json(json(record))
    }

    /// `POST .../registration_tokens/new` `{token?, uses_allowed?, expiry_time?, length?}`.
    static func create(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let body = try await context.jsonObject()
        let now = Clock.nowMilliseconds()
        let uses = try usesAllowed(body) ?? nil
        let expiry = try expiryTime(body, now: now) ?? nil
        let store = context.app.database.security
        if let value = body["token"], !value.isNull {
            guard let token = value.stringValue, isValidToken(token) else {
                throw MatrixError(.invalidParam, "token must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '~', '-'")
            }
            guard body["length"] == nil else { throw MatrixError(.invalidParam, "Give token or length, not both") }
            let record = RegistrationTokenRecord(token: token, usesAllowed: uses, expiryTime: expiry)
            guard try await store.createRegistrationToken(record) else {
                throw MatrixError(.invalidParam, "Token already exists")
            }
            return .json(json(record))
        }
        var length = 16
        if let value = body["length"] {
            guard case .int(let n) = value, (1...Int64(maxLength)).contains(n) else {
                throw MatrixError(.invalidParam, "length must be an integer from 1 to 64")
            }
            length = Int(n)
        }
        // A collision is possible with short tokens: try a few, as Synapse does.
        for _ in 0..<5 {
            // Rejection sampling: bytes past the largest multiple of the alphabet would bias it.
            var chars: [UInt8] = []
            let bound = 256 - 256 % alphabet.count
            while chars.count < length {
                for byte in Sodium.randomBytes(length) where Int(byte) < bound && chars.count < length {
                    chars.append(alphabet[Int(byte) % alphabet.count])
                }
            }
            let token = String(decoding: chars, as: UTF8.self)
            let record = RegistrationTokenRecord(token: token, usesAllowed: uses, expiryTime: expiry)
            if try await store.createRegistrationToken(record) { return .json(json(record)) }
        }
        throw MatrixError(.unknown, "Could not find a free token of that length", status: 500)
    }

    /// `PUT .../registration_tokens/{token}` `{uses_allowed?, expiry_time?}`.
    static func update(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let body = try await context.jsonObject()
        let uses = try usesAllowed(body)
        let expiry = try expiryTime(body, now: Clock.nowMilliseconds())
        guard let record = try await context.app.database.security.updateRegistrationToken(
            context.parameter("token"), usesAllowed: uses, expiryTime: expiry) else {
            throw MatrixError(.notFound, "No such registration token")
        }
        return .json(json(record))
    }

    static func delete(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        guard try await context.app.database.security.deleteRegistrationToken(context.parameter("token")) else {
            throw MatrixError(.notFound, "No such registration token")
        }
        return .json([:])
    }
}
