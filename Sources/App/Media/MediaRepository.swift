import Actors
import Matrix
import Persistence
import Synchronization
import Transport

/// Where media of another server comes from (remote media over federation). Set once at
/// start-up with `MediaRepository.setRemoteSource`; without one, remote media answers 404
/// `M_NOT_FOUND`. `fetch` returns the cached row and the path of its file.
protocol RemoteMediaSource: Sendable {
    func fetch(origin: String, mediaID: String) async throws -> (MediaRecord, path: String)
}

/// The media of this server: the content store on disk (`MediaFileStore`), the `media`
/// rows (`MediaStore`) and the uploads in progress (`MediaUploadActor`s under a registry
/// with the `actors.media_uploads` limits). Created by `MyelinApp`; reached from handlers
/// as `context.app.media` (uploads, downloads, thumbnails, previews, voice, admin).
final class MediaRepository: Sendable {
    let files: MediaFileStore
    let store: MediaStore
    let serverName: String
    let configuration: Configuration.Media
    let uploads: Registry<String, MediaUploadActor>
    let uploadLimits: RegistryLimits
    /// Serializes a content's commit with its row, and its removal with the reference count.
    let contentLocks = MediaContentLocks()
    private let remote = Mutex<(any RemoteMediaSource)?>(nil)
    private let nextUpload = Atomic<UInt64>(0)
    /// Uploads in progress; past `uploadLimits.maxResident` a new one is refused with 429
    /// rather than evicting (and so failing) one in flight.
    private let inFlight = Atomic<Int>(0)

    init(configuration: Configuration, database: Database) {
        files = MediaFileStore(root: configuration.resolvedMediaPath)
        store = database.media
        serverName = configuration.serverName
        self.configuration = configuration.media
        let pool = configuration.actors.mediaUploads
        uploadLimits = RegistryLimits(maxResident: pool.maxResident, idleTimeoutSeconds: pool.idleTimeoutSeconds)
        let files = self.files
        uploads = Registry(limits: uploadLimits) { id in MediaUploadActor(id: id, files: files) }
    }

    /// Creates the media root's directories and clears uploads a previous process left.
    func prepare() async throws { try await files.prepare() }

    /// The source of remote media, once set.
    var remoteSource: (any RemoteMediaSource)? { remote.withLock { $0 } }

    /// Sets the source of remote media (once, at start-up; a second call is ignored).
    func setRemoteSource(_ source: any RemoteMediaSource) {
        remote.withLock { if $0 == nil { $0 = source } }
    }

    /// A new media id: 24 random letters (as Synapse's), unguessable.
    static func newMediaID() -> String {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        // 52 letters: bytes >= 208 are rejected so that each letter is equally likely.
        var out: [UInt8] = []
        while out.count < 24 {
            for byte in Sodium.randomBytes(32) where byte < 208 && out.count < 24 { out.append(letters[Int(byte % 52)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Storing

    /// Streams an upload through a `MediaUploadActor` into the content store and writes its
    /// row: a new media id, or the pending `mediaID` made by `/create` (its row must still
    /// be pending: `completePending`). Any failure (a cut-off body, over the limit, a
    /// length mismatch) leaves no file and no row.
    func store(body: some AsyncSequence<[UInt8], any Error>, declaredLength: Int?, contentType: String?,
               fileName: String?, uploader: UserID, mediaID: String? = nil) async throws -> MediaRecord {
        let limit = Int64(configuration.maxUploadBytes)
        if let declaredLength, declaredLength > limit {
            throw MatrixError(.tooLarge, "Upload exceeds the maximum size of \(limit) bytes")
        }
        guard inFlight.add(1, ordering: .relaxed).newValue <= uploadLimits.maxResident else {
            inFlight.subtract(1, ordering: .relaxed)
            throw MatrixError(.limitExceeded, "Too many uploads in progress", extra: ["retry_after_ms": 1000])
        }
        defer { inFlight.subtract(1, ordering: .relaxed) }
        let key = "upload-\(nextUpload.add(1, ordering: .relaxed).newValue)"
        let upload = try await uploads.get(key)
        let stored: MediaUploadActor.Stored
        do {
            for try await chunk in body { try await upload.append(chunk, limit: limit) }
            stored = try await upload.finishUncommitted(declaredLength: declaredLength.map(Int64.init))
        } catch {
            await upload.abort()
            await uploads.remove(key)
            throw error
        }
        await uploads.remove(key)
        return try await record(stored, contentType: contentType, fileName: fileName, uploader: uploader, mediaID: mediaID)
    }

    /// Stores bytes the server made itself (a preview image, converted voice) as new media.
    func store(bytes: [UInt8], contentType: String?, fileName: String?, uploader: UserID?) async throws -> MediaRecord {
        let (path, sha256) = try await files.writeTemporary(bytes: bytes)
        return try await record(MediaUploadActor.Stored(sha256: sha256, size: Int64(bytes.count), temporary: path),
                                contentType: contentType, fileName: fileName, uploader: uploader, mediaID: nil)
    }

    /// Commits stored content and writes its row, under the content's lock. When the row
    /// cannot be written the file goes again, unless another row references the content.
    private func record(_ stored: MediaUploadActor.Stored, contentType: String?, fileName: String?, uploader: UserID?,
                        mediaID: String?) async throws -> MediaRecord {
        let now = Clock.nowMilliseconds()
        let authenticated = configuration.enableAuthenticatedMedia
        let record = MediaRecord(origin: serverName, mediaID: mediaID ?? Self.newMediaID(), sha256: stored.sha256,
                                 size: stored.size, contentType: contentType, uploadName: fileName, uploader: uploader,
                                 createdTs: now, authenticated: authenticated)
        let (files, store, origin) = (self.files, self.store, serverName)
        let written = try await contentLocks.withLock(stored.sha256) { () async throws -> Bool in
            do {
                if let temporary = stored.temporary { try await files.commit(temporary: temporary, sha256: stored.sha256) }
                let written: Bool
                if let mediaID {
                    written = try await store.completePending(origin: origin, mediaID: mediaID, sha256: stored.sha256,
                                                              size: stored.size, contentType: contentType, uploadName: fileName,
                                                              authenticated: authenticated, now: now)
                } else {
                    written = try await store.insert(record)
                }
                if !written { _ = try await Self.removeUnreferenced(stored.sha256, files: files, store: store) }
                return written
            } catch {
                if let temporary = stored.temporary { await files.removeTemporary(temporary) }
                _ = try? await Self.removeUnreferenced(stored.sha256, files: files, store: store)
                throw error
            }
        }
        guard written else { throw MatrixError("M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content", status: 409) }
        return record
    }

    /// Removes the content file when no row references it (call with its lock held); true
    /// when it did.
    private static func removeUnreferenced(_ sha256: String, files: MediaFileStore, store: MediaStore) async throws -> Bool {
        guard try await store.references(sha256: sha256) == 0 else { return false }
        try await files.remove(sha256: sha256)
        return true
    }

    /// Called with the hash of every content file removed (its derived files go too: the
    /// thumbnails register here at start-up).
    private let removalHooks = Mutex<[@Sendable (String) async -> Void]>([])

    func onContentRemoved(_ hook: @escaping @Sendable (String) async -> Void) {
        removalHooks.withLock { $0.append(hook) }
    }

    private func contentRemoved(_ sha256: String) async {
        for hook in removalHooks.withLock({ $0 }) { await hook(sha256) }
    }

    /// Removes the content file when no row references it any more (under its lock).
    func removeIfUnreferenced(sha256: String) async {
        let (files, store) = (self.files, self.store)
        let removed = (try? await contentLocks.withLock(sha256) {
            try await Self.removeUnreferenced(sha256, files: files, store: store)
        }) ?? false
        if removed { await contentRemoved(sha256) }
    }

    /// Deletes one media row, and its file when it was the content's last reference.
    func delete(origin: String, mediaID: String) async throws {
        guard let sha256 = try await store.delete(origin: origin, mediaID: mediaID) else { return }
        // Counted again under the lock: an identical upload may have written its row since.
        let (files, store) = (self.files, self.store)
        let removed = try await contentLocks.withLock(sha256) { try await Self.removeUnreferenced(sha256, files: files, store: store) }
        if removed { await contentRemoved(sha256) }
    }

    // MARK: Reading

    /// Local media by id with the path of its file; nil when unknown, pending, or
    /// quarantined.
    func local(mediaID: String) async throws -> (MediaRecord, path: String)? {
        guard let record = try await store.record(origin: serverName, mediaID: mediaID),
              let sha256 = record.sha256, record.quarantinedBy == nil else { return nil }
        return (record, files.contentPath(sha256: sha256))
    }

    /// The media of `origin`/`mediaID`: local, or (when `allowRemote`) fetched through the
    /// remote source. 404 `M_NOT_FOUND` when it does not exist, is pending, is quarantined,
    /// or is remote without a source.
    func resolve(origin: String, mediaID: String, allowRemote: Bool) async throws -> (MediaRecord, path: String) {
        if origin == serverName {
            guard let found = try await local(mediaID: mediaID) else { throw MatrixError(.notFound, "Media not found") }
            return found
        }
        guard allowRemote, let source = remoteSource else { throw MatrixError(.notFound, "Media not found") }
        let (record, path) = try await source.fetch(origin: origin, mediaID: mediaID)
        guard record.quarantinedBy == nil else { throw MatrixError(.notFound, "Media not found") }
        return (record, path)
    }

    /// `resolve`, but a local id made by `/create` and not yet uploaded is waited for up to
    /// `timeoutMs` (then 504 `M_NOT_YET_UPLOADED`; an expired one is 404). The row is
    /// re-read every 100–500 ms: a download of pending media is rare, and polling keeps the
    /// upload path free of waiter bookkeeping.
    func resolveWaiting(origin: String, mediaID: String, allowRemote: Bool,
                        timeoutMs: Int64) async throws -> (MediaRecord, path: String) {
        guard origin == serverName else { return try await resolve(origin: origin, mediaID: mediaID, allowRemote: allowRemote) }
        let deadline = Clock.monotonicNanoseconds() + timeoutMs * 1_000_000
        var delay: Int64 = 100
        while true {
            guard let record = try await store.record(origin: serverName, mediaID: mediaID), record.quarantinedBy == nil,
                  (record.expiresTs ?? .max) >= Clock.nowMilliseconds() else {
                throw MatrixError(.notFound, "Media not found")
            }
            if let sha256 = record.sha256 { return (record, files.contentPath(sha256: sha256)) }
            let left = (deadline - Clock.monotonicNanoseconds()) / 1_000_000
            guard left > 0 else {
                throw MatrixError("M_NOT_YET_UPLOADED", "Media has not been uploaded yet", status: 504)
            }
            try await Task.sleep(for: .milliseconds(min(delay, left)))
            delay = min(delay * 2, 500)
        }
    }
}
