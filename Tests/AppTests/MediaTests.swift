import Glibc
import Matrix
import Testing
import TestSupport
@testable import App

/// The content repository end to end over real sockets, on SQLite and PostgreSQL: uploads
/// stream into the content store, downloads stream back with the spec's headers, and every
/// failed upload leaves no file and no row.
@Suite("Media")
struct MediaTests {
    @Test(arguments: MediaTest.backends)
    func uploadAndDownloadRoundTrip(backend: String) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let bytes = MediaTest.bytes(200_000)
            let upload = try await MediaTest.upload(port, token: alice.token, bytes, contentType: "image/png",
                                                    target: "/_matrix/media/v3/upload?filename=cat%20pic.png")
            #expect(upload.status == 200)
            let uri = try #require(try MediaTest.json(upload)["content_uri"]?.stringValue)
            let (origin, mediaID) = MediaTest.parts(uri)
            #expect(origin == server.configuration.serverName)
            #expect(mediaID.utf8.count == 24)

            let download = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(origin)/\(mediaID)", token: alice.token)
            #expect(download.status == 200)
            #expect(download.body == bytes)
            #expect(download.header("Content-Type") == "image/png")
            #expect(download.header("Content-Disposition") == "inline; filename=\"cat pic.png\"")
            #expect(download.header("Content-Security-Policy") == MediaRepository.contentSecurityPolicy)
            #expect(download.header("Cross-Origin-Resource-Policy") == "cross-origin")
            #expect(download.header("Cache-Control")?.contains("max-age") == true)
            #expect(download.header("Accept-Ranges") == "bytes")

            // The file name in the path overrides the uploaded one.
            let renamed = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(origin)/\(mediaID)/other.png",
                                                  token: alice.token)
            #expect(renamed.status == 200 && renamed.body == bytes)
            #expect(renamed.header("Content-Disposition") == "inline; filename=\"other.png\"")

            // The row says what was uploaded.
            let record = try #require(try await server.app.media.store.record(origin: origin, mediaID: mediaID))
            #expect(record.size == 200_000 && record.uploadName == "cat pic.png" && record.contentType == "image/png")
            let user = try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue
            #expect(record.uploader?.rawValue == user)
            #expect(record.sha256 == SHA256Hasher.hex(sha256(bytes)))
        }
    }

    @Test(arguments: MediaTest.backends)
    func authenticatedPathsRefuseRequestsWithoutAToken(backend: String) async throws {
        try await MediaTest.withServer(backend) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let uri = try MediaTest.json(try await MediaTest.upload(port, token: alice.token, [1, 2, 3]))["content_uri"]!.stringValue!
            let (origin, mediaID) = MediaTest.parts(uri)
            for target in ["/_matrix/client/v1/media/download/\(origin)/\(mediaID)",
                           "/_matrix/client/v1/media/download/\(origin)/\(mediaID)/x.bin", "/_matrix/client/v1/media/config"] {
                let response = try await MediaTest.get(port, target, token: nil)
                #expect(response.status == 401, "\(target)")
                #expect(try MediaTest.json(response)["errcode"] == "M_MISSING_TOKEN")
            }
            #expect(try await MediaTest.upload(port, token: nil, [1, 2, 3]).status == 401)
            let create = try await RawClient(port: port).request("POST", "/_matrix/media/v1/create", body: "{}")
            #expect(create.status == 401)
            let config = try await MediaTest.get(port, "/_matrix/client/v1/media/config", token: alice.token)
            #expect(try MediaTest.json(config)["m.upload.size"]?.intValue == Int64(50 << 20))
        }
    }

    @Test func legacyDownloadsAreFrozenForMediaUploadedWithAuthenticatedMedia() async throws {
        try await withMyelinServer { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let uri = try MediaTest.json(try await MediaTest.upload(port, token: alice.token, [9, 9, 9]))["content_uri"]!.stringValue!
            let (origin, mediaID) = MediaTest.parts(uri)
            for version in ["v3", "r0", "v1"] {
                let legacy = try await MediaTest.get(port, "/_matrix/media/\(version)/download/\(origin)/\(mediaID)", token: nil)
                #expect(legacy.status == 404, "\(version)")
                #expect(try MediaTest.json(legacy)["errcode"] == "M_NOT_FOUND")
            }
            // Media stored before the switch (as if uploaded by an older server) stays served.
            let old = try await MediaTest.upload(port, token: alice.token, [7, 7])
            let oldID = MediaTest.parts(try MediaTest.json(old)["content_uri"]!.stringValue!).mediaID
            _ = try await server.app.database.write { db in
                try db.execute("UPDATE media SET authenticated = ? WHERE media_id = ?", .bool(false), .text(oldID))
            }
            let served = try await MediaTest.get(port, "/_matrix/media/v3/download/\(origin)/\(oldID)", token: nil)
            #expect(served.status == 200 && served.body == [7, 7])
            #expect(served.header("Cache-Control")?.hasPrefix("public") == true)
        }
    }

    @Test func legacyDownloadsServeEverythingWithAuthenticatedMediaOff() async throws {
        try await withMyelinServer({ $0.media.enableAuthenticatedMedia = false }) { _, port in
            let alice = try await MediaTest.user(port, "alice")
            let uri = try MediaTest.json(try await MediaTest.upload(port, token: alice.token, [5, 6], contentType: "text/html",
                                                                    target: "/_matrix/media/r0/upload?filename=page.html"))["content_uri"]!.stringValue!
            let (origin, mediaID) = MediaTest.parts(uri)
            for version in ["v3", "r0", "v1"] {
                let legacy = try await MediaTest.get(port, "/_matrix/media/\(version)/download/\(origin)/\(mediaID)", token: nil)
                #expect(legacy.status == 200 && legacy.body == [5, 6], "\(version)")
                // HTML is never rendered inline.
                #expect(legacy.header("Content-Disposition") == "attachment; filename=\"page.html\"")
            }
            let config = try await MediaTest.get(port, "/_matrix/media/v3/config", token: nil)
            #expect(config.status == 200)
        }
    }

    @Test(arguments: MediaTest.backends)
    func identicalContentIsStoredOnce(backend: String) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let bob = try await MediaTest.user(port, "bob")
            let bytes = MediaTest.bytes(70_000, seed: 3)
            let first = try MediaTest.json(try await MediaTest.upload(port, token: alice.token, bytes))["content_uri"]!.stringValue!
            let second = try MediaTest.json(try await MediaTest.upload(port, token: bob.token, bytes))["content_uri"]!.stringValue!
            #expect(first != second)
            let root = server.configuration.resolvedMediaPath
            #expect(MediaTest.files(under: root + "/content").count == 1)
            #expect(MediaTest.files(under: root + "/tmp").isEmpty)
            // Deleting one keeps the file for the other; deleting both removes it.
            try await server.app.media.delete(origin: server.configuration.serverName, mediaID: MediaTest.parts(first).mediaID)
            #expect(MediaTest.files(under: root + "/content").count == 1)
            let still = try await MediaTest.get(port, "/_matrix/client/v1/media/download/\(MediaTest.parts(second).server)/\(MediaTest.parts(second).mediaID)",
                                                token: bob.token)
            #expect(still.body == bytes)
            try await server.app.media.delete(origin: server.configuration.serverName, mediaID: MediaTest.parts(second).mediaID)
            #expect(MediaTest.files(under: root + "/content").isEmpty)
        }
    }

    @Test(arguments: MediaTest.backends)
    func anUploadCutOffMidBodyLeavesNoFileAndNoRow(backend: String) async throws {
        try await MediaTest.withServer(backend) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let user = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let root = server.configuration.resolvedMediaPath
            // Declared 1 MiB, 300 KB sent, then the socket closes.
            do {
                let client = try RawClient(port: port)
                await client.sendAsync(MediaTest.uploadHead(token: alice.token, length: 1 << 20) + MediaTest.bytes(300_000))
                try await Task.sleep(for: .milliseconds(200))
                #expect(!MediaTest.files(under: root + "/tmp").isEmpty, "the upload was streaming to a temporary file")
            }
            // Chunked, cut off inside a chunk.
            do {
                let client = try RawClient(port: port)
                var body = MediaTest.uploadHead(token: alice.token, length: nil, chunked: true)
                body += Array("10000\r\n".utf8) + MediaTest.bytes(65536) + Array("\r\n10000\r\n".utf8) + MediaTest.bytes(1000)
                await client.sendAsync(body)
                try await Task.sleep(for: .milliseconds(100))
            }
            let clean = try await MediaTest.eventually {
                MediaTest.files(under: root).isEmpty
            }
            #expect(clean, "files left: \(MediaTest.files(under: root))")
            #expect(try await MediaTest.rows(server, uploader: user) == 0)
            // The server still takes uploads.
            #expect(try await MediaTest.upload(port, token: alice.token, [1]).status == 200)
        }
    }

    @Test(arguments: MediaTest.backends)
    func anUploadOverTheLimitIsRefusedBeforeItsBodyIsRead(backend: String) async throws {
        try await MediaTest.withServer(backend, { $0.media.maxUploadBytes = 100_000 }) { server, port in
            let alice = try await MediaTest.user(port, "alice")
            let user = try #require(try await alice.call("GET", "/account/whoami").json["user_id"]?.stringValue)
            let root = server.configuration.resolvedMediaPath
            // A declared length over the limit: 413 after the head alone.
            let declared = try RawClient(port: port)
            await declared.sendAsync(MediaTest.uploadHead(token: alice.token, length: 10 << 20))
            let refused = try await declared.read()
            #expect(refused.status == 413)
            #expect(try MediaTest.json(refused)["errcode"] == "M_TOO_LARGE")
            // Chunked, no declared length: 413 once 100 000 bytes passed, the rest never sent.
            let chunked = try RawClient(port: port)
            var body = MediaTest.uploadHead(token: alice.token, length: nil, chunked: true)
            for _ in 0..<2 { body += Array("10000\r\n".utf8) + MediaTest.bytes(65536) + Array("\r\n".utf8) }
            await chunked.sendAsync(body)
            let tooLarge = try await chunked.read()
            #expect(tooLarge.status == 413)
            #expect(try MediaTest.json(tooLarge)["errcode"] == "M_TOO_LARGE")
            let clean = try await MediaTest.eventually { MediaTest.files(under: root).isEmpty }
            #expect(clean, "files left: \(MediaTest.files(under: root))")
            #expect(try await MediaTest.rows(server, uploader: user) == 0)
            // At the limit exactly is fine.
            #expect(try await MediaTest.upload(port, token: alice.token, MediaTest.bytes(100_000)).status == 200)
        }
    }

    @Test func aBodyShorterThanDeclaredInOneRequestIsRefused() async throws {
        // The transport reads exactly Content-Length bytes; the repository checks the count
        // again for bodies it is handed whole (the upload path must not trust either side).
        try await withMyelinServer { server, _ in
            let media = server.app.media
            let alice = try UserID(parsing: "@alice:\(server.configuration.serverName)")
            await #expect(throws: MatrixError.self) {
                _ = try await media.store(body: MediaRequestBody(.buffered([1, 2, 3])), declaredLength: 4, contentType: nil,
                                          fileName: nil, uploader: alice)
            }
            #expect(MediaTest.files(under: server.configuration.resolvedMediaPath).isEmpty)
            #expect(try await MediaTest.rows(server, uploader: alice.rawValue) == 0)
        }
    }
}
