import CSodium

/// SHA-256 and ed25519 through libsodium. `sodium_init` runs once, on first use.
enum Sodium {
    static let initialized: Bool = sodium_init() >= 0

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        bytes.withUnsafeBufferPointer { b in
            _ = crypto_hash_sha256(&digest, b.baseAddress, UInt64(b.count))
        }
        return digest
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }
}

/// SHA-256 of bytes. Used for content hashes, reference hashes and media.
public func sha256(_ bytes: [UInt8]) -> [UInt8] { Sodium.sha256(bytes) }

/// An ed25519 public key: verifies signatures made by a `SigningKey` or any other
/// ed25519 implementation. Owned by whoever caches server keys (federation).
public struct VerifyKey: Sendable, Hashable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(MatrixError) {
        guard bytes.count == Int(crypto_sign_PUBLICKEYBYTES) else {
            throw MatrixError(.invalidParam, "An ed25519 public key is 32 bytes")
        }
        self.bytes = bytes
    }

    /// From unpadded Base64, as served in `verify_keys`.
    public init(base64: String) throws(MatrixError) {
        guard let b = Base64.decode(base64) else { throw MatrixError(.invalidParam, "Invalid base64 key") }
        try self.init(bytes: b)
    }

    public var base64: String { Base64.encode(bytes) }

    /// Verifies a detached signature over `message`.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        precondition(Sodium.initialized, "libsodium failed to initialise")
        guard signature.count == Int(crypto_sign_BYTES) else { return false }
        return message.withUnsafeBufferPointer { m in
            crypto_sign_verify_detached(signature, m.baseAddress, UInt64(m.count), bytes) == 0
        }
    }
}
