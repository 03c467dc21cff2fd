import Actors
import Foundation
import Matrix
import Persistence
import Testing
import TestSupport
@testable import App

/// Thumbnails end to end over real sockets: images made at test time, uploaded, thumbnailed,
/// and the responses decoded (their header read back by libvips) to check format and size.
@Suite("Thumbnails", .serialized)
struct ThumbnailTests {
    /// A thumbnailer of the test process, to make inputs and read outputs.
    static let images = Thumbnailer(threads: 1)

    static func imageBytes(_ name: String, width: Int, height: Int, pages: Int = 1) async throws -> [UInt8] {
        let path = makeTemporaryDirectory() + "/" + name
        try await images.writeImage(pixels: TestImages.pattern(width: width, height: height, pages: pages),
                                    width: width, height: height, bands: 3, pages: pages, path: path)
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The header of a response body: its format, size and frames.
    static func decode(_ body: [UInt8]) async throws -> ImageInfo {
        let path = makeTemporaryDirectory() + "/thumbnail"
        try Data(body).write(to: URL(fileURLWithPath: path))
        return try await images.probe(path: path)
    }

    /// Uploads `bytes`; the media id.
    static func upload(_ port: Int, _ token: String?, _ bytes: [UInt8], _ contentType: String) async throws -> String {
        let response = try await MediaTest.upload(port, token: token, bytes, contentType: contentType)
        #expect(response.status == 200, "\(response.text)")
        let uri = try #require(try MediaTest.json(response)["content_uri"]?.stringValue)
        return MediaTest.parts(uri).mediaID
    }

    static func thumbnailRows(_ server: MyelinServer) async throws -> Int {
        try await server.app.database.read { db in
            Int(try db.queryFirst("SELECT COUNT(*) FROM media_thumbnails")?.int(0) ?? 0)
        }
    }

    static func sha256(_ server: MyelinServer, _ mediaID: String) async throws -> String {
        try #require(try await server.app.database.media.record(origin: server.configuration.serverName, mediaID: mediaID)?.sha256)
    }

    static func target(_ server: String, _ id: String, _ query: String, legacy: String? = nil) -> String {
        let base = legacy.map { "/_matrix/media/\($0)/thumbnail" } ?? "/_matrix/client/v1/media/thumbnail"
        return "\(base)/\(server)/\(id)?\(query)"
    }

    @Test func preGeneratedSetAndNearestLarger() async throws {
        try await MediaTest.withServer("sqlite") { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let jpeg = try await Self.imageBytes("in.jpg", width: 1000, height: 750)
            let id = try await Self.upload(port, user.token, jpeg, "image/jpeg")
            // The five default sizes are made after the upload, in the background.
            #expect(try await MediaTest.eventually { try await Self.thumbnailRows(server) == 5 })
            let files = MediaTest.files(under: server.configuration.resolvedMediaPath + "/thumbnails")
                .filter { !$0.contains("/thumbnails/tmp/") }
            #expect(files.count == 5)
            let made = server.app.thumbnails.thumbnailer.generations
            let name = server.configuration.serverName
            for (query, size) in [("width=300&height=200", (320, 240)), ("width=321&height=241", (640, 480)),
                                  ("width=700&height=500&method=scale", (800, 600)),
                                  ("width=50&height=50&method=crop", (96, 96)), ("width=20&height=20&method=crop", (32, 32))] {
                let response = try await MediaTest.get(port, Self.target(name, id, query), token: user.token)
                #expect(response.status == 200, "\(query): \(response.text)")
                #expect(response.header("Content-Type") == "image/jpeg")
                let info = try await Self.decode(response.body)
                #expect(info.format == .jpeg && info.width == size.0 && info.height == size.1, "\(query)")
            }
            // All served from the pre-generated set: nothing generated for the requests.
            #expect(server.app.thumbnails.thumbnailer.generations == made)
        }
    }

    @Test(arguments: [("in.png", "image/png"), ("in.webp", "image/webp"), ("in.gif", "image/gif")])
    func otherFormatsGivePNG(name: String, contentType: String) async throws {
        try await MediaTest.withServer("sqlite", { $0.media.thumbnailing.dynamic = true }) { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let id = try await Self.upload(port, user.token, try await Self.imageBytes(name, width: 400, height: 300), contentType)
            let scaled = try await MediaTest.get(port, Self.target(server.configuration.serverName, id, "width=100&height=100"),
                                                 token: user.token)
            #expect(scaled.status == 200 && scaled.header("Content-Type") == "image/png")
            #expect(try await Self.decode(scaled.body) == ImageInfo(format: .png, width: 100, height: 75, pages: 1))
            let cropped = try await MediaTest.get(port, Self.target(server.configuration.serverName, id,
                                                                    "width=60&height=60&method=crop"), token: user.token)
            #expect(try await Self.decode(cropped.body) == ImageInfo(format: .png, width: 60, height: 60, pages: 1))
        }
    }

    @Test(arguments: MediaTest.backends)
    func concurrentIdenticalRequestsGenerateOnce(backend: String) async throws {
        try await MediaTest.withServer(backend, {
            $0.media.thumbnailing.dynamic = true
            $0.media.thumbnailing.sizes = []
        }) { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let id = try await Self.upload(port, user.token, try await Self.imageBytes("in.jpg", width: 2000, height: 1500), "image/jpeg")
            let before = server.app.thumbnails.thumbnailer.generations
            let target = Self.target(server.configuration.serverName, id, "width=123&height=77&method=crop")
            let token = user.token
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<12 { group.addTask { try await MediaTest.get(port, target, token: token).status } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 12))
            #expect(server.app.thumbnails.thumbnailer.generations == before + 1)
            let rows = try await server.app.database.mediaThumbnails.thumbnails(sha256: Self.sha256(server, id), animated: false)
            #expect(rows.map { [$0.width, $0.height, $0.thumbnailWidth, $0.thumbnailHeight] } == [[123, 77, 123, 77]])
            #expect(rows.first?.method == "crop" && rows.first?.contentType == "image/jpeg")
            // A later request is served from the row: nothing generated.
            #expect(try await MediaTest.get(port, target, token: token).status == 200)
            #expect(server.app.thumbnails.thumbnailer.generations == before + 1)
        }
    }

    @Test func animatedGIF() async throws {
        try await MediaTest.withServer("sqlite", { $0.media.thumbnailing.dynamic = true }) { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let gif = try await Self.imageBytes("in.gif", width: 200, height: 100, pages: 3)
            let id = try await Self.upload(port, user.token, gif, "image/gif")
            let name = server.configuration.serverName
            let animated = try await MediaTest.get(port, Self.target(name, id, "width=100&height=100&animated=true"),
                                                   token: user.token)
            #expect(animated.status == 200 && animated.header("Content-Type") == "image/gif")
            #expect(try await Self.decode(animated.body) == ImageInfo(format: .gif, width: 100, height: 50, pages: 3))
            let still = try await MediaTest.get(port, Self.target(name, id, "width=100&height=100"), token: user.token)
            #expect(try await Self.decode(still.body) == ImageInfo(format: .png, width: 100, height: 50, pages: 1))
        }
    }

    /// A 30000 x 30000 PNG (a small file, 900 M pixels) is refused with 400 from its header;
    /// the server's memory does not jump (decoding it would take 900 MB at least).
    @Test func decompressionBombRefused() async throws {
        try await MediaTest.withServer("sqlite", { $0.media.thumbnailing.dynamic = true }) { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let path = makeTemporaryDirectory() + "/bomb.png"
            let size = try await TestImages.writePNGBomb(path: path)
            #expect(size < 1 << 20)
            let bomb = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            let id = try await Self.upload(port, user.token, bomb, "image/png")
            let rssBefore = residentKiB()
            let started = ContinuousClock.now
            let response = try await MediaTest.get(port, Self.target(server.configuration.serverName, id, "width=32&height=32"),
                                                   token: user.token)
            #expect(response.status == 400)
            #expect(try MediaTest.json(response)["errcode"]?.stringValue == "M_TOO_LARGE")
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(residentKiB() - rssBefore < 64 * 1024)
            #expect(try await Self.thumbnailRows(server) == 0)
        }
    }

    @Test func refusals() async throws {
        try await MediaTest.withServer("sqlite") { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let name = server.configuration.serverName
            let text = try await Self.upload(port, user.token, Array("not an image at all".utf8), "text/plain")
            let notImage = try await MediaTest.get(port, Self.target(name, text, "width=32&height=32"), token: user.token)
            #expect(notImage.status == 400)
            let id = try await Self.upload(port, user.token, try await Self.imageBytes("in.jpg", width: 64, height: 64), "image/jpeg")
            for (query, code) in [("height=32", "M_MISSING_PARAM"), ("width=0&height=32", "M_INVALID_PARAM"),
                                  ("width=99999999999999999999&height=32", "M_INVALID_PARAM"),
                                  ("width=32&height=32&method=zoom", "M_INVALID_PARAM"),
                                  ("width=32&height=32&animated=maybe", "M_INVALID_PARAM")] {
                let response = try await MediaTest.get(port, Self.target(name, id, query), token: user.token)
                #expect(response.status == 400 && (try? MediaTest.json(response)["errcode"]?.stringValue) == code, "\(query)")
            }
            let anonymous = try await MediaTest.get(port, Self.target(name, id, "width=32&height=32"), token: nil)
            #expect(anonymous.status == 401)
            let unknown = try await MediaTest.get(port, Self.target(name, "nosuchmedia", "width=32&height=32"), token: user.token)
            #expect(unknown.status == 404)
            // Legacy paths refuse media stored while authenticated media is enforced.
            let legacy = try await MediaTest.get(port, Self.target(name, id, "width=32&height=32", legacy: "v3"), token: nil)
            #expect(legacy.status == 404)
        }
    }

    @Test(arguments: ["v3", "r0", "v1"])
    func legacyPaths(version: String) async throws {
        try await MediaTest.withServer("sqlite", { $0.media.enableAuthenticatedMedia = false }) { server, port in
            let user = try await MediaTest.user(port, "thumbs")
            let id = try await Self.upload(port, user.token, try await Self.imageBytes("in.jpg", width: 640, height: 480), "image/jpeg")
            let response = try await MediaTest.get(port, Self.target(server.configuration.serverName, id, "width=96&height=96&method=crop",
                                                                     legacy: version), token: nil)
            #expect(response.status == 200 && response.header("Content-Type") == "image/jpeg")
            #expect(try await Self.decode(response.body) == ImageInfo(format: .jpeg, width: 96, height: 96, pages: 1))
        }
    }
}

/// The resident set of this process (the server runs in it), from /proc.
func residentKiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    return 0
}
