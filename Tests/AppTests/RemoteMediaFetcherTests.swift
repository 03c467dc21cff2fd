import Actors
import Glibc
import Logging
import Matrix
import Persistence
import Synchronization
import Testing
import TestSupport
import Transport
@testable import App

/// A remote server played by a plain responder on a real socket, to drive the fetcher through
/// the shapes Synapse does not produce on demand: a `Location` part, a server without the
/// federation endpoint (legacy fallback), a file over the limit, a cut-off multipart body, and
/// a 404 that must not fall back. Failures leave no row and no temporary file.
@Suite struct RemoteMediaFetcherTests {
    final class FakeRemote: HTTPResponder {
        let port: Int
        let paths = Mutex<[String]>([])
        init(port: Int) { self.port = port }

        static let boundary = "fakeboundary42"
        static func multipart(_ second: String, _ body: [UInt8], closed: Bool = true) -> HTTPResponse {
            let b = boundary
            var bytes = Array("--\(b)\r\nContent-Type: application/json\r\n\r\n{}\r\n--\(b)\r\n\(second)\r\n\r\n".utf8) + body
            if closed { bytes += Array("\r\n--\(b)--\r\n".utf8) }
            return HTTPResponse(status: 200, contentType: "multipart/mixed; boundary=\(b)", bytes: bytes)
        }

        func respond(to request: HTTPRequest) async -> HTTPResponse {
            let path = String(request.head.path)
            paths.withLock { $0.append(String(request.head.target)) }
            let federation = "/_matrix/federation/v1/media/download/"
            switch path {
            case federation + "loc":
                return Self.multipart("Location: http://127.0.0.1:\(port)/cdn/file", [])
            case "/cdn/file":
                var response = HTTPResponse(status: 200, contentType: "image/png", bytes: Array("cdn bytes".utf8))
                response.headers.add("Content-Disposition", "attachment; filename*=UTF-8''caf%C3%A9.png")
                return response
            case federation + "old":
                return HTTPResponse(status: 404, contentType: "application/json", bytes: Array(#"{"errcode":"M_UNRECOGNIZED","error":"x"}"#.utf8))
            case "/_matrix/media/v3/download/127.0.0.1:\(port)/old":
                var response = HTTPResponse(status: 200, contentType: "text/plain", bytes: Array("legacy bytes".utf8))
                response.headers.add("Content-Disposition", "inline; filename=\"old.txt\"")
                return response
            case federation + "big":
                return Self.multipart("Content-Type: application/octet-stream", [UInt8](repeating: 7, count: 5_000))
            case federation + "cut":
                return Self.multipart("Content-Type: application/octet-stream", Array("half".utf8), closed: false)
            default:
                return HTTPResponse(status: 404, contentType: "application/json", bytes: Array(#"{"errcode":"M_NOT_FOUND","error":"x"}"#.utf8))
            }
        }
    }

    @Test func locationLegacyFallbackLimitsAndTruncation() async throws {
        let port = freePort()
        let remote = FakeRemote(port: port)
        let server = HTTPServer(configuration: TransportConfiguration(loops: 1, host: "127.0.0.1", port: port), responder: remote)
        _ = try await server.start()
        do { try await run(remote, port: port) } catch {
            server.shutdown()
            await server.waitUntilStopped()
            throw error
        }
        server.shutdown()
        await server.waitUntilStopped()
    }

    func run(_ remote: FakeRemote, port: Int) async throws {
        try await withMyelinServer { local, _ in
            let http = try loopbackHTTPClient()
            defer { http.shutdown() }
            let federation = FederationClient(serverName: try ServerName(parsing: local.configuration.serverName),
                                              signingKey: local.app.signingKey, client: http, scheme: .http)
            let media = local.app.media
            let cache = RemoteMediaCache(repository: media, store: local.app.database.remoteMediaCache,
                                         localOrigin: local.configuration.serverName, maxBytes: 0, logger: Logger(label: "test"))
            let source = FederationMediaSource(fetcher: RemoteMediaFetcher(client: { federation }, files: media.files, maxBytes: 1_000),
                                               repository: media, cache: cache, logger: Logger(label: "test"))
            let origin = "127.0.0.1:\(port)"

            let (viaLocation, path) = try await source.fetch(origin: origin, mediaID: "loc")
            #expect(viaLocation.contentType == "image/png" && viaLocation.uploadName == "café.png")
            #expect(try RemoteMediaTests().fileBytes(path) == Array("cdn bytes".utf8))

            let (legacy, legacyPath) = try await source.fetch(origin: origin, mediaID: "old")
            #expect(legacy.contentType == "text/plain" && legacy.uploadName == "old.txt")
            #expect(try RemoteMediaTests().fileBytes(legacyPath) == Array("legacy bytes".utf8))
            #expect(remote.paths.withLock { $0 }.contains("/_matrix/media/v3/download/\(origin)/old?allow_remote=false&allow_redirect=true"))

            for (id, status, code) in [("big", 502, "M_TOO_LARGE"), ("cut", 502, "M_UNKNOWN"), ("gone", 404, "M_NOT_FOUND")] {
                do {
                    _ = try await source.fetch(origin: origin, mediaID: id)
                    Issue.record("\(id) gave media")
                } catch let error as MatrixError {
                    #expect(error.status == status && error.code.rawValue == code, "\(id): \(error)")
                }
                #expect(try await local.app.database.media.record(origin: origin, mediaID: id) == nil)
            }
            // A 404 M_NOT_FOUND is the answer: no legacy request for it.
            #expect(!remote.paths.withLock { $0 }.contains { $0.hasPrefix("/_matrix/media/v3/download/\(origin)/gone") })
            // Nothing left half-written.
            #expect(try MediaFileStore.entries(media.files.temporaryDirectory).isEmpty)
        }
    }
}
