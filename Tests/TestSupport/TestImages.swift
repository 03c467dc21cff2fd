import Glibc

/// Test images made at run time (nothing binary is committed).
public enum TestImages {
    /// A PNG whose header claims `side` x `side` 1-bit grey pixels, all zero: a small file
    /// (zlib of zeros, about 1/1000 of the canvas) that would need gigabytes decoded. Python's
    /// zlib writes it; returns the file's size.
    @discardableResult
    public static func writePNGBomb(path: String, side: Int = 30_000) async throws -> Int {
        let script = """
        import struct, sys, zlib
        side = int(sys.argv[2])
        def chunk(kind, data):
            body = kind + data
            return struct.pack('>I', len(data)) + body + struct.pack('>I', zlib.crc32(body) & 0xffffffff)
        row = b'\\x00' * (1 + (side + 7) // 8)
        z = zlib.compressobj(9)
        parts = [z.compress(row) for _ in range(side)]
        data = b''.join(parts) + z.flush()
        png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 1, 0, 0, 0, 0))
        png += chunk(b'IDAT', data) + chunk(b'IEND', b'')
        open(sys.argv[1], 'wb').write(png)
        print(len(png))
        """
        let child = try ChildProcess(path: "/usr/bin/python3", arguments: ["-c", script, path, String(side)])
        let output = try await blocking { () -> [UInt8] in
            var bytes: [UInt8] = []
            while case .bytes(let chunk) = child.read(timeoutMs: 60_000) { bytes += chunk }
            _ = child.wait()
            return bytes
        }
        let text = String(decoding: output, as: UTF8.self).filter(\.isNumber)
        guard let size = Int(text) else { throw BombError.notWritten }
        return size
    }

    public enum BombError: Error { case notWritten }

    /// RGB pixels of a smooth pattern (so JPEG and PNG encoders have real work), `pages` frames
    /// one after the other, each frame shifted.
    public static func pattern(width: Int, height: Int, pages: Int = 1) -> [UInt8] {
        var pixels = [UInt8](repeating: 0, count: width * height * 3 * pages)
        var index = 0
        for page in 0..<pages {
            for y in 0..<height {
                for x in 0..<width {
                    pixels[index] = UInt8(truncatingIfNeeded: x &+ page &* 40)
                    pixels[index + 1] = UInt8(truncatingIfNeeded: y)
                    pixels[index + 2] = UInt8(truncatingIfNeeded: (x ^ y) &+ page &* 80)
                    index += 3
                }
            }
        }
        return pixels
    }
}
