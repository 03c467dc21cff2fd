import Foundation
import Testing
import TestSupport
@testable import Actors

/// The thumbnailer alone: real files made with libvips at test time, thumbnailed, and the
/// results read back (their header says their format and size).
@Suite struct ThumbnailerTests {
    static let thumbnailer = Thumbnailer(threads: 2, maxImagePixels: 32_000_000)

    private func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "myelin-thumbs-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func image(_ directory: String, _ name: String, width: Int, height: Int, pages: Int = 1) async throws -> String {
        let path = "\(directory)/\(name)"
        try await Self.thumbnailer.writeImage(pixels: TestImages.pattern(width: width, height: height, pages: pages),
                                              width: width, height: height, bands: 3, pages: pages, path: path)
        return path
    }

    @Test(arguments: [("in.jpg", ImageFormat.jpeg, ImageFormat.jpeg), ("in.png", .png, .png),
                      ("in.webp", .webp, .png), ("in.gif", .gif, .png)])
    func scaleKeepsAspectAndPicksFormat(name: String, input: ImageFormat, output: ImageFormat) async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try await image(dir, name, width: 800, height: 600)
        let info = try await Self.thumbnailer.probe(path: source)
        #expect(info == ImageInfo(format: input, width: 800, height: 600, pages: 1))
        let out = "\(dir)/thumb"
        let result = try await Self.thumbnailer.generate(source: source, destination: out + "." + output.rawValue,
                                                         width: 320, height: 320, method: .scale, animated: false)
        #expect(result.width == 320 && result.height == 240 && result.format == output)
        let written = try await Self.thumbnailer.probe(path: out + "." + output.rawValue)
        #expect(written == ImageInfo(format: output, width: 320, height: 240, pages: 1))
    }

    @Test func cropFillsTheBox() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try await image(dir, "in.png", width: 800, height: 600)
        let result = try await Self.thumbnailer.generate(source: source, destination: "\(dir)/t.png",
                                                         width: 96, height: 96, method: .crop, animated: false)
        #expect(result.width == 96 && result.height == 96)
        #expect(try await Self.thumbnailer.probe(path: "\(dir)/t.png") == ImageInfo(format: .png, width: 96, height: 96, pages: 1))
    }

    @Test func neverUpscales() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try await image(dir, "in.jpg", width: 50, height: 40)
        let result = try await Self.thumbnailer.generate(source: source, destination: "\(dir)/t.jpeg",
                                                         width: 640, height: 480, method: .scale, animated: false)
        #expect(result.width == 50 && result.height == 40)
    }

    @Test(arguments: [("in.gif", ImageFormat.gif), ("in.webp", .webp)])
    func animatedKeepsEveryFrame(name: String, format: ImageFormat) async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try await image(dir, name, width: 200, height: 100, pages: 4)
        #expect(try await Self.thumbnailer.probe(path: source).pages == 4)
        let animated = try await Self.thumbnailer.generate(source: source, destination: "\(dir)/a.\(format.rawValue)",
                                                           width: 100, height: 100, method: .scale, animated: true)
        #expect(animated == ThumbnailOutput(width: 100, height: 50, format: format, animated: true))
        #expect(try await Self.thumbnailer.probe(path: "\(dir)/a.\(format.rawValue)") ==
                ImageInfo(format: format, width: 100, height: 50, pages: 4))
        let still = try await Self.thumbnailer.generate(source: source, destination: "\(dir)/s.png",
                                                        width: 100, height: 100, method: .scale, animated: false)
        #expect(still == ThumbnailOutput(width: 100, height: 50, format: .png, animated: false))
        #expect(try await Self.thumbnailer.probe(path: "\(dir)/s.png").pages == 1)
    }

    @Test func notAnImageIsRefused() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/text"
        try Data("hello, this is not an image".utf8).write(to: URL(fileURLWithPath: path))
        await #expect(throws: ThumbnailError.notAnImage) {
            try await Self.thumbnailer.generate(source: path, destination: "\(dir)/t.png", width: 32, height: 32,
                                                method: .crop, animated: false)
        }
    }

    @Test func sizeOutOfBoundsIsRefused() async throws {
        await #expect(throws: ThumbnailError.badSize) {
            try await Self.thumbnailer.generate(source: "/nonexistent", destination: "/tmp/x.png", width: 0, height: 32,
                                                method: .crop, animated: false)
        }
        await #expect(throws: ThumbnailError.badSize) {
            try await Self.thumbnailer.generate(source: "/nonexistent", destination: "/tmp/x.png", width: 32,
                                                height: Int.max, method: .crop, animated: false)
        }
    }

    /// A 30000 x 30000 PNG (900 M pixels, a small file) is refused from its header, unread.
    @Test func decompressionBombIsNeverDecoded() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/bomb.png"
        let size = try await TestImages.writePNGBomb(path: path)
        #expect(size < 1_000_000)
        #expect(try await Self.thumbnailer.probe(path: path) == ImageInfo(format: .png, width: 30_000, height: 30_000, pages: 1))
        // Its own thumbnailer: the suite's shared one counts the other tests' generations.
        let own = Thumbnailer(threads: 1)
        await #expect(throws: ThumbnailError.tooLarge(pixels: 900_000_000)) {
            try await own.generate(source: path, destination: "\(dir)/t.png", width: 32, height: 32,
                                   method: .crop, animated: false)
        }
        #expect(own.generations == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/t.png"))
    }

    @Test func pixelCountSaturates() {
        let huge = ImageInfo(format: .gif, width: Int.max / 2, height: 3, pages: 5)
        #expect(Thumbnailer.pixels(huge, animated: false) == .max)
        let frames = ImageInfo(format: .gif, width: 1000, height: 1000, pages: 40)
        #expect(Thumbnailer.pixels(frames, animated: true) == 40_000_000)
        #expect(Thumbnailer.pixels(frames, animated: false) == 1_000_000)
    }

    /// Many thumbnails at once all complete on the pool's two threads.
    @Test func manyAtOnce() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try await image(dir, "in.jpg", width: 640, height: 480)
        let sizes = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<24 {
                group.addTask {
                    try await Self.thumbnailer.generate(source: source, destination: "\(dir)/t\(i).jpeg",
                                                        width: 32 + i, height: 32 + i, method: .crop, animated: false).width
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(sizes.sorted() == Array(32..<56))
    }
}
