import Glibc
import Matrix
import Testing
import TestSupport
@testable import App

/// Asynchronous uploads (`POST /_matrix/media/v1/create` + `PUT .../upload/{server}/{id}`),
/// the download of media not yet uploaded, byte ranges and quarantine, on both backends.
@Suite("Media: create, ranges, quarantine")
struct MediaCreateTests {
    static func create(_ client: MatrixTestClient) async throws -> (reply: MatrixTestClient.Reply, mediaID: String?) {
        let reply = try await client.call("POST", "/_matrix/media/v1/create", .object([:]))
        let mediaID = reply.json["content_uri"]?.stringValue.map { MediaTest.parts($0).mediaID }
        return (reply, mediaID)
    }

    @Test(arguments: MediaTest.backends)
    func createdIdsTakeOneUploadFromTheirCreatorOnly(backend: String) async throws {
        try await MediaTest.withServer(backend, { $0.media.maxPendingUploads = 2 }) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let bob = try await MediaTest.user(port, "bob")
            let name = server.configuration.serverName
            let (reply, id) = try await Self.create(alice)
            #expect(reply.status == 200)
            let mediaID = try #require(id)
            let expires = try #require(reply.json["unused_expires_at"]?.intValue)
            #expect(expires > Clock.nowMilliseconds() + 3_600_000)
            let target = "/_matrix/media/v3/upload/\(name)/\(mediaID)?filename=later.txt"

            let byBob = try await MediaTest.upload(port, token: bob.token, [1], target: target, method: "PUT")
            #expect(byBob.status == 403)
            #expect(try MediaTest.json(byBob)["errcode"] == "M_FORBIDDEN")
            let elsewhere = try await MediaTest.upload(port, token: alice.token, [1], target: "/_matrix/media/v3/upload/other.example/\(mediaID)",
                                                       method: "PUT")
            #expect(elsewhere.status == 404)

            let first = try await MediaTest.upload(port, token: alice.token, Array("hello".utf8), contentType: "text/plain",
                                                   target: target, method: "PUT")
            #expect(first.status == 200)
            let again = try await MediaTest.upload(port, token: alice.token, Array("other".utf8), target: target, method: "PUT")
            #expect(again.status == 409)
            #expect(try MediaTest.json(again)["errcode"] == "M_CANNOT_OVERWRITE_MEDIA")

            let download = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(name)/\(mediaID)", token: bob.token)
            #expect(download.status == 200 && download.text == "hello")
            #expect(download.header("Content-Disposition") == "inline; filename=\"later.txt\"")
            // The refused second upload left no file of its own.
            #expect(MediaTest.files(under: server.configuration.resolvedMediaPath + "/content").count == 1)
            #expect(MediaTest.files(under: server.configuration.resolvedMediaPath + "/tmp").isEmpty)
        }
    }

    @Test(arguments: MediaTest.backends)
    func pendingIdsAreLimitedPerUser(backend: String) async throws {
        try await MediaTest.withServer(backend, { $0.media.maxPendingUploads = 2 }) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let bob = try await MediaTest.user(port, "bob")
            #expect(try await Self.create(alice).reply.status == 200)
            #expect(try await Self.create(alice).reply.status == 200)
            let third = try await Self.create(alice).reply
            #expect(third.status == 429)
            #expect(third.errcode == "M_LIMIT_EXCEEDED")
            #expect(try await Self.create(bob).reply.status == 200)
        }
    }

    @Test(arguments: MediaTest.backends)
    func anExpiredIdIsGone(backend: String) async throws {
        try await MediaTest.withServer(backend, { $0.media.pendingUploadExpiryMs = 300 }) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let mediaID = try #require(try await Self.create(alice).mediaID)
            try await Task.sleep(for: .milliseconds(400))
            let name = server.configuration.serverName
            let late = try await MediaTest.upload(port, token: alice.token, [1, 2], target: "/_matrix/media/v3/upload/\(name)/\(mediaID)",
                                                  method: "PUT")
            #expect(late.status == 404)
            #expect(try MediaTest.json(late)["errcode"] == "M_NOT_FOUND")
            let download = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(name)/\(mediaID)", token: alice.token)
            #expect(download.status == 404)
            #expect(MediaTest.files(under: server.configuration.resolvedMediaPath).isEmpty)
        }
    }

    @Test(arguments: MediaTest.backends)
    func aDownloadWaitsForThePendingUpload(backend: String) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let name = server.configuration.serverName
            let mediaID = try #require(try await Self.create(alice).mediaID)
            let path = "/_matrix/client/v1/media/download/\(name)/\(mediaID)"
            let early = try await MediaTest.get(port, path + "?timeout_ms=150", token: alice.token)
            #expect(early.status == 504)
            #expect(try MediaTest.json(early)["errcode"] == "M_NOT_YET_UPLOADED")
            #expect(try await MediaTest.get(port, path + "?timeout_ms=-1", token: alice.token).status == 400)

            let token = alice.token
            async let waiting = MediaTest.get(port, path + "?timeout_ms=5000", token: token)
            try await Task.sleep(for: .milliseconds(300))
            let put = try await MediaTest.upload(port, token: alice.token, Array("late bytes".utf8),
                                                 target: "/_matrix/media/v3/upload/\(name)/\(mediaID)", method: "PUT")
            #expect(put.status == 200)
            let served = try await waiting
            #expect(served.status == 200 && served.text == "late bytes")
        }
    }

    @Test(arguments: MediaTest.backends)
    func rangesAreServedFromTheFile(backend: String) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let bytes = MediaTest.bytes(100_000, seed: 9)
            let uri = try MediaTest.json(try await MediaTest.upload(port, token: alice.token, bytes, contentType: "audio/ogg"))["content_uri"]!.stringValue!
            let path = "/_matrix/client/v1/media/download/\(MediaTest.parts(uri).server)/\(MediaTest.parts(uri).mediaID)"
            let cases: [(String, Int, String?, ArraySlice<UInt8>)] = [
                ("bytes=0-9", 206, "bytes 0-9/100000", bytes[0..<10]),
                ("bytes=99990-", 206, "bytes 99990-99999/100000", bytes[99_990...]),
                ("bytes=-5", 206, "bytes 99995-99999/100000", bytes[99_995...]),
                ("bytes=50000-199999", 206, "bytes 50000-99999/100000", bytes[50_000...]),
                ("bytes=100000-", 416, "bytes */100000", []),
                ("bytes=5-1", 200, nil, bytes[...]),
                ("bytes=0-1,5-6", 200, nil, bytes[...]),
                ("bytes=99999999999999999999999-", 200, nil, bytes[...]),
                ("lines=1-2", 200, nil, bytes[...]),
            ]
            for (range, status, contentRange, body) in cases {
                let response = try await MediaTest.get(port, path, token: alice.token, headers: ["Range": range])
                #expect(response.status == status, "\(range)")
                #expect(response.header("Content-Range") == contentRange, "\(range)")
                #expect(response.body == Array(body), "\(range)")
            }
            _ = server
        }
    }

    @Test(arguments: MediaTest.backends)
    func quarantinedMediaIsNotServed(backend: String) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let uri = try MediaTest.json(try await MediaTest.upload(port, token: alice.token, [4, 2]))["content_uri"]!.stringValue!
            let (origin, mediaID) = MediaTest.parts(uri)
            #expect(try await server.app.media.store.setQuarantined(origin: origin, mediaID: mediaID, by: "@admin:x"))
            let response = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(origin)/\(mediaID)", token: alice.token)
            #expect(response.status == 404)
            #expect(try MediaTest.json(response)["errcode"] == "M_NOT_FOUND")
        }
    }

    @Test func remoteMediaWithoutASourceIsNotFound() async throws {
        // A repository of its own: the server's may have the remote-media source set.
        try await withMyelinServer { server, _ in
            let media = MediaRepository(configuration: server.configuration, database: server.app.database)
            #expect(media.remoteSource == nil)
            await #expect(throws: MatrixError(.notFound, "Media not found")) {
                _ = try await media.resolve(origin: "other.example", mediaID: "abc", allowRemote: true)
            }
            await #expect(throws: MatrixError(.notFound, "Media not found")) {
                _ = try await media.resolveWaiting(origin: server.configuration.serverName, mediaID: "unknown",
                                                   allowRemote: true, timeoutMs: 0)
            }
        }
    }

    @Test func aStoredContentTypeWithControlBytesIsServedAsOctetStream() async throws {
        try await withMyelinServer { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let record = try await server.app.media.store(bytes: [1], contentType: "text/plain\r\nSet-Cookie: x=y",
                                                          fileName: nil, uploader: nil)
            let response = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(record.origin)/\(record.mediaID)",
                                                   token: alice.token)
            #expect(response.status == 200 && response.body == [1])
            #expect(response.header("Content-Type") == "application/octet-stream")
            #expect(response.header("Set-Cookie") == nil)
            #expect(response.header("Content-Disposition") == "attachment")
        }
    }

    @Test func contentDispositionFollowsRFC6266() {
        #expect(MediaRepository.contentDisposition(contentType: "image/png", fileName: nil) == "inline")
        #expect(MediaRepository.contentDisposition(contentType: "IMAGE/PNG; x=y", fileName: "a.png") == "inline; filename=\"a.png\"")
        #expect(MediaRepository.contentDisposition(contentType: "image/svg+xml", fileName: "a.svg") == "attachment; filename=\"a.svg\"")
        #expect(MediaRepository.contentDisposition(contentType: "text/html", fileName: nil) == "attachment")
        #expect(MediaRepository.contentDisposition(contentType: "text/plain", fileName: "naïve \"q\".txt")
                == "inline; filename*=utf-8''na%C3%AFve%20%22q%22.txt")
        #expect(MediaRepository.contentDisposition(contentType: "application/pdf", fileName: "a\r\nb")
                == "attachment; filename*=utf-8''a%0D%0Ab")
    }

    @Test func uploadsPastTheActorLimitWaitForNoneAndGet429() async throws {
        try await withMyelinServer({ $0.actors.mediaUploads.maxResident = 1 }) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let root = server.configuration.resolvedMediaPath
            // One upload in progress: its head and part of its body sent.
            let first = try RawClient(port: port)
            await first.sendAsync(MediaTest.uploadHead(token: alice.token, length: 20_000) + MediaTest.bytes(10_000))
            #expect(try await MediaTest.eventually { !MediaTest.files(under: root + "/tmp").isEmpty })
            let second = try await MediaTest.upload(port, token: alice.token, [1, 2, 3], target: "/_matrix/media/v1/upload")
            #expect(second.status == 429)
            #expect(try MediaTest.json(second)["errcode"] == "M_LIMIT_EXCEEDED")
            // The first one completes; then the seed's v1 alias takes uploads again.
            await first.sendAsync(MediaTest.bytes(10_000, seed: 2))
            #expect(try await first.read().status == 200)
            // The first upload's actor leaves the registry just after its reply: on a loaded
            // machine the next upload may still find the slot taken (429) for a moment.
            #expect(try await MediaTest.eventually {
                try await MediaTest.upload(port, token: alice.token, [1, 2, 3], target: "/_matrix/media/v1/upload").status == 200
            })
        }
    }
}
