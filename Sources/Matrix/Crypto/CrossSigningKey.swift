/// A user's cross-signing key (client-server API "Cross-signing", `CrossSigningKey` in the
/// specification's definitions): checked on construction for what every server must refuse,
/// and able to check signatures it made. The key service builds one from each uploaded key
/// (and from the stored ones) for `POST /keys/device_signing/upload` and
/// `/keys/signatures/upload`.
public struct CrossSigningKey: Sendable {
    /// What the key is for (its `usage`).
    public enum Usage: String, Sendable, CaseIterable {
        case master
        case selfSigning = "self_signing"
        case userSigning = "user_signing"
    }

    /// The key as uploaded.
    public let json: JSON
    public let userID: String
    /// `ed25519:<public key>`: the id under which it signs.
    public let keyID: String
    /// The unpadded base64 public key, which is also how the key is named where a device id
    /// would go (signature targets, verification).
    public let publicKey: String
    public let verifyKey: VerifyKey

    /// Checks the shape Synapse and the specification require: an object whose `user_id` is
    /// `userID`, whose `usage` contains `usage`, and whose `keys` hold exactly one entry,
    /// `"ed25519:<key>": "<key>"` with a 32-byte key in unpadded base64. Throws
    /// `M_INVALID_PARAM` (400) naming what is wrong.
    public init(_ json: JSON, userID: String, usage: Usage) throws(MatrixError) {
        let name = usage.rawValue + " key"
        guard json.objectValue != nil else { throw MatrixError(.invalidParam, "Invalid \(name): not an object") }
        guard json["user_id"]?.stringValue == userID else {
            throw MatrixError(.invalidParam, "Invalid \(name): user_id must be \(userID)")
        }
        guard let usages = json["usage"]?.arrayValue, usages.contains(.string(usage.rawValue)) else {
            throw MatrixError(.invalidParam, "Invalid \(name): usage must contain '\(usage.rawValue)'")
        }
        guard let keys = json["keys"]?.objectValue, keys.count == 1, let (id, value) = keys.first,
              let key = value.stringValue else {
            throw MatrixError(.invalidParam, "Invalid \(name): keys must hold exactly one key")
        }
        guard id.hasPrefix("ed25519:"), id.dropFirst("ed25519:".count) == key[...] else {
            throw MatrixError(.invalidParam, "Invalid \(name): the key id must be ed25519:<public key>")
        }
        guard let bytes = Base64.decode(key), let verifyKey = try? VerifyKey(bytes: bytes) else {
            throw MatrixError(.invalidParam, "Invalid \(name): not an unpadded base64 ed25519 public key")
        }
        if let signatures = json["signatures"], signatures.objectValue == nil {
            throw MatrixError(.invalidParam, "Invalid \(name): signatures must be an object")
        }
        self.json = json
        self.userID = userID
        self.keyID = id
        self.publicKey = key
        self.verifyKey = verifyKey
    }

    /// The public key a cross-signing key JSON names (the value of its only `keys` entry),
    /// without checking the rest of it.
    public static func publicKeyString(of json: JSON) -> String? {
        guard let keys = json["keys"]?.objectValue, keys.count == 1 else { return nil }
        return keys.values.first?.stringValue
    }

    /// Whether `signed` carries a valid signature by this key under `signatures.<userID>`
    /// (the key's owner signs with it). Throws `M_INVALID_SIGNATURE` (400) if not.
    public func checkSignature(on signed: JSON) throws(MatrixError) {
        try Self.checkSignature(on: signed, by: userID, keyID: keyID, key: verifyKey)
    }

    /// `signed` carries a valid signature by `entity` with `keyID` (public half `key`);
    /// else `M_INVALID_SIGNATURE` (400), as cross-signing reports every bad signature.
    public static func checkSignature(on signed: JSON, by entity: String, keyID: String, key: VerifyKey) throws(MatrixError) {
        do {
            try JSONSignatures.verify(signed, entity: entity, keyID: keyID, key: key)
        } catch let error where error.code == .unauthorized {
            throw MatrixError(.invalidSignature, error.message, status: 400)
        }
    }

    /// `a` and `b` are the same key apart from `signatures` and `unsigned` (what
    /// `/keys/signatures/upload` requires of the object it is sent against the stored one).
    public static func sameKey(_ a: JSON, _ b: JSON) -> Bool {
        guard var x = a.objectValue, var y = b.objectValue else { return false }
        for field in ["signatures", "unsigned"] {
            x.removeValue(forKey: field)
            y.removeValue(forKey: field)
        }
        return x == y
    }
}

extension MatrixError.Code {
    /// A signature that does not verify (cross-signing: `POST /keys/device_signing/upload`
    /// and the `failures` of `/keys/signatures/upload`).
    public static let invalidSignature: MatrixError.Code = "M_INVALID_SIGNATURE"
}
