import COpenSSL

/// SHA-256 over bytes that arrive in pieces: media uploads hash each chunk as it streams, so
/// the digest is ready when the last byte is written and no byte is read twice. OpenSSL's
/// EVP digest, not libsodium's: OpenSSL uses the CPU's SHA extensions (1.4 GB/s here against
/// libsodium's portable 180 MB/s, which made hashing most of a 1 GiB upload's time). Owned
/// by one upload at a time: copies share one digest context, so it must not be shared.
public struct SHA256Hasher: Sendable {
    /// The EVP context, freed with the last copy. `@unchecked Sendable`: used by one owner
    /// at a time (an upload actor or one function).
    private final class Context: @unchecked Sendable {
        let pointer: OpaquePointer

        init() {
            guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
                preconditionFailure("OpenSSL cannot make a SHA-256 context")
            }
            pointer = context
        }

        deinit { EVP_MD_CTX_free(pointer) }
    }

    private let context = Context()

    public init() {}

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { b in
            _ = EVP_DigestUpdate(context.pointer, b.baseAddress, b.count)
        }
    }

    /// The digest, as 64 lower-case hex digits. The hasher must not be updated afterwards.
    public mutating func finalHex() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = EVP_DigestFinal_ex(context.pointer, &digest, &length)
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
