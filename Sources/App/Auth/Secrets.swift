import Synchronization
import CSodium
import Dispatch
import Matrix

/// Access, refresh and OpenID tokens: random, shown to the client once, stored only as their
/// SHA-256 (hex). 32 random bytes make a token unguessable, so a fast hash is enough here;
/// passwords, which are guessable, go through `PasswordHasher`.
enum Secrets {
    static let initialized: Bool = sodium_init() >= 0

    /// A fresh token, `<prefix>_` + 43 URL-safe base64 characters (256 random bits).
    static func token(prefix: String) -> String {
        precondition(initialized, "libsodium failed to initialise")
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, 32) }
        return prefix + "_" + Base64.encodeURLSafe(bytes)
    }

    /// Compares secrets in time that depends only on their lengths (libsodium's
    /// `sodium_memcmp` over equal-length digests), so a guess learns nothing from timing.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let da = sha256(Array(a.utf8)), db = sha256(Array(b.utf8))
        return da.count == db.count && da.withUnsafeBytes { pa in
            db.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, da.count) == 0 }
        }
    }

    /// What the database stores for a token.
    static func hash(_ token: String) -> String {
        let digest = sha256(Array(token.utf8))
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in digest {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Argon2id password hashing (libsodium `crypto_pwhash_str`, the "interactive" limits: 2
/// passes over 64 MiB). Each hash or verification takes tens of milliseconds of CPU, so it
/// runs on dedicated Dispatch queues — never on Swift's cooperative pool, which would starve
/// every other request. Two queues bound the memory (2 × 64 MiB) and leave the machine's
/// other work room to run. Owned by `Accounts`; called by registration, login, UIA and
/// password change.
final class PasswordHasher: Sendable {
    static let opsLimit = UInt64(crypto_pwhash_OPSLIMIT_INTERACTIVE)
    static let memLimit = Int(crypto_pwhash_MEMLIMIT_INTERACTIVE)

    private let queues: [DispatchQueue]
    private let next = Counter()
    /// Hashes queued or running. Bounded: past `maxQueued` the answer is 429 at once, so a
    /// flood of password attempts cannot put seconds of Argon2 work ahead of every login.
    private let queued = Atomic<Int>(0)
    let maxQueued: Int

    init(threads: Int = 2, maxQueued: Int = 16) {
        queues = (0..<max(1, threads)).map { DispatchQueue(label: "myelin.argon2id.\($0)") }
        self.maxQueued = max(1, maxQueued)
    }

    /// Reserves a place in the queue or throws `M_LIMIT_EXCEEDED`.
    private func admit() throws(MatrixError) {
        if queued.add(1, ordering: .relaxed).newValue > maxQueued {
            queued.subtract(1, ordering: .relaxed)
            throw MatrixError(.limitExceeded, "Too many password checks in progress; try again shortly",
                              extra: ["retry_after_ms": .int(1000)])
        }
    }

    /// The encoded Argon2id hash of `password` (`$argon2id$v=19$m=65536,t=2,p=1$...`).
    func hash(_ password: String) async throws -> String {
        try admit()
        defer { queued.subtract(1, ordering: .relaxed) }
        let queue = queues[next.increment() % queues.count]
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                precondition(Secrets.initialized, "libsodium failed to initialise")
                var out = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
                let length = UInt64(password.utf8.count)
                let rc = password.withCString { p in
                    crypto_pwhash_str(&out, p, length, Self.opsLimit, Self.memLimit)
                }
                if rc == 0 {
                    let end = out.firstIndex(of: 0) ?? out.endIndex
                    continuation.resume(returning: String(decoding: out[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self))
                } else {
                    continuation.resume(throwing: MatrixError(.unknown, "Password hashing failed (out of memory)"))
                }
            }
        }
    }

    /// True when `password` matches the stored hash.
    func verify(_ password: String, hash: String) async throws -> Bool {
        try admit()
        defer { queued.subtract(1, ordering: .relaxed) }
        let queue = queues[next.increment() % queues.count]
        return await withCheckedContinuation { continuation in
            queue.async {
                precondition(Secrets.initialized, "libsodium failed to initialise")
                let length = UInt64(password.utf8.count)
                let ok = hash.withCString { h in
                    password.withCString { p in crypto_pwhash_str_verify(h, p, length) == 0 }
                }
                continuation.resume(returning: ok)
            }
        }
    }
}

/// A thread-safe counter (round-robin over the hashing queues).
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() -> Int { value.add(1, ordering: .relaxed).oldValue }
}
