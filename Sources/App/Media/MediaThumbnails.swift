import Actors
import Matrix
import Persistence
import Synchronization

/// The thumbnails of media content (issue 18, item 3): which one answers a request, making
/// it once, and the pre-generated set made after an image upload. Files live under
/// `<media root>/thumbnails/`, rows in `media_thumbnails`; libvips runs on the `Thumbnailer`'s
/// own threads, created on first use.
///
/// One per `MyelinApp` (`app.thumbnails`); called by `ThumbnailEndpoints` and, after an
/// upload, by the media upload handlers (`pregenerate`).
final class MediaThumbnails: Sendable {
    let settings: Configuration.Media.Thumbnailing
    let enabled: Bool
    /// `<media root>`; thumbnail paths in rows are relative to it.
    let root: String
    let store: MediaThumbnailStore
    private let lazyThumbnailer = Mutex<Thumbnailer?>(nil)
    private let flights = ThumbnailFlights()

    init(configuration: Configuration, database: Database) {
        settings = configuration.media.thumbnailing
        enabled = configuration.media.thumbnails
        root = configuration.resolvedMediaPath
        store = database.mediaThumbnails
    }

    var thumbnailer: Thumbnailer {
        lazyThumbnailer.withLock { existing in
            if let existing { return existing }
            let made = Thumbnailer(threads: settings.threads, maxImagePixels: settings.maxImagePixels)
            existing = made
            return made
        }
    }

    /// A thumbnail ready to serve: its row and the absolute path of its file.
    struct Served: Sendable {
        var record: ThumbnailRecord
        var path: String
    }

    /// The thumbnail answering a request for the content `sha256` (file at `source`): the
    /// nearest configured size by Synapse's rule, or the exact size with
    /// `dynamic_thumbnails`; made now if it does not exist yet.
    func thumbnail(sha256: String, source: String, width: Int, height: Int, method: ThumbnailMethod,
                   animated: Bool) async throws -> Served {
        guard enabled else { throw MatrixError(.notFound, "Thumbnails are disabled") }
        let info = try await Self.mapErrors { try await self.thumbnailer.probe(path: source) }
        let animate = Thumbnailer.isAnimated(info, requested: animated)
        let wanted = Thumbnailer.outputFormat(for: info.format, animated: animate).contentType
        let requested = ThumbnailSize(width: width, height: height, method: method)
        var size = requested
        if !settings.dynamic {
            let existing = try await store.thumbnails(sha256: sha256, animated: animate)
            var candidates = existing.compactMap { row -> ThumbnailSelection.Candidate? in
                guard let method = ThumbnailMethod(rawValue: row.method) else { return nil }
                return ThumbnailSelection.Candidate(size: ThumbnailSize(width: row.width, height: row.height, method: method),
                                                    width: row.thumbnailWidth, height: row.thumbnailHeight,
                                                    contentType: row.contentType, length: row.size)
            }
            for configured in settings.sizes where !candidates.contains(where: { $0.size == configured }) {
                let (w, h) = ThumbnailSelection.expected(configured, sourceWidth: info.width, sourceHeight: info.height)
                candidates.append(ThumbnailSelection.Candidate(size: configured, width: w, height: h, contentType: wanted,
                                                               length: .max))
            }
            // No size of the requested method configured: the nearest of the other method.
            let chosen = ThumbnailSelection.select(candidates, width: width, height: height, method: method,
                                                   contentType: wanted)
                ?? ThumbnailSelection.select(candidates, width: width, height: height, method: method,
                                             contentType: wanted, anyMethod: true)
            size = chosen?.size ?? requested
        }
        return try await ensure(sha256: sha256, source: source, size: size, animated: animate)
    }

    /// Makes the configured sizes of freshly stored content, one after the other, in the
    /// background; content that is not an image (or too large) is skipped at its header.
    func pregenerate(sha256: String, source: String) {
        guard enabled, !settings.sizes.isEmpty else { return }
        Task {
            guard (try? await self.thumbnailer.probe(path: source)) != nil else { return }
            for size in settings.sizes {
                _ = try? await ensure(sha256: sha256, source: source, size: size, animated: false)
            }
        }
    }

    /// The thumbnail of exactly `size`, made once: concurrent requests for the same key wait
    /// for the one generation in flight.
    func ensure(sha256: String, source: String, size: ThumbnailSize, animated: Bool) async throws -> Served {
        if let served = try await existing(sha256: sha256, size: size, animated: animated) { return served }
        let key = "\(sha256)/\(size.width)x\(size.height)/\(size.method.rawValue)/\(animated)"
        return try await flights.run(key: key) {
            // A generation that finished between the look-up above and joining the flight.
            if let served = try await self.existing(sha256: sha256, size: size, animated: animated) { return served }
            return try await self.generate(sha256: sha256, source: source, size: size, animated: animated)
        }
    }

    private func existing(sha256: String, size: ThumbnailSize, animated: Bool) async throws -> Served? {
        let rows = try await store.thumbnails(sha256: sha256, animated: animated)
        guard let row = rows.first(where: { $0.width == size.width && $0.height == size.height && $0.method == size.method.rawValue })
        else { return nil }
        let path = root + "/" + row.path
        return await thumbnailer.exists(path) ? Served(record: row, path: path) : nil
    }

    private func generate(sha256: String, source: String, size: ThumbnailSize, animated: Bool) async throws -> Served {
        let thumbnailer = self.thumbnailer
        let temporaryDirectory = root + "/thumbnails/tmp"
        try await Self.mapErrors { try await thumbnailer.makeDirectories(temporaryDirectory) }
        let temporary = "\(temporaryDirectory)/\(UInt64.random(in: 0...UInt64.max))"
        let output: ThumbnailOutput
        do {
            output = try await Self.mapErrors {
                try await thumbnailer.generate(source: source, destination: temporary, width: size.width,
                                               height: size.height, method: size.method, animated: animated)
            }
        } catch {
            await thumbnailer.remove([temporary])
            throw error
        }
        let relative = Self.relativePath(sha256: sha256, size: size, animated: animated, format: output.format)
        let length = try await Self.mapErrors { try await thumbnailer.commit(temporary: temporary, destination: root + "/" + relative) }
        let record = ThumbnailRecord(sha256: sha256, width: size.width, height: size.height, method: size.method.rawValue,
                                     animated: animated, thumbnailWidth: output.width, thumbnailHeight: output.height,
                                     contentType: output.format.contentType, size: length, path: relative,
                                     createdTs: Clock.nowMilliseconds())
        try await store.insert(record)
        return Served(record: record, path: root + "/" + relative)
    }

    /// `thumbnails/<2 hex>/<2 hex>/<sha256>/<w>x<h>-<method>[-animated].<ext>`.
    static func relativePath(sha256: String, size: ThumbnailSize, animated: Bool, format: ImageFormat) -> String {
        let hex = Array(sha256.utf8)
        let a = String(decoding: hex.prefix(2), as: UTF8.self)
        let b = String(decoding: hex.dropFirst(2).prefix(2), as: UTF8.self)
        return "thumbnails/\(a)/\(b)/\(sha256)/\(size.width)x\(size.height)-\(size.method.rawValue)"
            + (animated ? "-animated" : "") + "." + format.rawValue
    }

    /// Forgets and removes every thumbnail of `sha256` (its content was deleted).
    func remove(sha256: String) async throws {
        let paths = try await store.delete(sha256: sha256)
        guard !paths.isEmpty else { return }
        await thumbnailer.remove(paths.map { root + "/" + $0 })
    }

    /// The thumbnailer's errors as the client sees them (Synapse's answers).
    static func mapErrors<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ThumbnailError {
            switch error {
            case .notAnImage: throw MatrixError(.unknown, "Cannot generate thumbnails for this media", status: 400)
            case .tooLarge: throw MatrixError(.tooLarge, "Image too large", status: 400)
            case .badSize: throw MatrixError(.invalidParam, "Bad thumbnail size", status: 400)
            case .busy: throw MatrixError(.limitExceeded, "Too many thumbnails in progress", extra: ["retry_after_ms": 1_000])
            case .failed: throw MatrixError(.unknown, "Failed to generate thumbnail", status: 400)
            }
        }
    }
}

/// Single flight: one generation per key at a time; later callers await the first's result.
actor ThumbnailFlights {
    private var inFlight: [String: Task<MediaThumbnails.Served, any Error>] = [:]

    func run(key: String, _ body: @escaping @Sendable () async throws -> MediaThumbnails.Served) async throws
        -> MediaThumbnails.Served {
        if let task = inFlight[key] { return try await task.value }
        let task = Task { try await body() }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        return try await task.value
    }
}

extension MediaThumbnails {
    /// The upload hook: the media handlers call it with the record just stored.
    func pregenerate(_ record: MediaRecord, media: MediaRepository) {
        // Synapse thumbnails image types only; the header check then refuses impostors.
        guard let sha256 = record.sha256, record.contentType?.lowercased().hasPrefix("image/") == true else { return }
        pregenerate(sha256: sha256, source: media.files.contentPath(sha256: sha256))
    }
}
