/// The width and height an image's header declares (PNG, GIF, JPEG, WebP), read without
/// decoding it: a URL preview's `og:image:width`/`og:image:height`. Bounded: at most the
/// first 512 KiB are looked at, every length read moves forward. Pure; used by `URLPreviewer`.
enum ImageDimensions {
    static let scanLimit = 512 * 1024

    static func of(_ bytes: [UInt8]) -> (width: Int, height: Int)? {
        let b = bytes.prefix(scanLimit)
        let result: (Int, Int)?
        if b.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            result = b.count >= 24 ? (be32(b, 16), be32(b, 20)) : nil
        } else if b.starts(with: Array("GIF87a".utf8)) || b.starts(with: Array("GIF89a".utf8)) {
            result = b.count >= 10 ? (le16(b, 6), le16(b, 8)) : nil
        } else if b.starts(with: [0xFF, 0xD8]) {
            result = jpeg(b)
        } else if b.count >= 30, b.starts(with: Array("RIFF".utf8)), b[8..<12].elementsEqual("WEBP".utf8) {
            result = webp(b)
        } else {
            result = nil
        }
        guard let (width, height) = result, width > 0, height > 0 else { return nil }
        return (width, height)
    }

    /// The first start-of-frame segment's size (SOF0–SOF15 but DHT, JPG and DAC).
    private static func jpeg(_ b: ArraySlice<UInt8>) -> (Int, Int)? {
        var i = 2
        while i + 9 < b.count {
            guard b[i] == 0xFF else { return nil }
            let marker = b[i + 1]
            if marker == 0xFF { i += 1; continue }
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { i += 2; continue }
            if marker == 0xD9 || marker == 0xDA { return nil }
            let length = be16(b, i + 2)
            guard length >= 2 else { return nil }
            if (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC {
                return (be16(b, i + 7), be16(b, i + 5))
            }
            i += 2 + length
        }
        return nil
    }

    private static func webp(_ b: ArraySlice<UInt8>) -> (Int, Int)? {
        let chunk = String(decoding: b[12..<16], as: UTF8.self)
        switch chunk {
        case "VP8 ":
            // Frame tag (3 bytes), start code (3), then 14-bit width and height.
            return (le16(b, 26) & 0x3FFF, le16(b, 28) & 0x3FFF)
        case "VP8L":
            guard b[20] == 0x2F else { return nil }
            let bits = Int(b[21]) | Int(b[22]) << 8 | Int(b[23]) << 16 | Int(b[24]) << 24
            return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        case "VP8X":
            let width = Int(b[24]) | Int(b[25]) << 8 | Int(b[26]) << 16
            let height = Int(b[27]) | Int(b[28]) << 8 | Int(b[29]) << 16
            return (width + 1, height + 1)
        default:
            return nil
        }
    }

    private static func be16(_ b: ArraySlice<UInt8>, _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
    private static func le16(_ b: ArraySlice<UInt8>, _ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
    private static func be32(_ b: ArraySlice<UInt8>, _ i: Int) -> Int {
        Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }
}
