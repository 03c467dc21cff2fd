import Matrix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file system call of the media store failed.
public struct MediaFileError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    public init(_ operation: String, _ path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// The media root on disk (`configuration.resolvedMediaPath`):
///
///     content/<2 hex>/<2 hex>/<sha256>   the bytes, named by their SHA-256 (stored once)
///     tmp/<random>                       uploads in progress (removed at start-up)
///     thumbnails/, remote/, voice/ ...   derived files of the other media parts
///
/// Files reach `content/` only by `commit`, an atomic `rename(2)` from `tmp/` (same file
/// system), so a reader never sees half a file. A value type: it holds only the root path.
/// The synchronous functions block (they are file system calls) and must run on
/// `MediaIOThreads` — the `async` forms do that. Used by `MediaUploadActor`, the App's
/// `MediaRepository`, thumbnails, remote media and voice.
public struct MediaFileStore: Sendable {
    public let root: String

    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    public var contentDirectory: String { root + "/content" }
    public var temporaryDirectory: String { root + "/tmp" }

    /// `root/name`: the subdirectory another media part keeps its derived files in.
    public func directory(_ name: String) -> String { root + "/" + name }

    /// Where the content named `sha256` lives (whether or not it exists). `sha256` is the
    /// 64 hex digits a row holds; anything else maps to a path under `content/invalid/`
    /// that never exists (no `..` can reach outside the root).
    public func contentPath(sha256: String) -> String {
        guard Self.isHexDigest(sha256) else { return contentDirectory + "/invalid/none" }
        let hex = Array(sha256.utf8)
        let a = String(decoding: hex[0..<2], as: UTF8.self), b = String(decoding: hex[2..<4], as: UTF8.self)
        return "\(contentDirectory)/\(a)/\(b)/\(sha256)"
    }

    static func isHexDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    // MARK: Blocking calls (run them on MediaIOThreads)

    /// Creates the root, `content/` and `tmp/`, and removes what an earlier process left in
    /// `tmp/` (uploads cut off by a crash). Called once at start-up.
    public func prepareBlocking() throws {
        try Self.makeDirectories(contentDirectory)
        try Self.makeDirectories(temporaryDirectory)
        for name in try Self.entries(temporaryDirectory) { unlink(temporaryDirectory + "/" + name) }
    }

    /// A new empty temporary file, open for writing: its descriptor and path.
    public func createTemporaryBlocking() throws -> (fd: Int32, path: String) {
        for _ in 0..<4 {
            let path = temporaryDirectory + "/" + SHA256Hasher.hex(Sodium.randomBytes(12))
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 { return (fd, path) }
            if errno == ENOENT { try Self.makeDirectories(temporaryDirectory); continue }
            if errno != EEXIST { throw MediaFileError("open", path) }
        }
        throw MediaFileError("open", temporaryDirectory, code: EEXIST)
    }

    /// Moves a finished temporary file to its content path. When that content exists
    /// already (identical bytes uploaded before), the temporary is removed instead: each
    /// content is stored once.
    public func commitBlocking(temporary: String, sha256: String) throws {
        guard Self.isHexDigest(sha256) else { unlink(temporary); throw MediaFileError("commit", sha256, code: EINVAL) }
        let path = contentPath(sha256: sha256)
        var info = stat()
        if stat(path, &info) == 0 {
            unlink(temporary)
            return
        }
        try Self.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw MediaFileError("rename", path, code: code)
        }
    }

    /// Removes the content named `sha256` (its last row is gone); a missing file is fine.
    public func removeBlocking(sha256: String) throws {
        let path = contentPath(sha256: sha256)
        guard unlink(path) == 0 || errno == ENOENT else { throw MediaFileError("unlink", path) }
    }

    /// True when the content named `sha256` is on disk.
    public func existsBlocking(sha256: String) -> Bool {
        var info = stat()
        return stat(contentPath(sha256: sha256), &info) == 0
    }

    // MARK: Async forms

    public func prepare() async throws {
        let store = self
        try await MediaIOThreads.shared.run { try store.prepareBlocking() }
    }

    public func commit(temporary: String, sha256: String) async throws {
        let store = self
        try await MediaIOThreads.shared.run { try store.commitBlocking(temporary: temporary, sha256: sha256) }
    }

    public func remove(sha256: String) async throws {
        let store = self
        try await MediaIOThreads.shared.run { try store.removeBlocking(sha256: sha256) }
    }

    /// Removes a temporary file (an upload that failed); errors are ignored.
    public func removeTemporary(_ path: String) async {
        _ = try? await MediaIOThreads.shared.run { _ = unlink(path) }
    }

    public func exists(sha256: String) async -> Bool {
        let store = self
        return (try? await MediaIOThreads.shared.run { store.existsBlocking(sha256: sha256) }) ?? false
    }

    /// Writes bytes the server made itself (a preview image, converted audio) to a flushed
    /// temporary file: its path and the bytes' SHA-256. The caller commits it.
    public func writeTemporary(bytes: [UInt8]) async throws -> (path: String, sha256: String) {
        let store = self
        return try await MediaIOThreads.shared.run {
            let (fd, path) = try store.createTemporaryBlocking()
            do {
                try Self.writeAll(fd: fd, bytes, path: path)
                guard fsync(fd) == 0 else { throw MediaFileError("fsync", path) }
                close(fd)
            } catch {
                close(fd)
                unlink(path)
                throw error
            }
            var hasher = SHA256Hasher()
            hasher.update(bytes)
            return (path, hasher.finalHex())
        }
    }

    /// Writes and commits bytes in one step (content with no row of its own, or a caller
    /// that holds the content's lock). Media with a row goes through
    /// `MediaRepository.store(bytes:...)`, which commits under the lock. Returns the SHA-256.
    public func store(bytes: [UInt8]) async throws -> String {
        let (path, sha256) = try await writeTemporary(bytes: bytes)
        try await commit(temporary: path, sha256: sha256)
        return sha256
    }

    // MARK: Helpers

    /// Writes all of `bytes` to `fd` (retrying short writes and EINTR).
    public static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MediaFileError("write", path)
                }
                offset += n
            }
        }
    }

    /// `mkdir -p`.
    public static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o700) != 0 && errno != EEXIST { throw MediaFileError("mkdir", current) }
        }
    }

    /// The names in a directory (without `.` and `..`); empty when it does not exist.
    public static func entries(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw MediaFileError("opendir", path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = entryName(entry)
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The name of a `readdir` entry, read in place. Never `entry.pointee`: glibc packs
    /// entries by their `d_reclen`, so the last one of a buffer can end before the full size
    /// of a `dirent`, and copying the whole struct reads past it (a crash at a page's end).
    public static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        return String(cString: (UnsafeRawPointer(entry) + offset).assumingMemoryBound(to: CChar.self))
    }
}
