import Matrix
import Testing
@testable import App

/// The pure parts of URL previews: the HTML scanner, character sets and references, the
/// Open Graph rules (Synapse's), URL resolution, image headers and the URL blacklist.
@Suite("URL preview parsing")
struct OpenGraphTests {
    func og(_ html: String, contentType: String? = "text/html") -> [String: JSON] {
        OpenGraph.parse(html: Array(html.utf8), contentType: contentType)
    }

    @Test func openGraphTagsWinAndFirstOneIsKept() {
        let result = og("""
            <html><head><title>Page title</title>
            <meta property="og:title" content="OG title">
            <meta property="og:title" content="second title">
            <meta property='og:description' content='Fish &amp; chips &#8211; &#x1F41F;'>
            <meta property="og:image" content="/img/a.png">
            <meta property="og:site_name" content="">
            <meta name="og:type" content="article">
            <meta property="article:author" content="Ann">
            <meta name="twitter:site" content="@site">
            <meta name="twitter:card" content="summary">
            <meta name="twitter:title" content="twitter title">
            </head><body><p>body</p></body></html>
            """)
        #expect(result["og:title"] == .string("OG title"))
        #expect(result["og:description"] == .string("Fish & chips – 🐟"))
        #expect(result["og:image"] == .string("/img/a.png"))
        #expect(result["og:type"] == .string("article"))
        #expect(result["article:author"] == .string("Ann"))
        #expect(result["og:site_name"] == .string("@site"))
        // Empty content is no tag; twitter:card has no Open Graph twin.
        #expect(result["og:card"] == nil && result["twitter:card"] == nil)
    }

    @Test func fallbacksAsSynapse() {
        let result = og("""
            <!DOCTYPE html><html><head><title>
              The  title </title>
            <meta name="Description" content="Meta description">
            <link rel="shortcut icon" href="/favicon.ico">
            </head><body>
            <img src="small.png" width="5" height="5">
            <img src="wide.png" width="300" height="100">
            <img src="big.png" width="200" height="200">
            </body></html>
            """)
        #expect(result["og:title"] == .string("The  title"))
        #expect(result["og:description"] == .string("Meta description"))
        #expect(result["og:image"] == .string("big.png"))
        let noImages = og("<html><head><link rel=icon href=/i.png></head><body><h1>Heading</h1><p>Text</p></body></html>")
        #expect(noImages["og:image"] == .string("/i.png"))
        #expect(noImages["og:title"] == .string("Heading"))
        #expect(noImages["og:description"] == .string("Heading\n\nText"))
        let itemprop = og("<meta itemprop='IMAGE' content='x.jpg'><img src='y.jpg'>")
        #expect(itemprop["og:image"] == .string("x.jpg"))
        let anyImage = og("<body><img src='first.gif'><img src='second.gif' width=50 height=abc></body>")
        #expect(anyImage["og:image"] == .string("first.gif"))
    }

    @Test func nothingToSayIsNull() {
        let result = og("<html><body></body></html>")
        #expect(result["og:title"] == .null)
        #expect(result["og:description"] == .null)
        #expect(result["og:image"] == nil)
        #expect(og("").isEmpty)
    }

    @Test func descriptionSkipsScriptsNavigationAndMenus() {
        let result = og("""
            <html><head><style>body { color: red }</style></head><body>
            <nav>Home | About</nav><header>Site header</header>
            <script>if (a < b && c > d) { document.write("<p>not text</p>") }</script>
            <div role="menu"><div><span>menu item</span></div></div>
            <!-- a comment <p>hidden</p> -->
            <p>First   paragraph
            of text.</p><p>Second.</p>
            <footer>Footer</footer>
            </body></html>
            """)
        #expect(result["og:description"] == .string("First paragraph of text.\n\nSecond."))
    }

    @Test func longDescriptionsAreCutAtAWord() throws {
        let words = Array(repeating: "word", count: 300).joined(separator: " ")
        let result = og("<body><p>\(words)</p></body>")
        let description = try #require(result["og:description"]?.stringValue)
        #expect(description.hasSuffix("…"))
        #expect(description.count <= 501 && description.count > 400)
        #expect(!description.dropLast().hasSuffix(" "))
        // An og:description is summarized too.
        let long = og("<meta property='og:description' content='\(words)'>")["og:description"]?.stringValue
        #expect(long?.hasSuffix("…") == true)
    }

    @Test func charsetsFromMetaHeaderAndFallback() {
        // "café" in Latin-1, declared by a meta tag, by the header, or by nothing (not UTF-8).
        let latin1: [UInt8] = Array("<title>caf".utf8) + [0xE9] + Array("</title>".utf8)
        let meta = Array("<meta charset=\"iso-8859-1\">".utf8) + latin1
        #expect(OpenGraph.parse(html: meta, contentType: "text/html")["og:title"] == .string("café"))
        let httpEquiv = Array("<meta http-equiv='Content-Type' content='text/html; charset=windows-1252'>".utf8) + latin1
        #expect(OpenGraph.parse(html: httpEquiv, contentType: nil)["og:title"] == .string("café"))
        #expect(OpenGraph.parse(html: latin1, contentType: "text/html; charset=ISO-8859-1")["og:title"] == .string("café"))
        #expect(OpenGraph.parse(html: latin1, contentType: "text/html")["og:title"] == .string("café"))
        // Declared UTF-8 that is UTF-8; windows-1252's 0x80 is the euro sign.
        let utf8 = Array("<meta charset=utf-8><title>caf\u{E9}</title>".utf8)
        #expect(OpenGraph.parse(html: utf8, contentType: "text/html; charset=iso-8859-1")["og:title"] == .string("café"))
        #expect(HTMLText.windows1252ToUTF8([0x80, 0x41]) == Array("€A".utf8))
        // A byte-order mark is not text.
        #expect(OpenGraph.parse(html: [0xEF, 0xBB, 0xBF] + Array("<title>T</title>".utf8), contentType: nil)["og:title"] == .string("T"))
    }

    @Test func characterReferences() {
        #expect(HTMLText.decode(ArraySlice("a &lt;b&gt; &quot;c&quot; &#39;d&#39; &nbsp;&copy; &eacute;".utf8))
                == "a <b> \"c\" 'd' \u{A0}© é")
        #expect(HTMLText.decode(ArraySlice("&#0; &#x110000; &#99999999999; &#xD800; &#128;".utf8)) == "\u{FFFD} \u{FFFD} \u{FFFD} \u{FFFD} €")
        #expect(HTMLText.decode(ArraySlice("&unknown; & &; &#; &#x;".utf8)) == "&unknown; & &; &#; &#x;")
        // In an attribute `&copy=` stays (a query string), in text `&amp` without `;` decodes.
        #expect(HTMLText.decode(ArraySlice("?a=1&copy=2".utf8), inAttribute: true) == "?a=1&copy=2")
        #expect(HTMLText.decode(ArraySlice("fish &amp chips".utf8)) == "fish & chips")
    }

    @Test func scannerTokens() {
        var scanner = HTMLScanner(Array("<A HREF=x Title='y' data-z>t</a><br/><p =odd>".utf8))
        var tokens: [HTMLScanner.Token] = []
        while let token = scanner.next() { tokens.append(token) }
        #expect(tokens == [
            .start(name: "a", attributes: [.init(name: "href", value: "x"), .init(name: "title", value: "y"),
                                           .init(name: "data-z", value: "")], selfClosing: false),
            .text(ArraySlice("t".utf8)), .end(name: "a"),
            .start(name: "br", attributes: [], selfClosing: true),
            .start(name: "p", attributes: [.init(name: "=odd", value: "")], selfClosing: false),
        ])
    }

    @Test func hostileInputEndsAndStaysBounded() {
        // Unterminated tag, quote, comment and script: each runs to the end and stops.
        for html in ["<meta property=\"og:title\" content=\"never closed", "<!-- forever <title>x</title>",
                     "<script>var a = '<title>no</title>'", "<title>open", "<", "<!", "</", "<a b='", "&#", "&#x"] {
            _ = og(html)
        }
        #expect(og("<script>var a = '<title>no</title>'")["og:title"] == .null)
        #expect(og("<title>open")["og:title"] == .string("open"))
        // Deep nesting costs no stack: 200,000 open elements.
        let deep = String(repeating: "<div>", count: 200_000) + "<p>deep text</p>" + String(repeating: "</div>", count: 3)
        #expect(og(deep)["og:description"] == .string("deep text"))
        // A huge attribute is kept to the scanner's bound, and pruned later for its length.
        let huge = "<meta property='og:title' content='" + String(repeating: "x", count: 1_000_000) + "'>"
        let title = og(huge)["og:title"]?.stringValue
        #expect(title?.utf8.count == HTMLScanner.maxValueBytes)
        #expect(URLPreviewer.pruned(og(huge))["og:title"] == nil)
        // Thousands of attributes on one tag: only the first ones are kept.
        let many = "<img " + (0..<10_000).map { "a\($0)=1 " }.joined() + "src=late.png>"
        #expect(og(many)["og:image"] == nil)
        // More than 50 og: tags and the whole prefix is ignored (Synapse's rule).
        let spam = (0..<60).map { "<meta property='og:k\($0)' content='v'>" }.joined() + "<title>T</title>"
        let spammed = og(spam)
        #expect(spammed["og:k1"] == nil && spammed["og:title"] == .string("T"))
    }

    @Test func urlsAndResolution() throws {
        let base = try #require(PreviewURL("HTTPS://Example.org:8443/a/b/page.html?q=1#frag"))
        #expect(base.scheme == "https" && base.host == "example.org" && base.port == 8443)
        #expect(base.string == "https://example.org:8443/a/b/page.html?q=1")
        #expect(base.resolve("img.png")?.string == "https://example.org:8443/a/b/img.png")
        #expect(base.resolve("../c/./img.png")?.string == "https://example.org:8443/a/c/img.png")
        #expect(base.resolve("../../../../x")?.string == "https://example.org:8443/x")
        #expect(base.resolve("/root.png?x=1")?.string == "https://example.org:8443/root.png?x=1")
        #expect(base.resolve("//cdn.example.net/i.png")?.string == "https://cdn.example.net/i.png")
        #expect(base.resolve("http://other/")?.string == "http://other/")
        #expect(base.resolve("?p=2")?.string == "https://example.org:8443/a/b/page.html?p=2")
        #expect(base.resolve(" my cat.png ")?.string == "https://example.org:8443/a/b/my%20cat.png")
        #expect(base.resolve("javascript:alert(1)") == nil)
        #expect(base.resolve("data:image/png;base64,AAAA") == nil)
        for bad in ["ftp://x/", "http://", "http://user@host/", "http:///x", "example.org", "http://h:99999/",
                    "http://a b/", "http://[::1/", String(repeating: "a", count: 5000)] {
            #expect(PreviewURL(bad) == nil, "\(bad.prefix(40))")
        }
        #expect(PreviewURL("http://[::1]:8080")?.host == "::1")
    }

    @Test func urlBlacklistEntries() throws {
        let url = try #require(PreviewURL("https://sub.example.com:8080/private/doc?x=1"))
        #expect(URLBlacklistEntry(patterns: ["netloc": "*.example.com:*"]).matches(url))
        #expect(URLBlacklistEntry(patterns: ["hostname": "*.example.com", "scheme": "http"]).matches(url) == false)
        #expect(URLBlacklistEntry(patterns: ["path": "^/priv"]).matches(url))
        #expect(URLBlacklistEntry(patterns: ["path": "^/public"]).matches(url) == false)
        #expect(URLBlacklistEntry(patterns: ["port": "8080", "query": "x=?"]).matches(url))
        #expect(URLBlacklistEntry(patterns: ["username": "*"]).matches(url) == false)
        #expect(URLBlacklistEntry.glob("a*b*c", matches: "aXXbYYc"))
        #expect(!URLBlacklistEntry.glob("a*b*c", matches: "aXXbYY"))
        // Many stars against a long miss stays linear.
        #expect(!URLBlacklistEntry.glob(String(repeating: "*a", count: 200) + "b", matches: String(repeating: "a", count: 20_000)))
    }

    @Test func imageDimensionsFromHeaders() {
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8)
        png += [0, 0, 1, 0x2C, 0, 0, 0, 0xC8] + [8, 6, 0, 0, 0]
        #expect(ImageDimensions.of(png).map { [$0.width, $0.height] } == [300, 200])
        let gif: [UInt8] = Array("GIF89a".utf8) + [0x40, 0x01, 0xF0, 0x00]
        #expect(ImageDimensions.of(gif).map { [$0.width, $0.height] } == [320, 240])
        // JPEG: SOI, an APP0 segment, then SOF0 with height 480 and width 640.
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00,
                             0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x03]
        #expect(ImageDimensions.of(jpeg).map { [$0.width, $0.height] } == [640, 480])
        var vp8x: [UInt8] = Array("RIFF".utf8) + [0, 0, 0, 0] + Array("WEBPVP8X".utf8) + [10, 0, 0, 0]
        vp8x += [0, 0, 0, 0] + [99, 0, 0] + [49, 0, 0]
        #expect(ImageDimensions.of(vp8x).map { [$0.width, $0.height] } == [100, 50])
        // Truncated and hostile headers answer nil, never trap.
        #expect(ImageDimensions.of(Array(png.prefix(20))) == nil)
        #expect(ImageDimensions.of([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x00, 0, 0, 0, 0, 0, 0]) == nil)
        #expect(ImageDimensions.of([0xFF, 0xD8] + [UInt8](repeating: 0xFF, count: 100)) == nil)
        #expect(ImageDimensions.of(Array("not an image".utf8)) == nil)
    }

    @Test func contentDispositionFileNames() {
        #expect(URLPreviewFetcher.fileName("attachment; filename=\"cat.png\"") == "cat.png")
        #expect(URLPreviewFetcher.fileName("inline; filename=plain.gif; filename*=UTF-8''caf%C3%A9.gif") == "café.gif")
        #expect(URLPreviewFetcher.fileName("inline") == nil)
        #expect(URLPreviewFetcher.fileName(nil) == nil)
    }
}
