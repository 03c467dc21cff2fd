import Actors
import Foundation
import Glibc
import Testing
import StorageTestSupport
import TestSupport
@testable import App

/// The real binary does not map libvips (and the ~80 libraries only it needs) until it makes
/// its first thumbnail; then it loads it and thumbnails as before (see Sources/CVips/include/CVips.h).
@Suite("libvips is loaded on first use", .serialized)
struct LazyLibvipsTests {
    /// The memory map of process `pid`.
    static func maps(_ pid: pid_t) -> String { processMaps(String(pid)) }

    static func mapsLibvips(_ pid: pid_t) -> Bool { maps(pid).contains("libvips.so") }

    @Test func idleServerHasNotLoadedLibvipsAndTheFirstThumbnailLoadsIt() async throws {
        // Dynamic thumbnails: the request below is made on demand, not served from the
        // pre-generated sizes (made in the background after the upload).
        let configuration = "server_name: localhost\nregistration:\n  enabled: true\nrate_limits:\n  enabled: false\nmedia:\n  dynamic_thumbnails: true\n"
        try await ServerProcess.withServer(configuration: configuration) { pid, port in
            // The map was read (the binary itself is in it), and libvips is not.
            #expect(Self.maps(pid).contains("libswiftCore"))
            #expect(!Self.mapsLibvips(pid))
            let user = try await MediaTest.user(port, "lazyvips")
            let jpeg = try await ThumbnailTests.imageBytes("in.jpg", width: 400, height: 300)
            let id = try await ThumbnailTests.upload(port, user.token, jpeg, "image/jpeg")
            let client = try RawClient(port: port)
            client.send("GET \(ThumbnailTests.target("localhost", id, "width=100&height=100")) HTTP/1.1\r\n"
                        + "Host: x\r\nAuthorization: Bearer \(user.token ?? "")\r\n\r\n")
            let response = try await client.read()
            #expect(response.status == 200)
            let info = try await ThumbnailTests.decode(response.body)
            #expect(info == ImageInfo(format: .jpeg, width: 100, height: 75, pages: 1))
            #expect(Self.mapsLibvips(pid))
        }
    }
}
