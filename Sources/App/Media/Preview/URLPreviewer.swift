import Matrix
import Persistence
import Synchronization
import Transport

/// Where a preview's image goes: stored as local media by the user who asked, answering its
/// media id. `MediaRepository` is one (`URLPreviewEndpoints`).
protocol PreviewImageStoring: Sendable {
    func storePreviewImage(_ bytes: [UInt8], contentType: String, fileName: String?, user: UserID) async throws -> String
    /// Deletes a preview's image once its preview is purged.
    func deletePreviewImage(_ mediaID: String) async throws
}

/// Answers `preview_url` (spec: "Content repository", `GET /media/preview_url`) as Synapse's
/// `UrlPreviewer` does: the stored preview of the URL for the asked time while it has not
/// expired, else the page fetched (`URLPreviewFetcher`), described (`OpenGraph`), its image
/// fetched and stored as media (`og:image` becomes its `mxc://` URI, `matrix:image:size` its
/// size), overlong keys and values pruned, stored for an hour (`URLPreviewStore`).
///
/// In memory, one entry per URL (single flight: concurrent requests share one fetch) kept
/// an hour after success, a minute after failure (Synapse keeps failures an hour), at most
/// `maxMemoryEntries`; at most `maxConcurrentFetches` fetches at a time. Owned by `MyelinApp` (`app.urlPreviews`); its HTTP client thread
/// starts on the first preview.
final class URLPreviewer: Sendable {
    let configuration: Configuration.URLPreview
    let serverName: String
    let store: URLPreviewStore

    static let maxMemoryEntries = 1024
    /// Past this many fetches in flight (distinct URLs) a preview is 429 `M_LIMIT_EXCEEDED`:
    /// memory stays within about this many times `max_spider_size`, twice.
    static let maxConcurrentFetches = 8
    static let successLifetimeMs: Int64 = 3_600_000
    static let failureLifetimeMs: Int64 = 60_000
    /// An expired preview (and its image) is kept this long: clients show previews of old
    /// messages for a while (Synapse keeps preview images two days).
    static let retentionAfterExpiryMs: Int64 = 2 * 86_400_000
    /// Synapse's `OG_TAG_NAME_MAXLEN` and `OG_TAG_VALUE_MAXLEN`.
    static let maxKeyLength = 50
    static let maxValueLength = 1000

    private struct Flight {
        let task: Task<[UInt8], any Error>
        let startedMs: Int64
        var lifetimeMs: Int64 = .max
    }

    private let flights = Mutex<[String: Flight]>([:])
    private let client = Mutex<HTTPClient?>(nil)
    private let stopped = Mutex(false)
    private let lastPurgeMs = Mutex<Int64>(0)
    /// Previews fetching now, each holding up to `max_spider_size` bytes (twice, while parsing).
    private let fetching = Atomic<Int>(0)

    init(configuration: Configuration.URLPreview, serverName: String, store: URLPreviewStore) {
        self.configuration = configuration
        self.serverName = serverName
        self.store = store
    }

    /// The Open Graph JSON of `url` for the time `ts`, fetched by `user`.
    func preview(url text: String, ts: Int64, user: UserID, images: any PreviewImageStoring) async throws -> [UInt8] {
        guard let url = PreviewURL(text) else {
            throw MatrixError(.invalidParam, "url must be an absolute http or https URL")
        }
        try URLPreviewFetcher.checkURLBlacklist(url, configuration.urlBlacklist)
        let key = url.string
        let now = Clock.nowMilliseconds()
        let task: Task<[UInt8], any Error> = flights.withLock { table in
            if let flight = table[key], now - flight.startedMs < flight.lifetimeMs { return flight.task }
            if table.count >= Self.maxMemoryEntries { Self.evict(&table, now: now) }
            let task = Task { try await self.generate(url, ts: ts, user: user, images: images) }
            table[key] = Flight(task: task, startedMs: now)
            return task
        }
        let result = await task.result
        flights.withLock { table in
            guard let flight = table[key], flight.task == task, flight.lifetimeMs == .max else { return }
            if case .failure(let error as MatrixError) = result, error.code == .limitExceeded {
                table.removeValue(forKey: key)  // busy now says nothing about the URL
            } else {
                table[key]?.lifetimeMs = (try? result.get()) == nil ? Self.failureLifetimeMs : Self.successLifetimeMs
            }
        }
        return try result.get()
    }

    /// Expired entries go, then the oldest until there is room for one more.
    private static func evict(_ table: inout [String: Flight], now: Int64) {
        table = table.filter { now - $0.value.startedMs < $0.value.lifetimeMs }
        while table.count >= maxMemoryEntries, let oldest = table.min(by: { $0.value.startedMs < $1.value.startedMs }) {
            table.removeValue(forKey: oldest.key)
        }
    }

    /// Synapse's `_do_preview`: the store, else a fetch.
    private func generate(_ url: PreviewURL, ts: Int64, user: UserID, images: any PreviewImageStoring) async throws -> [UInt8] {
        if let cached = try await store.preview(url: url.string, at: ts), cached.expiresTs > ts {
            return Array(cached.og.utf8)
        }
        let fetcher = try fetcher()
        let timeout = MatrixError(.unknown, "Timed out fetching the URL", status: 504)
        guard fetching.add(1, ordering: .relaxed).newValue <= Self.maxConcurrentFetches else {
            fetching.subtract(1, ordering: .relaxed)
            throw MatrixError(.limitExceeded, "Too many URL previews in progress", extra: ["retry_after_ms": 1000])
        }
        let (og, mediaID) = try await withDeadline(.seconds(configuration.timeoutSeconds), error: timeout) {
            // Released when the work ends, not at the deadline: its body is held until then.
            defer { self.fetching.subtract(1, ordering: .relaxed) }
            return try await self.describe(url, fetcher: fetcher, user: user, images: images)
        }
        let text = JSON.object(Self.pruned(og)).encodedString
        let now = Clock.nowMilliseconds()
        try await store.store(.init(url: url.string, fetchedTs: now, expiresTs: now + Self.successLifetimeMs, og: text,
                                    mediaID: mediaID))
        await purgeExpired(now: now, images: images)
        return Array(text.utf8)
    }

    /// The page (or image) at `url` as Open Graph, and the media id of the image stored.
    private func describe(_ url: PreviewURL, fetcher: URLPreviewFetcher, user: UserID,
                          images: any PreviewImageStoring) async throws -> ([String: JSON], String?) {
        let document = try await fetcher.fetch(url) { URLPreviewFetcher.Document.isHTML($0) || URLPreviewFetcher.Document.isImage($0) }
        if document.isImage {
            var og: [String: JSON] = ["og:description": document.fileName.map(JSON.string) ?? .null]
            let mediaID = try await attachImage(document, to: &og, user: user, images: images)
            return (og, mediaID)
        }
        var og = OpenGraph.parse(html: document.body, contentType: document.contentType)
        // The raw image URL goes; an mxc URI replaces it only if the image is fetched and stored.
        guard let reference = og.removeValue(forKey: "og:image")?.stringValue, !reference.isEmpty,
              let imageURL = document.url.resolve(reference) else { return (og, nil) }
        do {
            let image = try await fetcher.fetch(imageURL) { URLPreviewFetcher.Document.isImage($0) }
            let mediaID = try await attachImage(image, to: &og, user: user, images: images)
            return (og, mediaID)
        } catch {
            // An image that cannot be had does not fail the preview (Synapse's rule).
            return (og, nil)
        }
    }

    /// Stores `image` as media and describes it in `og`.
    private func attachImage(_ image: URLPreviewFetcher.Document, to og: inout [String: JSON], user: UserID,
                             images: any PreviewImageStoring) async throws -> String {
        let type = String(image.contentType.prefix(while: { $0 != ";" })).trimmingWhitespace()
        let mediaID = try await images.storePreviewImage(image.body, contentType: type, fileName: image.fileName, user: user)
        og["og:image"] = .string("mxc://\(serverName)/\(mediaID)")
        og["og:image:type"] = .string(type)
        og["matrix:image:size"] = .int(Int64(image.body.count))
        if let (width, height) = ImageDimensions.of(image.body) {
            og["og:image:width"] = .int(Int64(width))
            og["og:image:height"] = .int(Int64(height))
        }
        return mediaID
    }

    /// Keys over 50 characters and values over 1,000 go (Synapse's pruning).
    static func pruned(_ og: [String: JSON]) -> [String: JSON] {
        og.filter { key, value in
            guard key.count <= maxKeyLength else { return false }
            if case .string(let s) = value { return s.count <= maxValueLength }
            return true
        }
    }

    /// Previews expired for `retentionAfterExpiryMs` are deleted with their images, at most
    /// once a minute, after a store.
    func purgeExpired(now: Int64, images: any PreviewImageStoring) async {
        let due = lastPurgeMs.withLock { last in
            guard now - last >= 60_000 else { return false }
            last = now
            return true
        }
        guard due else { return }
        guard let mediaIDs = try? await store.deleteExpired(before: now - Self.retentionAfterExpiryMs) else { return }
        for mediaID in mediaIDs { try? await images.deletePreviewImage(mediaID) }
    }

    /// The fetcher over the preview's HTTP client, made on first use.
    private func fetcher() throws -> URLPreviewFetcher {
        let client = try self.client.withLock { client -> HTTPClient in
            if let client { return client }
            guard !stopped.withLock({ $0 }) else { throw MatrixError(.unknown, "Shutting down", status: 503) }
            var http = HTTPClientConfiguration()
            http.blacklist = configuration.blacklist
            http.maxResponseBytes = configuration.maxSpiderSize
            http.connectTimeoutMs = UInt64(configuration.timeoutSeconds) * 1000
            http.readTimeoutMs = UInt64(configuration.timeoutSeconds) * 1000
            http.maxConnectionsPerHost = 4
            http.maxConnections = 64
            http.idleTimeoutMs = 10_000
            let made = try HTTPClient(configuration: http)
            client = made
            return made
        }
        return URLPreviewFetcher(client: client, configuration: configuration)
    }

    /// Stops the HTTP client (server shutdown).
    func shutdown() {
        stopped.withLock { $0 = true }
        client.withLock { $0?.shutdown() }
    }
}
