import CSodium

/// The libsodium primitives the server uses: SHA-256, random bytes, constant-time comparison,
/// ed25519 (`SigningKey`, `VerifyKey`) and Argon2id password hashing. The one place that calls
/// libsodium; App reaches it through this type (tokens, password hashes). `sodium_init` runs
/// once, on first use.
public enum Sodium {
    public static let initialized: Bool = sodium_init() >= 0

    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        bytes.withUnsafeBufferPointer { b in
            _ = crypto_hash_sha256(&digest, b.baseAddress, UInt64(b.count))
        }
        return digest
    }

    /// `count` bytes from the operating system's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }

    /// Equality of two byte strings of the same length in time that depends only on that
    /// length (`sodium_memcmp`); different lengths are unequal at once.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 }
        }
    }

    /// Argon2id password hashing (libsodium `crypto_pwhash_str`). The cost is an operator's
    /// choice (`security.password_hash_cost`); the default, libsodium's "interactive" limits
    /// (2 passes over 64 MiB), takes tens of milliseconds of CPU, so callers run it on a
    /// dedicated thread, never on the cooperative pool. A hash records its own parameters, so
    /// hashes made at any cost verify whatever the current setting.
    public enum PasswordHash {
        /// libsodium's named limits, and `minimum` (1 pass over 8 KiB: microseconds, for
        /// benchmarks that create thousands of accounts, never for real passwords).
        public enum Cost: String, Sendable, CaseIterable {
            case minimum, interactive, moderate, sensitive

            public var opsLimit: UInt64 {
                switch self {
                case .minimum: UInt64(crypto_pwhash_OPSLIMIT_MIN)
                case .interactive: UInt64(crypto_pwhash_OPSLIMIT_INTERACTIVE)
                case .moderate: UInt64(crypto_pwhash_OPSLIMIT_MODERATE)
                case .sensitive: UInt64(crypto_pwhash_OPSLIMIT_SENSITIVE)
                }
            }

            public var memLimit: Int {
                switch self {
                case .minimum: Int(crypto_pwhash_MEMLIMIT_MIN)
                case .interactive: Int(crypto_pwhash_MEMLIMIT_INTERACTIVE)
                case .moderate: Int(crypto_pwhash_MEMLIMIT_MODERATE)
                case .sensitive: Int(crypto_pwhash_MEMLIMIT_SENSITIVE)
                }
            }
        }

        /// The encoded hash of `password` (`$argon2id$v=19$m=65536,t=2,p=1$...` at the
        /// default cost), nil when libsodium could not allocate its memory.
        public static func hash(_ password: String, cost: Cost = .interactive) -> String? {
            precondition(initialized, "libsodium failed to initialise")
            var out = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
            let length = UInt64(password.utf8.count)
            let rc = password.withCString { p in crypto_pwhash_str(&out, p, length, cost.opsLimit, cost.memLimit) }
            guard rc == 0 else { return nil }
            let end = out.firstIndex(of: 0) ?? out.endIndex
            return String(decoding: out[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        /// True when `password` matches the encoded `hash`.
        public static func verify(_ password: String, hash: String) -> Bool {
            precondition(initialized, "libsodium failed to initialise")
            let length = UInt64(password.utf8.count)
            return hash.withCString { h in
                password.withCString { p in crypto_pwhash_str_verify(h, p, length) == 0 }
            }
        }
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
