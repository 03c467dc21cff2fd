import Matrix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One upload in progress (key: an upload id), supervised by a `Registry` with the
/// `actors.media_uploads` limits. It owns the temporary file, the running SHA-256 and the
/// byte count: the App's `MediaRepository` feeds it the request body chunk by chunk
/// (`append`), each chunk awaited before the next is read, so at most one chunk waits here
/// and the transport's bounded body buffer (it stops reading its socket past its high
/// water) is the backpressure: memory per upload is a few chunks whatever the file size.
///
/// Writes go to `MediaIOThreads` (dedicated pthreads), never the cooperative pool: a
/// `write(2)` usually lands in the page cache in microseconds, but one that waits on a busy
/// disk would hold a pool thread for as long, and the pool has two on this machine.
///
/// `finish` commits the file into the content store (an atomic rename; identical content
/// is stored once) and returns its digest and size; the caller then writes the row.
/// `abort` (a failed or cut-off body) and `deactivate` (the registry dropped the actor)
/// remove the temporary: no file remains of an upload that did not finish.
public actor MediaUploadActor: RegistryMember {
    public let id: String
    let files: MediaFileStore
    let io: MediaIOThreads
    private var temporary: (fd: Int32, path: String)?
    private var hasher = SHA256Hasher()
    private var received: Int64 = 0
    /// Set by `finish`, `abort` or `deactivate`: no further chunk is accepted.
    private var closed = false
    /// A chunk write runs on an I/O thread now.
    private var writing = false

    /// The content an upload produced.
    public struct Stored: Sendable, Equatable {
        public let sha256: String
        public let size: Int64

        public init(sha256: String, size: Int64) {
            self.sha256 = sha256
            self.size = size
        }
    }

    public init(id: String, files: MediaFileStore, io: MediaIOThreads = .shared) {
        self.id = id
        self.files = files
        self.io = io
    }

    /// Bytes received so far.
    public var receivedBytes: Int64 { received }

    /// Appends a chunk of the body. Throws 413 `M_TOO_LARGE` the moment the total passes
    /// `limit` (the temporary is removed then); the caller stops reading the body.
    public func append(_ chunk: [UInt8], limit: Int64) async throws {
        guard !closed else { throw MatrixError(.unknown, "Upload \(id) is no longer in progress") }
        guard !chunk.isEmpty else { return }
        let (total, overflow) = received.addingReportingOverflow(Int64(chunk.count))
        guard !overflow, total <= limit else {
            await abort()
            throw MatrixError(.tooLarge, "Upload exceeds the maximum size of \(limit) bytes")
        }
        received = total
        hasher.update(chunk)
        let file = try await openTemporary()
        writing = true
        var failure: (any Error)?
        do {
            try await io.run { try MediaFileStore.writeAll(fd: file.fd, chunk, path: file.path) }
        } catch {
            failure = error
        }
        writing = false
        if closed {
            // Aborted while the write was in flight: `abort` left the descriptor to us (closing
            // it under a running write could hand its number to another file first).
            await discard(file)
            throw MatrixError(.unknown, "Upload \(id) was cancelled")
        }
        if let error = failure {
            await abort()
            throw error
        }
    }

    /// Ends the upload: checks the declared length, flushes, commits the file into the
    /// content store. An empty body is valid content (the SHA-256 of nothing).
    public func finish(declaredLength: Int64?) async throws -> Stored {
        guard !closed else { throw MatrixError(.unknown, "Upload \(id) is no longer in progress") }
        if let declaredLength, declaredLength != received {
            await abort()
            throw MatrixError(.invalidParam, "Body has \(received) bytes, Content-Length declared \(declaredLength)")
        }
        let file = try await openTemporary()
        closed = true
        temporary = nil
        let sha256 = hasher.finalHex()
        let files = self.files
        try await io.run {
            // fsync before the rename: after a crash the name must not point at a file
            // whose blocks never reached the disk.
            let synced = fsync(file.fd) == 0
            let code = errno
            close(file.fd)
            guard synced else { unlink(file.path); throw MediaFileError("fsync", file.path, code: code) }
            try files.commitBlocking(temporary: file.path, sha256: sha256)
        }
        return Stored(sha256: sha256, size: received)
    }

    /// Gives up: closes and removes the temporary. Idempotent. A write in flight keeps the
    /// descriptor until it returns; `append` then removes the file.
    public func abort() async {
        closed = true
        guard !writing, let file = temporary else { return }
        temporary = nil
        await discard(file)
    }

    private func discard(_ file: (fd: Int32, path: String)) async {
        temporary = nil
        _ = try? await io.run {
            close(file.fd)
            unlink(file.path)
        }
    }

    public func deactivate() async { await abort() }

    private func openTemporary() async throws -> (fd: Int32, path: String) {
        if let temporary { return temporary }
        let files = self.files
        let file = try await io.run { try files.createTemporaryBlocking() }
        if closed {
            // Aborted while the file was being created.
            _ = try? await io.run { close(file.fd); unlink(file.path) }
            throw MatrixError(.unknown, "Upload \(id) was cancelled")
        }
        temporary = file
        return file
    }
}
