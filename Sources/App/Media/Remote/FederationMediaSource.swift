import Actors
import Logging
import Matrix
import Persistence
import Synchronization
import Transport

/// Remote media (`mxc://other.server/id`) for local clients: the `RemoteMediaSource` that
/// `MyelinServer` gives the `MediaRepository` when federation is on. A cached copy (a row
/// with the remote `origin`, its file in the content store) answers at once; otherwise one
/// download per (origin, media id) runs however many clients ask (`flights`), through
/// `RemoteMediaFetcher`, and its result is recorded and shared. After each new file the
/// remote cache is trimmed to `media.remote_cache_max_bytes` (`RemoteMediaCache`).
final class FederationMediaSource: RemoteMediaSource {
    let fetcher: RemoteMediaFetcher
    let repository: MediaRepository
    let cache: RemoteMediaCache
    let logger: Logger
    private let flights = Mutex<[String: Task<(MediaRecord, String), any Error>]>([:])
    /// Stops the HTTP client of media downloads (at server shutdown).
    let shutdown: @Sendable () -> Void

    init(fetcher: RemoteMediaFetcher, repository: MediaRepository, cache: RemoteMediaCache, logger: Logger,
         shutdown: @escaping @Sendable () -> Void = {}) {
        self.fetcher = fetcher
        self.repository = repository
        self.cache = cache
        self.logger = logger
        self.shutdown = shutdown
    }

    func fetch(origin: String, mediaID: String) async throws -> (MediaRecord, path: String) {
        guard MediaIdentifiers.isValidMediaID(mediaID), let server = try? ServerName(parsing: origin) else {
            throw MatrixError(.notFound, "Media not found")
        }
        if let cached = try await cachedCopy(origin: origin, mediaID: mediaID) { return cached }
        let key = "\(origin)/\(mediaID)"
        let task = flights.withLock { running in
            if let task = running[key] { return task }
            // Not a child of this request: a client that goes away does not cancel the
            // download the others wait for.
            let task = Task<(MediaRecord, String), any Error> { [self] in
                defer { _ = flights.withLock { $0.removeValue(forKey: key) } }
                return try await download(server: server, mediaID: mediaID)
            }
            running[key] = task
            return task
        }
        let (record, path) = try await task.value
        return (record, path)
    }

    /// The cached row and file, with its access time refreshed; nil when not cached (or its
    /// file went missing, in which case the row is dropped and fetched again).
    func cachedCopy(origin: String, mediaID: String) async throws -> (MediaRecord, String)? {
        guard let record = try await repository.store.record(origin: origin, mediaID: mediaID),
              let sha256 = record.sha256 else { return nil }
        guard await repository.files.exists(sha256: sha256) else {
            try? await repository.delete(origin: origin, mediaID: mediaID)
            return nil
        }
        let now = Clock.nowMilliseconds()
        // Access times drive the LRU; a write per download at most once a minute.
        if now - record.lastAccessTs > 60_000 {
            try? await repository.store.touch(origin: origin, mediaID: mediaID, now: now)
        }
        return (record, repository.files.contentPath(sha256: sha256))
    }

    private func download(server: ServerName, mediaID: String) async throws -> (MediaRecord, String) {
        // Another request may have finished the same download just before this one started.
        if let cached = try await cachedCopy(origin: server.rawValue, mediaID: mediaID) { return cached }
        let fetched = try await fetcher.fetch(server: server, mediaID: mediaID)
        let now = Clock.nowMilliseconds()
        let record = MediaRecord(origin: server.rawValue, mediaID: mediaID, sha256: fetched.stored.sha256,
                                 size: fetched.stored.size, contentType: fetched.contentType, uploadName: fetched.fileName,
                                 uploader: nil, createdTs: now)
        do {
            if try await !repository.store.insert(record) {
                // Recorded meanwhile (another process on the same database): that row wins.
                await repository.removeIfUnreferenced(sha256: fetched.stored.sha256)
                if let cached = try await cachedCopy(origin: server.rawValue, mediaID: mediaID) { return cached }
                throw MatrixError(.notFound, "Media not found")
            }
        } catch {
            await repository.removeIfUnreferenced(sha256: fetched.stored.sha256)
            throw error
        }
        cache.trimSoon()
        return (record, repository.files.contentPath(sha256: fetched.stored.sha256))
    }
}
