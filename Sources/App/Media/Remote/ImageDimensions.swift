import Actors
import Glibc

/// The pixel size of a PNG, GIF or JPEG read from its first bytes (no decoding), for the
/// federation thumbnail answer that serves a small original as its own thumbnail. The read
/// is one bounded `pread` on the media I/O threads.
enum ImageDimensions {
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
        return parse(bytes)
    }

    static func parse(_ b: [UInt8]) -> (width: Int, height: Int)? {
        func be16(_ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
        func be32(_ i: Int) -> Int { be16(i) << 16 | be16(i + 2) }
        if b.count >= 24, b[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            return (be32(16), be32(20))
        }
        if b.count >= 10, b[0..<4].elementsEqual(Array("GIF8".utf8)) {
            return (Int(b[6]) | Int(b[7]) << 8, Int(b[8]) | Int(b[9]) << 8)
        }
        guard b.count >= 4, b[0] == 0xFF, b[1] == 0xD8 else { return nil }
        // JPEG: walk the segments to the first start-of-frame marker.
        var i = 2
        while i + 9 < b.count {
            guard b[i] == 0xFF else { return nil }
            let marker = b[i + 1]
            if marker == 0xFF { i += 1; continue }
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { i += 2; continue }
            let length = be16(i + 2)
            guard length >= 2 else { return nil }
            if (0xC0...0xCF).contains(marker), marker != 0xC4, marker != 0xC8, marker != 0xCC {
                return (be16(i + 7), be16(i + 5))
            }
            i += 2 + length
        }
        return nil
    }
}
