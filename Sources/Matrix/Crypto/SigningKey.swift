import CSodium

/// The server's ed25519 signing key. Generated on first start and kept in a file in the format
/// Synapse uses (`ed25519 <version> <unpadded base64 seed>`), so keys can move between the two.
/// This type parses and serialises that text; the App reads and writes the file
/// (`SigningKeyFile`) once at start-up and hands the key to whatever signs events, federation
/// requests and the `/_matrix/key/v2/server` response.
public struct SigningKey: Sendable {
    /// The key identifier's version part, e.g. `a_AbCd` in `ed25519:a_AbCd`.
    public let version: String
    /// The 32-byte seed (the private key as stored on disk).
    public let seed: [UInt8]
    /// libsodium's 64-byte secret key (seed followed by the public key).
    let secretKey: [UInt8]
    public let verifyKey: VerifyKey

    /// The signing key identifier: algorithm and version, `ed25519:<version>`.
    public var keyID: String { "ed25519:\(version)" }

    public init(seed: [UInt8], version: String) throws(MatrixError) {
        precondition(Sodium.initialized, "libsodium failed to initialise")
        guard seed.count == Int(crypto_sign_SEEDBYTES) else {
            throw MatrixError(.invalidParam, "An ed25519 seed is 32 bytes")
        }
        guard !version.isEmpty, version.utf8.allSatisfy(SigningKey.isVersionByte) else {
            throw MatrixError(.invalidParam, "Invalid key version")
        }
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        _ = crypto_sign_seed_keypair(&pk, &sk, seed)
        self.seed = seed
        self.version = version
        self.secretKey = sk
        self.verifyKey = try VerifyKey(bytes: pk)
    }

    /// Key versions are `[a-zA-Z0-9_]` (the key ID grammar of the server-server API).
    static func isVersionByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F
    }

    /// A fresh key with a random seed; the version is `a_` plus four random letters, as Synapse
    /// names its keys.
    public static func generate(version: String? = nil) -> SigningKey {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        let v = version ?? "a_" + String(decoding: Sodium.randomBytes(4).map { letters[Int($0) % letters.count] }, as: UTF8.self)
        // A 32-byte seed and a validated version cannot fail.
        return try! SigningKey(seed: Sodium.randomBytes(Int(crypto_sign_SEEDBYTES)), version: v)
    }

    /// Parses the first `ed25519` line of a Synapse-format signing key file.
    public init(fileContents: String) throws(MatrixError) {
        for line in fileContents.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 3, parts[0] == "ed25519" else { continue }
            guard let seed = Base64.decode(String(parts[2])) else {
                throw MatrixError(.invalidParam, "Signing key file: invalid base64 seed")
            }
            try self.init(seed: seed, version: String(parts[1]))
            return
        }
        throw MatrixError(.invalidParam, "Signing key file: no ed25519 key")
    }

    /// The file line for this key: `ed25519 <version> <unpadded base64 seed>\n`.
    public var fileContents: String { "ed25519 \(version) \(Base64.encode(seed))\n" }

    /// A detached ed25519 signature over `message`.
    public func signature(for message: [UInt8]) -> [UInt8] {
        var sig = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        message.withUnsafeBufferPointer { m in
            _ = crypto_sign_detached(&sig, nil, m.baseAddress, UInt64(m.count), secretKey)
        }
        return sig
    }

    /// Signs a JSON object as the appendix "Signing JSON" describes: the canonical JSON of the
    /// object without `signatures` and `unsigned` is signed, and the signature is added under
    /// `signatures.<entity>.<keyID>`, keeping any signatures already there.
    public func sign(json: JSON, entity: String, strict: Bool = true) throws(MatrixError) -> JSON {
        guard case .object(var object) = json else {
            throw MatrixError(.badJSON, "Only JSON objects can be signed")
        }
        let signatures = object.removeValue(forKey: "signatures")
        let unsigned = object.removeValue(forKey: "unsigned")
        let message = try JSON.object(object).canonicalEncoded(strict: strict)
        let sig = Base64.encode(signature(for: message))
        var all = signatures?.objectValue ?? [:]
        var mine = all[entity]?.objectValue ?? [:]
        mine[keyID] = .string(sig)
        all[entity] = .object(mine)
        object["signatures"] = .object(all)
        if let unsigned { object["unsigned"] = unsigned }
        return .object(object)
    }
}

/// Signature checks on JSON objects (appendix "Checking for a Signature").
public enum JSONSignatures {
    /// Verifies that `entity` signed `json` with the key `keyID` whose public half is `key`.
    /// Throws `M_UNAUTHORIZED` with the reason if not.
    public static func verify(_ json: JSON, entity: String, keyID: String, key: VerifyKey,
                              strict: Bool = true) throws(MatrixError) {
        guard case .object(var object) = json else {
            throw MatrixError(.unauthorized, "Not a JSON object")
        }
        guard let sigText = object["signatures"]?[entity]?[keyID]?.stringValue else {
            throw MatrixError(.unauthorized, "No signature from \(entity) with key \(keyID)")
        }
        guard let sig = Base64.decode(sigText) else {
            throw MatrixError(.unauthorized, "Signature from \(entity) is not valid base64")
        }
        object.removeValue(forKey: "signatures")
        object.removeValue(forKey: "unsigned")
        let message = try JSON.object(object).canonicalEncoded(strict: strict)
        guard key.verify(signature: sig, message: message) else {
            throw MatrixError(.unauthorized, "Invalid signature from \(entity) with key \(keyID)")
        }
    }

    /// The key IDs under `signatures.<entity>` whose algorithm is `ed25519` (the only one the
    /// specification defines); others are ignored as step 2 of the check requires.
    public static func ed25519KeyIDs(of json: JSON, entity: String) -> [String] {
        guard let sigs = json["signatures"]?[entity]?.objectValue else { return [] }
        return sigs.keys.filter { $0.hasPrefix("ed25519:") }.sorted()
    }
}

extension SigningKey {
    /// The body of `GET /_matrix/key/v2/server`, signed by this key: `server_name`,
    /// `verify_keys` (this key), `old_verify_keys` (retired keys with their `expired_ts`),
    /// `valid_until_ts` and `signatures`.
    public func serverKeysResponse(serverName: String, validUntilTS: Int64,
                                   oldVerifyKeys: [String: (key: VerifyKey, expiredTS: Int64)] = [:]) -> JSON {
        var old: [String: JSON] = [:]
        for (id, entry) in oldVerifyKeys {
            old[id] = ["key": .string(entry.key.base64), "expired_ts": .int(min(entry.expiredTS, JSON.canonicalIntegerLimit))]
        }
        let body: JSON = [
            "server_name": .string(serverName),
            "verify_keys": [keyID: ["key": .string(verifyKey.base64)]],
            "old_verify_keys": .object(old),
            "valid_until_ts": .int(min(validUntilTS, JSON.canonicalIntegerLimit)),
        ]
        // Strings and in-range integers only: canonical encoding cannot fail.
        return try! sign(json: body, entity: serverName)
    }
}

/// A remote server's keys as published at `/_matrix/key/v2/server` (server-server API
/// "Retrieving server keys"). Federation fetches the response, builds this, and caches the keys.
public struct ServerKeys: Sendable {
    public let serverName: String
    public let verifyKeys: [String: VerifyKey]
    public let oldVerifyKeys: [String: (key: VerifyKey, expiredTS: Int64)]
    public let validUntilTS: Int64

    /// Parses a key response and checks that it is signed by every key in `verify_keys` (the
    /// specification requires the response to be self-signed). Throws `M_UNAUTHORIZED` if a
    /// signature is missing or wrong, `M_BAD_JSON` on a wrong shape or server name.
    public init(response: JSON, expectedServerName: String) throws(MatrixError) {
        guard let name = response["server_name"]?.stringValue, name == expectedServerName else {
            throw MatrixError(.badJSON, "Key response is not for \(expectedServerName)")
        }
        guard let vk = response["verify_keys"]?.objectValue, !vk.isEmpty else {
            throw MatrixError(.badJSON, "Key response has no verify_keys")
        }
        var keys: [String: VerifyKey] = [:]
        for (id, entry) in vk where id.hasPrefix("ed25519:") {
            guard let b64 = entry["key"]?.stringValue else { throw MatrixError(.badJSON, "verify_keys.\(id) has no key") }
            keys[id] = try VerifyKey(base64: b64)
        }
        for (id, key) in keys {
            try JSONSignatures.verify(response, entity: name, keyID: id, key: key)
        }
        var old: [String: (key: VerifyKey, expiredTS: Int64)] = [:]
        for (id, entry) in response["old_verify_keys"]?.objectValue ?? [:] where id.hasPrefix("ed25519:") {
            guard let b64 = entry["key"]?.stringValue, let ts = entry["expired_ts"]?.intValue else { continue }
            old[id] = (try VerifyKey(base64: b64), ts)
        }
        self.serverName = name
        self.verifyKeys = keys
        self.oldVerifyKeys = old
        self.validUntilTS = response["valid_until_ts"]?.intValue ?? 0
    }
}
