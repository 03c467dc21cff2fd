import Synchronization
import Dispatch
import Matrix

/// Access, refresh and OpenID tokens: random, shown to the client once, stored only as their
/// SHA-256 (hex). 32 random bytes make a token unguessable, so a fast hash is enough here;
/// passwords, which are guessable, go through `PasswordHasher`.
enum Secrets {
    /// A fresh token, `<prefix>_` + 43 URL-safe base64 characters (256 random bits).
    static func token(prefix: String) -> String {
        prefix + "_" + Base64.encodeURLSafe(Sodium.randomBytes(32))
    }

    /// Compares secrets in time that depends only on their lengths (libsodium's
    /// `sodium_memcmp` over equal-length digests), so a guess learns nothing from timing.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        Sodium.constantTimeEqual(sha256(Array(a.utf8)), sha256(Array(b.utf8)))
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

/// Argon2id password hashing (libsodium `crypto_pwhash_str`; by default its "interactive"
/// limits: 2 passes over 64 MiB, `security.password_hash_cost` changes them for new hashes).
/// Each hash or verification takes tens of milliseconds of CPU, so it
/// runs on dedicated Dispatch queues — never on Swift's cooperative pool, which would starve
/// every other request. Two queues bound the memory (2 × 64 MiB) and leave the machine's
/// other work room to run. Owned by `Accounts`; called by registration, login, UIA and
/// password change.
final class PasswordHasher: Sendable {
    private let queues: [DispatchQueue]
    private let next = Counter()
    /// Hashes queued or running. Bounded: past `maxQueued` the answer is 429 at once, so a
    /// flood of password attempts cannot put seconds of Argon2 work ahead of every login.
    private let queued = Atomic<Int>(0)
    let maxQueued: Int
    /// The cost of new hashes (a stored hash is verified with the parameters it records).
    let cost: Sodium.PasswordHash.Cost

    init(threads: Int = 2, maxQueued: Int = 16, cost: Sodium.PasswordHash.Cost = .interactive) {
        self.cost = cost
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

    /// The encoded Argon2id hash of `password` (`$argon2id$v=19$m=65536,t=2,p=1$...` at the
    /// default cost).
    func hash(_ password: String) async throws -> String {
        try admit()
        defer { queued.subtract(1, ordering: .relaxed) }
        let queue = queues[next.increment() % queues.count]
        let cost = cost
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                if let encoded = Sodium.PasswordHash.hash(password, cost: cost) {
                    continuation.resume(returning: encoded)
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
                continuation.resume(returning: Sodium.PasswordHash.verify(password, hash: hash))
            }
        }
    }
}

/// A thread-safe counter (round-robin over the hashing queues).
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() -> Int { value.add(1, ordering: .relaxed).oldValue }
}
