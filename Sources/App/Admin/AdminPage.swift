import Logging
import Matrix
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// The browser admin page (issue 20, item 6): plain HTML, CSS and JavaScript kept in the
/// repository's `admin-page/` and served at `/_myelin/admin/` when `admin_page.enabled`
/// (404 otherwise). The files are read once, when the app is built, from
/// `admin_page.directory` — so what is served is what the directory held at start, with no
/// generated copy to go stale and no file I/O on a request.
///
/// Only flat file names of `[A-Za-z0-9_-]+` with a known extension are loaded and served:
/// a request for anything else (`..`, `%2e%2e%2f`, a sub-directory, a dotfile) names no
/// loaded file and is 404, so no path from the network reaches the file system.
/// The page itself signs in through the client API and calls the admin API with the token.
struct AdminPage: Sendable {
    struct File: Sendable {
        let contentType: String
        let bytes: [UInt8]
    }

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml",
        "png": "image/png",
        "ico": "image/x-icon",
    ]
    static let maxFileBytes = 1 << 20
    static let maxFiles = 64

    /// The page's policy: its own scripts, styles and API calls only; no framing.
    static let contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; "
        + "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    let enabled: Bool
    let files: [String: File]
    /// Why the directory could not be read, when enabled (logged once at start).
    let problem: String?

    init(configuration: Configuration.AdminPage) {
        enabled = configuration.enabled
        guard configuration.enabled else {
            files = [:]
            problem = nil
            return
        }
        var loaded: [String: File] = [:]
        if let names = Self.listDirectory(configuration.directory) {
            for name in names.sorted() where loaded.count < Self.maxFiles {
                guard let type = Self.contentType(ofName: name),
                      let bytes = Self.readFile(configuration.directory + "/" + name) else { continue }
                loaded[name] = File(contentType: type, bytes: bytes)
            }
        }
        files = loaded
        problem = loaded["index.html"] == nil
            ? "admin_page.directory '\(configuration.directory)' has no readable index.html" : nil
    }

    /// The content type of a servable file name, or nil for any other name.
    static func contentType(ofName name: String) -> String? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].utf8.count <= 64,
              parts[0].utf8.allSatisfy({ b in
                  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
              }) else { return nil }
        return contentTypes[String(parts[1])]
    }

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_myelin/admin", redirect)
        routes.get("/_myelin/admin/{*file}", serve)
    }

    /// `GET /_myelin/admin`: to the page, whose relative links need the trailing slash.
    static func redirect(_ context: RequestContext) async throws -> HTTPResponse {
        guard context.app.adminPage.enabled else { throw notFound }
        var headers = HTTPHeaders()
        headers.add("Location", "/_myelin/admin/")
        return HTTPResponse(status: 302, contentType: "text/plain", bytes: Array("/_myelin/admin/".utf8), headers: headers)
    }

    /// `GET /_myelin/admin/{file}`: one of the page's files; the empty name is `index.html`.
    static func serve(_ context: RequestContext) async throws -> HTTPResponse {
        let page = context.app.adminPage
        guard page.enabled else { throw notFound }
        let requested = context.parameter("file")
        let name = requested.isEmpty ? "index.html" : requested
        guard contentType(ofName: name) != nil, let file = page.files[name] else { throw notFound }
        var headers = HTTPHeaders()
        headers.add("Cache-Control", "no-cache")
        headers.add("Content-Security-Policy", contentSecurityPolicy)
        headers.add("X-Content-Type-Options", "nosniff")
        headers.add("Referrer-Policy", "no-referrer")
        headers.add("X-Frame-Options", "DENY")
        return HTTPResponse(contentType: file.contentType, bytes: file.bytes, headers: headers)
    }

    static var notFound: MatrixError { MatrixError(.notFound, "Not found") }

    // MARK: Files (read once at start, before the server accepts connections)

    static func listDirectory(_ path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            names.append(name)
            if names.count > 1_000 { break }
        }
        return names
    }

    static func readFile(_ path: String) -> [UInt8]? {
        var info = stat()
        // lstat: a symbolic link is not followed out of the directory.
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int(info.st_size) <= maxFileBytes,
              let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= maxFileBytes {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return bytes.count <= maxFileBytes ? bytes : nil
    }
}
