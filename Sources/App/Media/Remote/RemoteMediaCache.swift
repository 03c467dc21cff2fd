import Logging
import Persistence
import Synchronization

/// Keeps the cached remote media under `media.remote_cache_max_bytes`: when a download
/// pushes the total over the limit, a sweep deletes the least recently accessed remote rows
/// (and each file once no row references it, through `MediaRepository.delete`) until the
/// total is back under the limit. Sweeps are bounded (`maxPerSweep` rows, in batches) and
/// one runs at a time; a sweep asked for while one runs runs again after it. Owned by
/// `FederationMediaSource`. Zero means no limit.
final class RemoteMediaCache: Sendable {
    let repository: MediaRepository
    let store: RemoteMediaCacheStore
    let localOrigin: String
    let maxBytes: Int64
    let logger: Logger
    static let batch = 100
    static let maxPerSweep = 2_000
    /// (a sweep runs, another was asked for meanwhile)
    private let state = Mutex<(running: Bool, again: Bool)>((false, false))

    init(repository: MediaRepository, store: RemoteMediaCacheStore, localOrigin: String, maxBytes: Int64, logger: Logger) {
        self.repository = repository
        self.store = store
        self.localOrigin = localOrigin
        self.maxBytes = maxBytes
        self.logger = logger
    }

    /// Starts a sweep in the background unless one runs (which then runs once more).
    func trimSoon() {
        guard maxBytes > 0 else { return }
        let start = state.withLock { current -> Bool in
            if current.running { current.again = true; return false }
            current.running = true
            return true
        }
        guard start else { return }
        Task.detached { [self] in
            while true {
                do { _ = try await trim() } catch {
                    logger.warning("remote media cache sweep failed: \(error)")
                }
                let again = state.withLock { current -> Bool in
                    if current.again { current.again = false; return true }
                    current.running = false
                    return false
                }
                if !again { return }
            }
        }
    }

    /// One sweep: evicts least recently used remote media until the cache is within
    /// `maxBytes` or `maxPerSweep` rows went. Returns the rows evicted.
    @discardableResult
    func trim() async throws -> Int {
        guard maxBytes > 0 else { return 0 }
        var (total, _) = try await store.usage(localOrigin: localOrigin)
        var evicted = 0
        while total > maxBytes && evicted < Self.maxPerSweep {
            let oldest = try await store.leastRecentlyUsed(localOrigin: localOrigin, limit: Self.batch)
            if oldest.isEmpty { break }
            for entry in oldest where total > maxBytes {
                try await repository.delete(origin: entry.origin, mediaID: entry.mediaID)
                total -= entry.size
                evicted += 1
            }
        }
        if evicted > 0 { logger.info("remote media cache: evicted \(evicted), \(total) bytes left of \(maxBytes)") }
        return evicted
    }
}
