import CVips
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// How a thumbnail fits the requested box (client-server API, "Thumbnails").
public enum ThumbnailMethod: String, Sendable, Hashable, Codable {
    /// Fits within width x height, keeping the aspect ratio.
    case scale
    /// Fills width x height, then crops the centre.
    case crop
}

/// The image formats Myelin reads and writes. Anything else is not thumbnailed.
public enum ImageFormat: String, Sendable, Hashable {
    case jpeg, png, webp, gif

    public var contentType: String { "image/\(rawValue)" }
    var vipsCode: Int32 {
        switch self {
        case .jpeg: Int32(MYELIN_VIPS_JPEG)
        case .png: Int32(MYELIN_VIPS_PNG)
        case .webp: Int32(MYELIN_VIPS_WEBP)
        case .gif: Int32(MYELIN_VIPS_GIF)
        }
    }
}

/// What the header of an image says, read without decoding a pixel.
public struct ImageInfo: Sendable, Equatable {
    public let format: ImageFormat
    public let width: Int
    /// The height of one page (frame).
    public let height: Int
    public let pages: Int

    public init(format: ImageFormat, width: Int, height: Int, pages: Int) {
        self.format = format
        self.width = width
        self.height = height
        self.pages = pages
    }
}

/// The result of one thumbnail generation: the file written and its size.
public struct ThumbnailOutput: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let format: ImageFormat
    public let animated: Bool
}

public enum ThumbnailError: Error, Equatable {
    /// The file is not an image libvips may read here (or its header is broken).
    case notAnImage
    /// width x height (x pages when animated) is above `maxImagePixels`: never decoded.
    case tooLarge(pixels: Int)
    /// The request's size is not positive or too large.
    case badSize
    /// Decoding or encoding failed.
    case failed
    /// Too many thumbnails wait already.
    case busy
}

/// Makes thumbnails with libvips: a pure component, files in and files out, no HTTP and no
/// database. Every libvips call runs on its own small pool of dedicated threads
/// (`ThumbnailThreads`), never on an event loop or the cooperative pool. Before decoding, the
/// header's pixel count is checked against `maxImagePixels` (a decompression bomb, a small
/// file with a huge canvas, is refused unread). `vips_thumbnail` shrinks on load, so a large
/// JPEG is decoded at a fraction of its size.
///
/// One per process (libvips is initialised once); `MediaThumbnails` in App calls it.
public final class Thumbnailer: Sendable {
    public static let maxDimension = 8192

    public let maxImagePixels: Int
    let threads: ThumbnailThreads
    private let generated = Atomic<Int>(0)

    /// - Parameters:
    ///   - threads: dedicated threads running libvips (each job is one thumbnail).
    ///   - maxImagePixels: the decompression-bomb limit (Synapse's `max_image_pixels`, 32 M).
    public init(threads: Int = 2, maxImagePixels: Int = 32_000_000, maxQueued: Int = 256) {
        self.maxImagePixels = maxImagePixels
        // libvips is loaded by the first job (`startVips`), not when the threads start: an
        // idle server does not map it (see CVips.h).
        self.threads = ThumbnailThreads(threads: min(max(threads, 1), 64), maxQueued: maxQueued) {}
    }

    /// Thumbnails generated (files written) since start: the single-flight tests count them.
    public var generations: Int { generated.load(ordering: .relaxed) }

    /// Reads the header of the file at `path`: its format and size, nothing decoded.
    public func probe(path: String) async throws -> ImageInfo {
        try await threads.run { try Self.header(path: path) }
    }

    /// The output format: JPEG for JPEG input, PNG otherwise (Synapse's rule; WebP and GIF
    /// may carry transparency); an animated thumbnail keeps its input's animated format.
    public static func outputFormat(for input: ImageFormat, animated: Bool) -> ImageFormat {
        if animated && (input == .gif || input == .webp) { return input }
        return input == .jpeg ? .jpeg : .png
    }

    /// Whether a request for an animated thumbnail of this image gets one.
    public static func isAnimated(_ info: ImageInfo, requested: Bool) -> Bool {
        requested && info.pages > 1 && (info.format == .gif || info.format == .webp)
    }

    /// Writes a thumbnail of the image at `source` into `destination` (which must not be read
    /// by anyone until this returns). The header is checked first; a bomb is never decoded.
    public func generate(source: String, destination: String, width: Int, height: Int,
                         method: ThumbnailMethod, animated: Bool) async throws -> ThumbnailOutput {
        guard (1...Self.maxDimension).contains(width), (1...Self.maxDimension).contains(height) else {
            throw ThumbnailError.badSize
        }
        let limit = maxImagePixels
        let output = try await threads.run { () throws -> ThumbnailOutput in
            let info = try Self.header(path: source)
            let animate = Self.isAnimated(info, requested: animated)
            let pixels = Self.pixels(info, animated: animate)
            guard pixels <= limit else { throw ThumbnailError.tooLarge(pixels: pixels) }
            let format = Self.outputFormat(for: info.format, animated: animate)
            var outWidth: Int32 = 0
            var outHeight: Int32 = 0
            let rc = myelin_vips_thumbnail(source, destination, Int32(width), Int32(height),
                                           method == .crop ? 1 : 0, animate ? 1 : 0, format.vipsCode,
                                           &outWidth, &outHeight)
            guard rc == 0 else { throw ThumbnailError.failed }
            return ThumbnailOutput(width: Int(outWidth), height: Int(outHeight), format: format,
                                   animated: animate)
        }
        generated.add(1, ordering: .relaxed)
        return output
    }

    /// width x height (x pages when every page is decoded), saturating: never traps.
    static func pixels(_ info: ImageInfo, animated: Bool) -> Int {
        let (area, o1) = info.width.multipliedReportingOverflow(by: info.height)
        if o1 { return .max }
        guard animated else { return area }
        let (all, o2) = area.multipliedReportingOverflow(by: max(info.pages, 1))
        return o2 ? .max : all
    }

    private static func header(path: String) throws -> ImageInfo {
        try startVips()
        guard let loader = myelin_vips_loader(path), let format = format(loader: String(cString: loader)) else {
            throw ThumbnailError.notAnImage
        }
        var width: Int32 = 0, height: Int32 = 0, pages: Int32 = 0
        guard myelin_vips_header(path, &width, &height, &pages) == 0, width > 0, height > 0 else {
            throw ThumbnailError.notAnImage
        }
        return ImageInfo(format: format, width: Int(width), height: Int(height), pages: Int(max(pages, 1)))
    }

    /// Only the four formats of the issue: other loaders (TIFF, SVG, PDF, HEIF...) are refused
    /// even when libvips has them, as a smaller attack surface.
    static func format(loader: String) -> ImageFormat? {
        let name = loader.lowercased()
        if name.contains("jpeg") { return .jpeg }
        if name.contains("png") { return .png }
        if name.contains("webp") { return .webp }
        if name.contains("gif") { return .gif }
        return nil
    }

    /// Loads and starts libvips on first use (once per process; later calls return at once).
    /// A libvips that cannot be loaded fails the job, not the server.
    private static func startVips() throws {
        if myelin_vips_loaded() != 0 { return }
        guard myelin_vips_start(1) == 0 else { throw ThumbnailError.failed }
    }
}

extension Thumbnailer {
    /// Writes 8-bit pixels as an image file (format from the path's suffix; `pages` > 1 makes
    /// an animated GIF or WebP). Tests and the bench make their inputs with it at run time.
    public func writeImage(pixels: [UInt8], width: Int, height: Int, bands: Int, pages: Int = 1,
                           path: String) async throws {
        guard width > 0, height > 0, (1...4).contains(bands), pages > 0,
              pixels.count == width * height * bands * pages else { throw ThumbnailError.badSize }
        try await threads.run {
            try Self.startVips()
            let rc = pixels.withUnsafeBufferPointer {
                myelin_vips_save_pixels(path, $0.baseAddress, Int32(width), Int32(height), Int32(bands), Int32(pages))
            }
            if rc != 0 { throw ThumbnailError.failed }
        }
    }
}

extension Thumbnailer {
    /// Moves a finished thumbnail from `temporary` to `destination` (creating its directories)
    /// atomically, and returns its size in bytes. Runs on the pool (blocking file calls).
    public func commit(temporary: String, destination: String) async throws -> Int64 {
        try await threads.run {
            try Self.makeDirectories(parent(of: destination))
            var info = stat()
            guard stat(temporary, &info) == 0 else { throw ThumbnailError.failed }
            guard rename(temporary, destination) == 0 else {
                unlink(temporary)
                throw ThumbnailError.failed
            }
            return Int64(info.st_size)
        }
    }

    /// Removes files (a thumbnail not committed, or those of deleted content); missing files
    /// are fine.
    public func remove(_ paths: [String]) async {
        _ = try? await threads.run { for path in paths { unlink(path) } }
    }

    /// Whether a file exists (a row whose file was lost is regenerated).
    public func exists(_ path: String) async -> Bool {
        (try? await threads.run { access(path, F_OK) == 0 }) ?? false
    }

    /// `mkdir -p`.
    public func makeDirectories(_ path: String) async throws {
        try await threads.run { try Self.makeDirectories(path) }
    }

    static func makeDirectories(_ path: String) throws {
        var current = ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw ThumbnailError.failed }
        }
    }
}

private func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}
