import Actors
import Testing
@testable import App

/// Synapse's thumbnail selection rule and the thumbnail settings, without a server.
@Suite("Thumbnail selection")
struct ThumbnailSelectionTests {
    /// The defaults as a 1000 x 750 JPEG's thumbnails would be.
    static let made: [ThumbnailSelection.Candidate] = ThumbnailSize.defaults.map { size in
        let (w, h) = ThumbnailSelection.expected(size, sourceWidth: 1000, sourceHeight: 750)
        return .init(size: size, width: w, height: h, contentType: "image/jpeg", length: Int64(w * h))
    }

    private func pick(_ width: Int, _ height: Int, _ method: ThumbnailMethod) -> ThumbnailSize? {
        ThumbnailSelection.select(Self.made, width: width, height: height, method: method, contentType: "image/jpeg")?.size
    }

    @Test func expectedSizes() {
        #expect(Self.made.map { [$0.width, $0.height] } == [[32, 32], [96, 96], [320, 240], [640, 480], [800, 600]])
        let small = ThumbnailSelection.expected(.init(width: 800, height: 600, method: .scale), sourceWidth: 100, sourceHeight: 50)
        #expect(small == (100, 50))  // never upscaled
        let tall = ThumbnailSelection.expected(.init(width: 320, height: 240, method: .scale), sourceWidth: 300, sourceHeight: 3000)
        #expect(tall == (24, 240))
    }

    @Test func nearestLargerIsChosen() {
        #expect(pick(300, 200, .scale) == ThumbnailSize(width: 320, height: 240, method: .scale))
        #expect(pick(321, 241, .scale) == ThumbnailSize(width: 640, height: 480, method: .scale))
        #expect(pick(700, 500, .scale) == ThumbnailSize(width: 800, height: 600, method: .scale))
        #expect(pick(50, 50, .crop) == ThumbnailSize(width: 96, height: 96, method: .crop))
        #expect(pick(20, 20, .crop) == ThumbnailSize(width: 32, height: 32, method: .crop))
        // Larger than every one: the largest (the closest) of the method.
        #expect(pick(2000, 2000, .scale) == ThumbnailSize(width: 800, height: 600, method: .scale))
        #expect(pick(500, 500, .crop) == ThumbnailSize(width: 96, height: 96, method: .crop))
    }

    @Test func noSizeOfTheMethodFallsBackOnlyWhenAsked() {
        let cropOnly = Self.made.filter { $0.size.method == .crop }
        #expect(ThumbnailSelection.select(cropOnly, width: 300, height: 200, method: .scale, contentType: "image/jpeg") == nil)
        #expect(ThumbnailSelection.select(cropOnly, width: 300, height: 200, method: .scale, contentType: "image/jpeg",
                                          anyMethod: true)?.size == ThumbnailSize(width: 96, height: 96, method: .crop))
    }

    @Test func settingsAreRead() throws {
        let configuration = try ConfigurationLoader.load(yaml: """
            media:
              thumbnail_sizes:
                - {width: 64, height: 64, method: crop}
                - width: 1024
                  height: 768
                  method: scale
              max_image_pixels: 12M
              dynamic_thumbnails: true
              thumbnail_threads: 3
            """)
        let t = configuration.media.thumbnailing
        #expect(t.sizes == [ThumbnailSize(width: 64, height: 64, method: .crop),
                            ThumbnailSize(width: 1024, height: 768, method: .scale)])
        #expect(t.maxImagePixels == 12_000_000 && t.dynamic && t.threads == 3)
        #expect(Configuration().media.thumbnailing.sizes == ThumbnailSize.defaults)
        #expect(Configuration().media.thumbnailing.maxImagePixels == 32_000_000)
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.load(yaml: "media:\n  thumbnail_sizes:\n    - {width: 64, height: 64, method: zoom}\n")
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.load(yaml: "media:\n  thumbnail_sizes:\n    - {width: 99999, height: 64}\n")
        }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(yaml: "media:\n  max_image_pixels: lots\n") }
    }
}
