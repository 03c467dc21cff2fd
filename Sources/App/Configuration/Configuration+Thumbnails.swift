import Actors

extension Configuration.Media {
    /// The thumbnail settings of `media` (issue 18, item 3), named as Synapse names them.
    struct Thumbnailing: Sendable, Equatable {
        /// Generated after each image upload; a request is answered with the nearest of them.
        var sizes: [ThumbnailSize] = ThumbnailSize.defaults
        /// Decompression-bomb limit: width x height (x frames when animated) read from the
        /// header before any decoding (Synapse's `max_image_pixels`, 32 M).
        var maxImagePixels = 32_000_000
        /// Generate the exact size a client asks for (Synapse's `dynamic_thumbnails`, off).
        var dynamic = false
        /// Dedicated threads running libvips.
        var threads = 2
    }
}

extension ConfigurationLoader {
    /// The thumbnail keys of the `media` section.
    static func readThumbnailing(_ m: Section, _ t: inout Configuration.Media.Thumbnailing) throws {
        try m.string("max_image_pixels") { text in
            guard let pixels = parsePixels(text), (1...(1 << 40)).contains(pixels) else {
                throw ConfigurationError(path: m.keyPath("max_image_pixels"),
                                         message: "expected a pixel count such as 32M, not '\(text)'")
            }
            t.maxImagePixels = pixels
        }
        try m.bool("dynamic_thumbnails") { t.dynamic = $0 }
        try m.int("thumbnail_threads", range: 1...64) { t.threads = $0 }
        var sizes: [ThumbnailSize]? = nil
        try m.sequence("thumbnail_sizes") { items in
            sizes = try items.map { item in
                let section = try Section(item.node, path: item.path)
                var size = ThumbnailSize(width: 0, height: 0, method: .scale)
                try section.int("width", range: 1...Thumbnailer.maxDimension) { size.width = $0 }
                try section.int("height", range: 1...Thumbnailer.maxDimension) { size.height = $0 }
                try section.string("method") { text in
                    guard let method = ThumbnailMethod(rawValue: text) else {
                        throw ConfigurationError(path: section.keyPath("method"), message: "expected scale or crop")
                    }
                    size.method = method
                }
                try section.finish()
                guard size.width > 0, size.height > 0 else {
                    throw ConfigurationError(path: item.path, message: "width and height are required")
                }
                return size
            }
        }
        if let sizes { t.sizes = sizes }
    }

    /// `32000000`, `32M`, `500K`, `1G` (Synapse's size suffixes, powers of 1000 for pixels).
    static func parsePixels(_ text: String) -> Int? {
        let trimmed = text.replacingUnderscores()
        guard let last = trimmed.last else { return nil }
        let factors: [Character: Int] = ["K": 1_000, "M": 1_000_000, "G": 1_000_000_000]
        if let factor = factors[Character(last.uppercased())] {
            guard let n = Int(trimmed.dropLast()), n >= 0, n <= Int(Int32.max) else { return nil }
            return n * factor
        }
        return Int(trimmed)
    }
}

extension ConfigurationTemplate {
    /// The thumbnail lines of the template's `media` section.
    static func thumbnailing(_ t: Configuration.Media.Thumbnailing) -> String {
        let sizes = t.sizes.map {
            "    - {width: \($0.width), height: \($0.height), method: \($0.method.rawValue)}"
        }.joined(separator: "\n")
        return """
              # pre-generated after each image upload; a request gets the nearest larger one
              thumbnail_sizes:
            \(sizes)
              # decompression-bomb limit, width x height (x frames) read before decoding
              max_image_pixels: \(t.maxImagePixels)
              # generate the exact size a client asks for instead of the nearest configured one
              dynamic_thumbnails: \(t.dynamic)
              # dedicated threads running libvips
              thumbnail_threads: \(t.threads)
            """
    }
}
