/// One lock per content hash, held while a file enters or leaves `content/` together with
/// the rows that name it. Without it a deletion could count zero references and unlink a
/// file in the instant an identical upload found that file present, skipped its own
/// rename, and wrote its row — a row without bytes. Held briefly (a rename or unlink and
/// one statement); waiters are served in order. Owned by the App's `MediaRepository`.
public actor MediaContentLocks {
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    public init() {}

    /// Runs `body` holding the lock of `sha256`.
    public func withLock<T: Sendable>(_ sha256: String, _ body: @Sendable () async throws -> T) async throws -> T {
        await acquire(sha256)
        do {
            let result = try await body()
            release(sha256)
            return result
        } catch {
            release(sha256)
            throw error
        }
    }

    private func acquire(_ key: String) async {
        if waiters[key] == nil {
            waiters[key] = []  // held, nobody waiting
            return
        }
        await withCheckedContinuation { waiters[key, default: []].append($0) }
    }

    private func release(_ key: String) {
        guard var queue = waiters[key], !queue.isEmpty else {
            waiters[key] = nil
            return
        }
        // Handed to the next waiter: the key stays held.
        let next = queue.removeFirst()
        waiters[key] = queue
        next.resume()
    }
}
