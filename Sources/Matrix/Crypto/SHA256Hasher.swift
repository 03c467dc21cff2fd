import CSodium

/// SHA-256 over bytes that arrive in pieces (libsodium's `crypto_hash_sha256_init/update/
/// final`): media uploads hash each chunk as it streams, so the digest is ready when the
/// last byte is written and no byte is read twice. Owned by one upload at a time (a value
/// type; it is not shared).
public struct SHA256Hasher: Sendable {
    private var state = crypto_hash_sha256_state()

    public init() {
        precondition(Sodium.initialized, "libsodium failed to initialise")
        _ = crypto_hash_sha256_init(&state)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { b in
            _ = crypto_hash_sha256_update(&state, b.baseAddress, UInt64(b.count))
        }
    }

    /// The digest, as 64 lower-case hex digits. The hasher must not be updated afterwards.
    public mutating func finalHex() -> String {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256_final(&state, &digest)
        return Self.hex(digest)
    }

    /// Lower-case hex of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
