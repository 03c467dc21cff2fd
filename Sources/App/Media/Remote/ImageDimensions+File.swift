import Actors
import Glibc

/// The pixel size of a stored image read from its first bytes (no decoding), for the
/// federation thumbnail answer that serves a small original as its own thumbnail. The read
/// is one bounded `pread` on the media I/O threads.
extension ImageDimensions {
    static let thumbnailable = ["image/png", "image/jpeg", "image/gif"]
    static let headerBytes = 64 * 1024

    static func read(path: String) async throws -> (width: Int, height: Int)? {
        let bytes: [UInt8] = try await MediaIOThreads.shared.run {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return [] }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: headerBytes)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, headerBytes, 0) }
            return got > 0 ? Array(buffer[..<got]) : []
        }
        return of(bytes)
    }
}
