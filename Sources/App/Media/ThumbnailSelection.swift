import Actors

/// One size of `media.thumbnail_sizes`: a box and how to fit it.
struct ThumbnailSize: Sendable, Equatable, Hashable {
    var width: Int
    var height: Int
    var method: ThumbnailMethod

    /// Synapse's defaults (`thumbnail_sizes` in its sample configuration).
    static let defaults: [ThumbnailSize] = [
        ThumbnailSize(width: 32, height: 32, method: .crop),
        ThumbnailSize(width: 96, height: 96, method: .crop),
        ThumbnailSize(width: 320, height: 240, method: .scale),
        ThumbnailSize(width: 640, height: 480, method: .scale),
        ThumbnailSize(width: 800, height: 600, method: .scale),
    ]
}

/// Which thumbnail answers a request, by Synapse's rule (`_select_thumbnail` in its
/// `media/thumbnailer.py`): among the candidates of the requested method, those at least as
/// large as the request in one dimension come first; among them, for `crop`, the closest
/// aspect ratio, then at least as large in both dimensions, then the closest area, then the
/// wanted content type, then the smallest file; for `scale`, the closest area, then the type,
/// then the size. Pure: `MediaThumbnails` applies it to the configured sizes (before they
/// exist) and `ThumbnailSelectionTests` to tables of sizes.
enum ThumbnailSelection {
    struct Candidate: Sendable, Equatable {
        var size: ThumbnailSize
        /// The size of the thumbnail (made or expected), which the rule compares.
        var width: Int
        var height: Int
        var contentType: String
        var length: Int64
    }

    static func select(_ candidates: [Candidate], width: Int, height: Int, method: ThumbnailMethod,
                       contentType: String, anyMethod: Bool = false) -> Candidate? {
        // Products of bounded sizes (<= 8192 requested, <= max pixels made): no overflow.
        let ranked = candidates.filter { anyMethod || $0.size.method == method }.map { c -> (Bool, [Int64], Candidate) in
            let (dw, dh, tw, th) = (Int64(width), Int64(height), Int64(c.width), Int64(c.height))
            let larger = tw >= dw || th >= dh
            let sizeQuality = abs((dw - tw) * (dh - th))
            let typeQuality: Int64 = c.contentType == contentType ? 0 : 1
            let key: [Int64]
            switch method {
            case .crop:
                let aspectQuality = abs(dw * th - dh * tw)
                let minQuality: Int64 = dw <= tw && dh <= th ? 0 : 1
                key = [aspectQuality, minQuality, sizeQuality, typeQuality, c.length]
            case .scale:
                key = [sizeQuality, typeQuality, c.length]
            }
            return (larger, key, c)
        }
        let pool = ranked.contains(where: { $0.0 }) ? ranked.filter { $0.0 } : ranked
        return pool.min { $0.1.lexicographicallyPrecedes($1.1) }?.2
    }

    /// The size a thumbnail of `size` of a `sourceWidth` x `sourceHeight` image will have:
    /// `scale` fits within the box, `crop` fills it; neither upscales.
    static func expected(_ size: ThumbnailSize, sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int) {
        let (w, h) = (max(sourceWidth, 1), max(sourceHeight, 1))
        switch size.method {
        case .crop:
            return (min(size.width, w), min(size.height, h))
        case .scale:
            // The smaller of the two ratios, never above 1, in exact integer arithmetic.
            if size.width * h <= size.height * w {
                let width = min(size.width, w)
                return (width, max(1, (h * width + w / 2) / w))
            }
            let height = min(size.height, h)
            return (max(1, (w * height + h / 2) / h), height)
        }
    }
}
