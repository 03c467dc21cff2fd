import Matrix
import Synchronization
import TestSupport
import Testing
import Transport
@testable import App

/// A web site on 127.0.0.1 for the preview tests: a page with Open Graph tags and a
/// relative image, a redirect to another loopback address, bodies over the limit (declared
/// and chunked without end), a server that never answers; it counts the requests per path.
final class PreviewSite: HTTPResponder {
    let png = makePNG(width: 40, height: 30)
    let hits = Mutex<[String: Int]>([:])

    func count(_ path: String) -> Int { hits.withLock { $0[path, default: 0] } }

    func respond(to request: HTTPRequest) async -> HTTPResponse {
        let path = String(request.head.path)
        hits.withLock { $0[path, default: 0] += 1 }
        let host = request.headers["Host"] ?? "127.0.0.1"
        let port = host.split(separator: ":").last.map(String.init) ?? "80"
        switch path {
        case "/page.html":
            let page = """
                <!DOCTYPE html><html><head><meta charset="utf-8">
                <title>Fallback title</title>
                <meta property="og:title" content="Cats &amp; dogs">
                <meta property="og:description" content="A page about pets.">
                <meta property="og:image" content="img/cat.png">
                </head><body><p>Body text.</p></body></html>
                """
            return HTTPResponse(contentType: "text/html; charset=utf-8", bytes: Array(page.utf8))
        case "/plain.html":
            let page = "<html><head><title>Plain</title></head><body><h1>Head</h1><p>Words here.</p></body></html>"
            return HTTPResponse(contentType: "text/html", bytes: Array(page.utf8))
        case "/img/cat.png":
            return HTTPResponse(contentType: "image/png", bytes: png, headers: ["Content-Disposition": "inline; filename=\"cat.png\""])
        case "/internal-image.html":
            // The image is on a blacklisted address: the preview goes without it.
            let page = "<title>Internal</title><meta property='og:image' content='http://127.0.0.2:\(port)/img/cat.png'>"
            return HTTPResponse(contentType: "text/html", bytes: Array(page.utf8))
        case "/redirect-away":
            // 127.0.0.2 is loopback too, but only 127.0.0.1 is whitelisted.
            return HTTPResponse(status: 302, headers: ["Location": "http://127.0.0.2:\(port)/page.html"], body: .empty)
        case "/redirect-here":
            return HTTPResponse(status: 301, headers: ["Location": "/plain.html"], body: .empty)
        case "/declared-big":
            return HTTPResponse(contentType: "text/html", bytes: [UInt8](repeating: UInt8(ascii: "a"), count: 300 * 1024))
        case "/endless":
            // Chunked, without end: only a fetcher that stops reading finishes.
            let chunk = [UInt8](repeating: UInt8(ascii: "b"), count: 16 * 1024)
            let stream = AsyncThrowingStream<[UInt8], any Error> { chunk }
            return HTTPResponse(status: 200, headers: ["Content-Type": "text/html"], body: .stream(length: nil, chunks: stream))
        case "/silent":
            try? await Task.sleep(for: .seconds(30))
            return HTTPResponse(contentType: "text/html", bytes: Array("<title>late</title>".utf8))
        case "/file.bin":
            return HTTPResponse(contentType: "application/octet-stream", bytes: [1, 2, 3])
        default:
            return HTTPResponse(status: 404, headers: [:], body: .empty)
        }
    }
}

/// Runs a `PreviewSite` on every local address (so 127.0.0.2 answers too) and a Myelin with
/// previews on, configured by `configure`.
func withPreviewSite(_ configure: @escaping (inout Configuration) -> Void,
                     _ body: (PreviewSite, Int, MyelinServer, Int) async throws -> Void) async throws {
    let site = PreviewSite()
    let server = HTTPServer(configuration: TransportConfiguration(loops: 1, host: "0.0.0.0", port: 0), responder: site)
    let sitePort = try await server.start()
    do {
        try await withMyelinServer({ configuration in
            configuration.media.urlPreview.enabled = true
            configuration.media.urlPreview.maxSpiderSize = 256 * 1024
            // Generous: a loaded machine (the whole suite runs in parallel) must not turn a
            // size or blacklist answer into a deadline one. The deadline test sets its own.
            configuration.media.urlPreview.timeoutSeconds = 60
            configure(&configuration)
        }) { myelin, port in
            try await body(site, sitePort, myelin, port)
        }
    } catch {
        server.shutdown()
        await server.waitUntilStopped()
        throw error
    }
    server.shutdown()
    await server.waitUntilStopped()
}

func previewPath(_ url: String, legacy: Bool = false, ts: Int64? = nil) -> String {
    let encoded = url.addingPercentEncodingForQuery()
    let base = legacy ? "/_matrix/media/v3/preview_url" : "/_matrix/client/v1/media/preview_url"
    return base + "?url=\(encoded)" + (ts.map { "&ts=\($0)" } ?? "")
}

extension String {
    func addingPercentEncodingForQuery() -> String {
        var out = ""
        for byte in utf8 {
            let c = Character(Unicode.Scalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) { out.append(c) } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }

    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

@Suite("URL previews")
struct URLPreviewTests {
    static func whitelisted(_ configuration: inout Configuration) {
        configuration.media.urlPreview.ipRangeWhitelist = ["127.0.0.1/32"]
    }

    @Test func pageWithImageIsDescribedStoredAndCached() async throws {
        try await withPreviewSite(Self.whitelisted) { site, sitePort, myelin, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let url = "http://127.0.0.1:\(sitePort)/page.html"
            let reply = try await alice.call("GET", previewPath(url))
            #expect(reply.status == 200)
            #expect(reply.json["og:title"]?.stringValue == "Cats & dogs")
            #expect(reply.json["og:description"]?.stringValue == "A page about pets.")
            #expect(reply.json["og:image:type"]?.stringValue == "image/png")
            #expect(reply.json["matrix:image:size"]?.intValue == Int64(site.png.count))
            #expect(reply.json["og:image:width"]?.intValue == 40)
            #expect(reply.json["og:image:height"]?.intValue == 30)
            let mxc = try #require(reply.json["og:image"]?.stringValue)
            #expect(mxc.hasPrefix("mxc://\(myelin.configuration.serverName)/"))
            #expect(site.count("/page.html") == 1 && site.count("/img/cat.png") == 1)

            // The image is media: it downloads with the bytes the site served.
            let mediaID = String(mxc.split(separator: "/").last!)
            let raw = try RawClient(port: port)
            let download = try await raw.request("GET", "/_matrix/client/v1/media/download/\(myelin.configuration.serverName)/\(mediaID)",
                                                 headers: ["Authorization": "Bearer \(alice.token!)"])
            #expect(download.status == 200)
            #expect(download.body == site.png)

            // Asked again (authenticated, legacy, with a time): answered without a fetch.
            let again = try await alice.call("GET", previewPath(url))
            #expect(again.json == reply.json)
            let legacy = try await alice.call("GET", previewPath(url, legacy: true, ts: 1))
            #expect(legacy.status == 200 && legacy.json["og:title"] == reply.json["og:title"])
            #expect(site.count("/page.html") == 1 && site.count("/img/cat.png") == 1)
            #expect(try await myelin.app.database.urlPreviews.count() == 1)
            // A previewer with an empty memory (a restart) answers from the store, for now and
            // for a time before the fetch; no HTTP client is even started.
            let restarted = URLPreviewer(configuration: myelin.configuration.media.urlPreview,
                                         serverName: myelin.configuration.serverName, store: myelin.app.database.urlPreviews)
            let userID = try UserID(parsing: "@alice:\(myelin.configuration.serverName)")
            for ts in [Clock.nowMilliseconds(), 1] {
                let stored = try await restarted.preview(url: url, ts: ts, user: userID, images: myelin.app.media)
                #expect(try JSON.parse(stored) == reply.json)
            }
            #expect(site.count("/page.html") == 1)
            restarted.shutdown()

            // Two days after the preview expired, it goes with its image.
            let later = Clock.nowMilliseconds() + URLPreviewer.successLifetimeMs + URLPreviewer.retentionAfterExpiryMs + 1
            await myelin.app.urlPreviews.purgeExpired(now: later, images: myelin.app.media)
            #expect(try await myelin.app.database.urlPreviews.count() == 0)
            let gone = try await raw.request("GET", "/_matrix/client/v1/media/download/\(myelin.configuration.serverName)/\(mediaID)",
                                             headers: ["Authorization": "Bearer \(alice.token!)"])
            #expect(gone.status == 404)
        }
    }

    @Test func fallbacksRedirectsAndImagesDirectly() async throws {
        try await withPreviewSite(Self.whitelisted) { site, sitePort, _, port in
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let plain = try await bob.call("GET", previewPath("http://127.0.0.1:\(sitePort)/redirect-here"))
            #expect(plain.status == 200)
            #expect(plain.json["og:title"]?.stringValue == "Plain")
            #expect(plain.json["og:description"]?.stringValue == "Head\n\nWords here.")
            #expect(plain.json["og:image"] == nil)
            #expect(site.count("/plain.html") == 1)
            let inside = try await bob.call("GET", previewPath("http://127.0.0.1:\(sitePort)/internal-image.html"))
            #expect(inside.status == 200)
            #expect(inside.json["og:title"]?.stringValue == "Internal")
            #expect(inside.json["og:image"] == nil && inside.json["matrix:image:size"] == nil)
            #expect(site.count("/img/cat.png") == 0)
            // An image URL is stored and described itself.
            let image = try await bob.call("GET", previewPath("http://127.0.0.1:\(sitePort)/img/cat.png"))
            #expect(image.status == 200)
            #expect(image.json["og:image"]?.stringValue?.hasPrefix("mxc://") == true)
            #expect(image.json["og:description"]?.stringValue == "cat.png")
            #expect(image.json["og:image:width"]?.intValue == 40)
            // Neither HTML nor an image: 502, as Synapse.
            let binary = try await bob.call("GET", previewPath("http://127.0.0.1:\(sitePort)/file.bin"))
            #expect(binary.status == 502)
            let missing = try await bob.call("GET", previewPath("http://127.0.0.1:\(sitePort)/nothing"))
            #expect(missing.status == 502)
        }
    }

    @Test func loopbackIsRefusedByDefault() async throws {
        try await withPreviewSite({ _ in }) { site, sitePort, _, port in
            let (carol, _) = try await MatrixTestClient.registered(port: port, "carol")
            for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
                let reply = try await carol.call("GET", previewPath("http://\(host):\(sitePort)/page.html"))
                #expect(reply.status == 502, "\(host)")
                #expect(reply.errcode == "M_UNKNOWN")
            }
            #expect(site.count("/page.html") == 0)
        }
    }

    @Test func redirectToABlacklistedAddressIsRefused() async throws {
        try await withPreviewSite(Self.whitelisted) { site, sitePort, _, port in
            let (dave, _) = try await MatrixTestClient.registered(port: port, "dave")
            let reply = try await dave.call("GET", previewPath("http://127.0.0.1:\(sitePort)/redirect-away"))
            #expect(reply.status == 502)
            #expect(site.count("/redirect-away") == 1)
            #expect(site.count("/page.html") == 0)
        }
    }

    @Test func bodiesOverTheLimitStop() async throws {
        try await withPreviewSite(Self.whitelisted) { site, sitePort, _, port in
            let (erin, _) = try await MatrixTestClient.registered(port: port, "erin")
            for path in ["/declared-big", "/endless"] {
                let reply = try await erin.call("GET", previewPath("http://127.0.0.1:\(sitePort)\(path)"))
                #expect(reply.status == 502, "\(path)")
                #expect(reply.errcode == "M_TOO_LARGE", "\(path)")
            }
            #expect(site.count("/endless") == 1)
        }
    }

    @Test func aSilentServerMeetsTheDeadline() async throws {
        try await withPreviewSite({ Self.whitelisted(&$0); $0.media.urlPreview.timeoutSeconds = 1 }) { _, sitePort, _, port in
            let (frank, _) = try await MatrixTestClient.registered(port: port, "frank")
            let reply = try await frank.call("GET", previewPath("http://127.0.0.1:\(sitePort)/silent"))
            // 504 comes only from the deadline: the site answers a page after 30 s, which would
            // be previewed (no timing is asserted: the suite runs loaded).
            #expect(reply.status == 504)
        }
    }

    @Test func fetchesInFlightAreBounded() async throws {
        try await withPreviewSite({ Self.whitelisted(&$0); $0.media.urlPreview.timeoutSeconds = 2 }) { _, sitePort, _, port in
            let (ivan, _) = try await MatrixTestClient.registered(port: port, "ivan")
            let token = ivan.token
            let extra = 2
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<(URLPreviewer.maxConcurrentFetches + extra) {
                    group.addTask {
                        let client = try MatrixTestClient(port: port, token: token)
                        return try await client.call("GET", previewPath("http://127.0.0.1:\(sitePort)/silent?n=\(n)")).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 429 }.count == extra)
            #expect(statuses.filter { $0 == 504 }.count == URLPreviewer.maxConcurrentFetches)
        }
    }

    @Test func refusalsAndParameters() async throws {
        try await withPreviewSite({
            Self.whitelisted(&$0)
            $0.media.urlPreview.urlBlacklist = [URLBlacklistEntry(patterns: ["path": "/page*"])]
        }) { site, sitePort, _, port in
            let (gina, _) = try await MatrixTestClient.registered(port: port, "gina")
            let blocked = try await gina.call("GET", previewPath("http://127.0.0.1:\(sitePort)/page.html"))
            #expect(blocked.status == 403)
            // The blacklist is checked on every hop: a redirect into it is refused too.
            let viaRedirect = try await gina.call("GET", previewPath("http://127.0.0.1:\(sitePort)/redirect-away"))
            #expect(viaRedirect.status == 502 || viaRedirect.status == 403)
            #expect(site.count("/page.html") == 0)
            #expect(try await gina.call("GET", "/_matrix/client/v1/media/preview_url").errcode == "M_MISSING_PARAM")
            #expect(try await gina.call("GET", previewPath("ftp://127.0.0.1/x")).errcode == "M_INVALID_PARAM")
            #expect(try await gina.call("GET", previewPath("http://127.0.0.1:\(sitePort)/plain.html", ts: -1)).errcode == "M_INVALID_PARAM")
            #expect(try await gina.call("GET", previewPath("http://127.0.0.1:\(sitePort)/plain.html") + "&ts=99999999999999999999").status == 400)
            let anonymous = try await gina.call("GET", previewPath("http://127.0.0.1:\(sitePort)/plain.html"), token: .some(nil))
            #expect(anonymous.status == 401)
        }
    }

    @Test func disabledAnswers404() async throws {
        try await withMyelin { port, _ in
            let (henry, _) = try await MatrixTestClient.registered(port: port, "henry")
            for legacy in [false, true] {
                let reply = try await henry.call("GET", previewPath("https://matrix.org", legacy: legacy))
                #expect(reply.status == 404)
                #expect(reply.errcode == "M_UNRECOGNIZED")
            }
        }
    }

    @Test func configurationIsReadStrictly() throws {
        let configuration = try ConfigurationLoader.load(yaml: """
            media:
              url_preview:
                enabled: true
                ip_range_whitelist: ["192.168.1.0/24"]
                url_blacklist:
                  - netloc: "*.internal"
                  - scheme: http
                    path: "^/admin"
                max_spider_size: 2048
                timeout_seconds: 5
                accept_language: ["en-GB", "fr;q=0.5"]
            """)
        let preview = configuration.media.urlPreview
        #expect(preview.enabled && preview.maxSpiderSize == 2048 && preview.timeoutSeconds == 5)
        #expect(preview.urlBlacklist == [URLBlacklistEntry(patterns: ["netloc": "*.internal"]),
                                         URLBlacklistEntry(patterns: ["scheme": "http", "path": "^/admin"])])
        #expect(preview.blacklist.permits(IPAddress("192.168.1.7")!))
        #expect(!preview.blacklist.permits(IPAddress("192.168.2.7")!))
        #expect(!preview.blacklist.permits(IPAddress("0.0.0.0")!))
        #expect(preview.blacklist.permits(IPAddress("93.184.216.34")!))
        #expect(Configuration().media.urlPreview.enabled == false)
        for bad in ["enabled: maybe", "ip_range_blacklist: [\"10.0.0.0/33\"]", "url_blacklist: [{host: x}]",
                    "url_blacklist: [{path: \"^(\"}]", "max_spider_size: 1", "timeout_seconds: 0", "accept_language: [\"en\\r\\nX: y\"]",
                    "unknown: 1"] {
            #expect(throws: ConfigurationError.self, "\(bad)") {
                try ConfigurationLoader.load(yaml: "media:\n  url_preview:\n    \(bad)\n")
            }
        }
        // The template documents the section and loads back to the defaults.
        let template = ConfigurationTemplate.render(serverName: "example.org")
        #expect(template.contains("url_preview:"))
        #expect(try ConfigurationLoader.load(yaml: template).media.urlPreview == Configuration().media.urlPreview)
    }
}

/// A PNG of `width`×`height` RGB pixels (stored deflate blocks), made at test time.
func makePNG(width: Int, height: Int) -> [UInt8] {
    var raw: [UInt8] = []
    for y in 0..<height {
        raw.append(0)
        for x in 0..<width { raw += [UInt8(x * 6 % 256), UInt8(y * 8 % 256), 128] }
    }
    var zlib: [UInt8] = [0x78, 0x01]
    var offset = 0
    repeat {
        let count = min(65_535, raw.count - offset)
        let final: UInt8 = offset + count == raw.count ? 1 : 0
        zlib += [final, UInt8(count & 0xFF), UInt8(count >> 8), UInt8(~count & 0xFF), UInt8((~count >> 8) & 0xFF)]
        zlib += raw[offset..<(offset + count)]
        offset += count
    } while offset < raw.count
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in raw { a = (a + UInt32(byte)) % 65_521; b = (b + a) % 65_521 }
    zlib += bigEndian(b << 16 | a)
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return bigEndian(UInt32(data.count)) + body + bigEndian(~crc)
    }
    let header = bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, 2, 0, 0, 0]
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header) + chunk("IDAT", zlib) + chunk("IEND", [])
}

private func bigEndian(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
}
