import Matrix
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The server's signing key file (Synapse's format, parsed and written by `SigningKey`):
/// read once at start-up by `MyelinServer`, created with a fresh key if absent. Matrix does no
/// file I/O; this is where the key meets the disk.
enum SigningKeyFile {
    /// Loads the key at `path`, or generates one and writes it there (mode 0600) if the file does
    /// not exist.
    static func loadOrGenerate(path: String) throws(MatrixError) -> SigningKey {
        if let text = contents(of: path) {
            return try SigningKey(fileContents: text)
        }
        let key = SigningKey.generate()
        createParentDirectories(of: path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            let code = errno
            // Another process created it between our read and our create: use theirs.
            if code == EEXIST, let text = contents(of: path) { return try SigningKey(fileContents: text) }
            throw MatrixError(.unknown, "Cannot create signing key file \(path) (errno \(code))")
        }
        defer { close(fd) }
        let bytes = Array(key.fileContents.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw MatrixError(.unknown, "Cannot write signing key file \(path)")
        }
        return key
    }

    /// `mkdir -p` of the directory holding `path` (mode 0700: it holds the private key).
    static func createParentDirectories(of path: String) {
        var prefix = ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        for (i, part) in parts.enumerated() {
            prefix += (i == 0 ? "" : "/") + part
            if !prefix.isEmpty { _ = mkdir(prefix, 0o700) }
        }
    }

    static func contents(of path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }
}
