import Actors
import Glibc
import Logging
import Matrix
import Persistence
import Testing
import TestSupport
import Transport
@testable import App

/// Remote media between two Myelin servers over real sockets (`127.0.0.1:<port>` names, plain
/// HTTP federation clients): B's clients get A's media through A's federation download
/// endpoint (multipart, X-Matrix), concurrent requests share one download, unknown ids are
/// 404, unsigned requests 401, and B's cache evicts its least recently used entries.
@Suite struct RemoteMediaTests {
    struct Pair {
        let a: MyelinServer
        let aName: String
        let aPort: Int
        let b: MyelinServer
        let source: FederationMediaSource
        let cache: RemoteMediaCache
    }

    func withPair(cacheMaxBytes: Int64 = 0, _ body: (Pair) async throws -> Void) async throws {
        let portA = freePort(), portB = freePort()
        let nameA = "127.0.0.1:\(portA)", nameB = "127.0.0.1:\(portB)"
        try await withMyelinServer({
            $0.listeners = [.init(host: "127.0.0.1", port: portA)]
            $0.serverName = nameA
        }) { a, _ in
            try await withMyelinServer({
                $0.listeners = [.init(host: "127.0.0.1", port: portB)]
                $0.serverName = nameB
            }) { b, _ in
                let clientA = try loopbackHTTPClient(), clientB = try loopbackHTTPClient()
                defer { clientA.shutdown(); clientB.shutdown() }
                a.app.keyRing.use(FederationClient(serverName: try ServerName(parsing: nameA), signingKey: a.app.signingKey,
                                                   client: clientA, scheme: .http))
                let federationB = FederationClient(serverName: try ServerName(parsing: nameB), signingKey: b.app.signingKey,
                                                   client: clientB, scheme: .http)
                b.app.keyRing.use(federationB)
                let cache = RemoteMediaCache(repository: b.app.media, store: b.app.database.remoteMediaCache, localOrigin: nameB,
                                             maxBytes: cacheMaxBytes, logger: Logger(label: "test"))
                let fetcher = RemoteMediaFetcher(client: { federationB }, files: b.app.media.files, maxBytes: 1 << 20)
                let source = FederationMediaSource(fetcher: fetcher, repository: b.app.media, cache: cache, logger: Logger(label: "test"))
                try await body(Pair(a: a, aName: nameA, aPort: portA, b: b, source: source, cache: cache))
            }
        }
    }

    func fileBytes(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw MediaFileError("open", path) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65536) }
            if n <= 0 { break }
            out += buffer[..<n]
        }
        return out
    }

    @Test func downloadsOverFederationOnceAndCaches() async throws {
        try await withPair { pair in
            let uploader = try UserID(parsing: "@alice:\(pair.aName)")
            let data = (0..<700_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
            let stored = try await pair.a.app.media.store(bytes: data, contentType: "application/pdf", fileName: "résumé.pdf",
                                                         uploader: uploader)
            // Five concurrent requests, one download, the same row for all.
            let results = try await withThrowingTaskGroup(of: MediaRecord.self) { group in
                for _ in 0..<5 {
                    group.addTask { try await pair.source.fetch(origin: pair.aName, mediaID: stored.mediaID).0 }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(results.map(\.sha256)) == [stored.sha256])
            let (record, path) = try await pair.source.fetch(origin: pair.aName, mediaID: stored.mediaID)
            #expect(record.origin == pair.aName && record.uploader == nil)
            #expect(record.contentType == "application/pdf")
            #expect(record.uploadName == "résumé.pdf")
            #expect(record.size == Int64(data.count))
            #expect(try fileBytes(path) == data)
            let row = try await pair.b.app.database.media.record(origin: pair.aName, mediaID: stored.mediaID)
            #expect(row?.sha256 == stored.sha256)

            // Unknown media: 404 M_NOT_FOUND, nothing recorded.
            await #expect(throws: MatrixError.self) { _ = try await pair.source.fetch(origin: pair.aName, mediaID: "nosuchmedia") }
            do { _ = try await pair.source.fetch(origin: pair.aName, mediaID: "nosuchmedia") } catch let error as MatrixError {
                #expect(error.status == 404 && error.code == .notFound)
            }
            // An unreachable server: 502.
            do {
                _ = try await pair.source.fetch(origin: "127.0.0.1:\(freePort())", mediaID: "abc")
                Issue.record("an unreachable server gave media")
            } catch let error as MatrixError {
                #expect(error.status == 502, "\(error)")
            }
        }
    }

    @Test func federationDownloadNeedsASignatureAndIsMultipart() async throws {
        try await withPair { pair in
            let uploader = try UserID(parsing: "@alice:\(pair.aName)")
            let stored = try await pair.a.app.media.store(bytes: Array("hello".utf8), contentType: "text/plain", fileName: "a.txt",
                                                         uploader: uploader)
            let path = "/_matrix/federation/v1/media/download/\(stored.mediaID)"
            let client = try RawClient(port: pair.aPort)
            let unsigned = try await client.request("GET", path, body: nil, headers: [:])
            #expect(unsigned.status == 401)
            // Signed by B (A fetches B's key from B's listener).
            let federation = try pair.source.fetcher.client()
            let response = try await federation.streamingGet(try ServerName(parsing: pair.aName), path: path, signed: true, maxBytes: 1 << 20)
            #expect(response.status == 200)
            let type = try #require(response.headers["Content-Type"])
            #expect(type.hasPrefix("multipart/mixed; boundary="))
            var parser = try MultipartMixedParser(contentType: type)
            var heads: [HTTPHeaders] = []
            var bodies: [[UInt8]] = []
            for try await chunk in response.body {
                for event in try parser.feed(chunk) {
                    switch event {
                    case .partHead(let headers): heads.append(headers); bodies.append([])
                    case .body(let bytes): bodies[bodies.count - 1] += bytes
                    default: break
                    }
                }
            }
            try parser.finish()
            #expect(heads.count == 2)
            #expect(heads.first?["Content-Type"] == "application/json" && bodies.first == Array("{}".utf8))
            #expect(heads.last?["Content-Type"]?.hasPrefix("text/plain") == true)
            #expect(heads.last?["Content-Disposition"]?.contains("a.txt") == true)
            #expect(bodies.last == Array("hello".utf8))

            // Thumbnails: a real PNG is thumbnailed (the multipart answer carries a PNG no
            // larger than asked); media that is no image gets 400 as from the client path.
            let png = try await ThumbnailTests.imageBytes("fed.png", width: 64, height: 48)
            let image = try await pair.a.app.media.store(bytes: png, contentType: "image/png", fileName: "p.png", uploader: uploader)
            let server = try ServerName(parsing: pair.aName)
            let thumb = "/_matrix/federation/v1/media/thumbnail/\(image.mediaID)"
            let fits = try await federation.streamingGet(server, path: thumb + "?width=32&height=32&method=scale", signed: true, maxBytes: 1 << 20)
            #expect(fits.status == 200 && fits.headers["Content-Type"]?.hasPrefix("multipart/mixed") == true)
            let framed = try await fits.body.collect()
            #expect(framed.count > 100 && framed.count < png.count + 4096)
            #expect(framed.firstRange(of: Array("image/png".utf8)) != nil)
            let text = try await federation.streamingGet(server, path: "/_matrix/federation/v1/media/thumbnail/\(stored.mediaID)?width=99&height=99",
                                                         signed: true, maxBytes: 1 << 20)
            #expect(text.status == 400)
            _ = try await text.body.collect()
            let bad = try await federation.streamingGet(server, path: thumb + "?width=0&height=x", signed: true, maxBytes: 1 << 20)
            #expect(bad.status == 400)
            _ = try await bad.body.collect()

            // An id made by /create and not uploaded yet: 504 M_NOT_YET_UPLOADED; unknown: 404.
            let now = Clock.nowMilliseconds()
            #expect(try await pair.a.app.database.media.createPending(origin: pair.aName, mediaID: "pendingid", uploader: uploader,
                                                                      now: now, expiresTs: now + 60_000, maxPending: 5))
            let pending = try await federation.streamingGet(server, path: "/_matrix/federation/v1/media/download/pendingid",
                                                            signed: true, maxBytes: 1 << 20)
            #expect(pending.status == 504)
            #expect(try JSON.parse(try await pending.body.collect())["errcode"]?.stringValue == "M_NOT_YET_UPLOADED")
            let unknown = try await federation.streamingGet(server, path: "/_matrix/federation/v1/media/download/nosuch",
                                                            signed: true, maxBytes: 1 << 20)
            #expect(unknown.status == 404)
            _ = try await unknown.body.collect()
        }
    }

    @Test func cacheEvictsLeastRecentlyUsedUnderTheLimit() async throws {
        // The source's own cache has no limit (no background sweep races this test's sweeps).
        try await withPair { pair in
            let uploader = try UserID(parsing: "@alice:\(pair.aName)")
            var ids: [String] = []
            for i in 0..<3 {
                let bytes = [UInt8](repeating: UInt8(i), count: 1_000)
                ids.append(try await pair.a.app.media.store(bytes: bytes, contentType: "application/octet-stream", fileName: nil,
                                                            uploader: uploader).mediaID)
            }
            var paths: [String] = []
            for (i, id) in ids.enumerated() {
                paths.append(try await pair.source.fetch(origin: pair.aName, mediaID: id).path)
                try await pair.b.app.database.media.touch(origin: pair.aName, mediaID: id, now: Int64(1_000 + i))
            }
            // The oldest row goes, so do its file; a local upload with the same bytes as the
            // next oldest keeps that file when it is evicted in turn.
            let localTwin = try await pair.b.app.media.store(bytes: [UInt8](repeating: 1, count: 1_000), contentType: nil, fileName: nil,
                                                            uploader: try UserID(parsing: "@bob:\(pair.b.configuration.serverName)"))
            try await pair.b.app.database.media.touch(origin: pair.aName, mediaID: ids[0], now: 1_001)
            try await pair.b.app.database.media.touch(origin: pair.aName, mediaID: ids[1], now: 1_000)
            let limited = RemoteMediaCache(repository: pair.b.app.media, store: pair.b.app.database.remoteMediaCache,
                                           localOrigin: pair.b.configuration.serverName, maxBytes: 2_500, logger: Logger(label: "test"))
            #expect(try await limited.trim() == 1)
            #expect(try await pair.b.app.database.media.record(origin: pair.aName, mediaID: ids[1]) == nil)
            #expect(try await pair.b.app.database.media.record(origin: pair.aName, mediaID: ids[0]) != nil)
            #expect(try fileBytes(paths[1]).count == 1_000, "the local twin keeps the shared file")
            let usage = try await pair.b.app.database.remoteMediaCache.usage(localOrigin: pair.b.configuration.serverName)
            #expect(usage.bytes == 2_000 && usage.count == 2)
            // Deleting the twin too: a lower limit evicts the rest, and their files go.
            try await pair.b.app.media.delete(origin: localTwin.origin, mediaID: localTwin.mediaID)
            let tight = RemoteMediaCache(repository: pair.b.app.media, store: pair.b.app.database.remoteMediaCache,
                                         localOrigin: pair.b.configuration.serverName, maxBytes: 1, logger: Logger(label: "test"))
            #expect(try await tight.trim() == 2)
            for path in paths { #expect(access(path, F_OK) != 0, "\(path) is still there") }
            // Fetched again on demand.
            let again = try await pair.source.fetch(origin: pair.aName, mediaID: ids[2])
            #expect(try fileBytes(again.path) == [UInt8](repeating: 2, count: 1_000))
        }
    }
}
