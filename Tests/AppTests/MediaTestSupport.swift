import Glibc
import Matrix
import Persistence
import StorageTestSupport
import TestSupport
@testable import App

/// Helpers of the media tests: raw uploads over a socket, the files of the media root, the
/// backends to run on.
enum MediaTest {
    /// The backends the media suites run on: SQLite, and PostgreSQL when the environment
    /// provides one (`scripts/with-postgres.sh`).
    static var backends: [String] { Environment.postgres == nil ? ["sqlite"] : ["sqlite", "postgres"] }

    /// `withMyelinServer` on `backend`.
    static func withServer(_ backend: String, _ configure: @escaping (inout Configuration) -> Void = { _ in },
                           _ body: (MyelinServer, Int) async throws -> Void) async throws {
        guard backend == "postgres", Environment.postgres != nil else {
            return try await withMyelinServer(configure, body)
        }
        // A schema of its own: servers sharing one would allocate the same ids (state groups)
        // when they create rooms at once; one server per database is what runs in production.
        try await withPostgresSchema { conninfo in
            try await withMyelinServer({
                $0.database.backend = .postgres
                $0.database.postgresConninfo = conninfo
                $0.database.postgresPoolSize = 2
                configure(&$0)
            }, body)
        }
    }

    /// A user name unique across runs (the PostgreSQL database is shared by the tests).
    static func uniqueName(_ base: String) -> String {
        base + "-" + SHA256Hasher.hex(Sodium.randomBytes(4))
    }

    /// A registered user's client.
    static func user(_ port: Int, _ base: String) async throws -> MatrixTestClient {
        let (client, reply) = try await MatrixTestClient.registered(port: port, uniqueName(base))
        precondition(reply.status == 200, "registration failed: \(reply.json)")
        return client
    }

    /// The request head of an upload (no body).
    static func uploadHead(_ method: String = "POST", _ target: String = "/_matrix/media/v3/upload", token: String?,
                           contentType: String? = "application/octet-stream", length: Int?,
                           chunked: Bool = false, close: Bool = false) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        if let token { text += "Authorization: Bearer \(token)\r\n" }
        if let contentType { text += "Content-Type: \(contentType)\r\n" }
        if let length { text += "Content-Length: \(length)\r\n" }
        if chunked { text += "Transfer-Encoding: chunked\r\n" }
        if close { text += "Connection: close\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// Uploads `bytes` on a new connection; the response.
    static func upload(_ port: Int, token: String?, _ bytes: [UInt8], contentType: String? = "application/octet-stream",
                       target: String = "/_matrix/media/v3/upload", method: String = "POST") async throws -> RawClient.Response {
        let client = try RawClient(port: port)
        await client.sendAsync(uploadHead(method, target, token: token, contentType: contentType, length: bytes.count) + bytes)
        return try await client.read()
    }

    /// The JSON of a response body.
    static func json(_ response: RawClient.Response) throws -> JSON { try JSON.parse(response.body) }

    /// `mxc://server/id` → (server, id).
    static func parts(_ uri: String) -> (server: String, mediaID: String) {
        let rest = uri.dropFirst("mxc://".count)
        let slash = rest.firstIndex(of: "/")!
        return (String(rest[..<slash]), String(rest[rest.index(after: slash)...]))
    }

    /// GET with an optional token and extra headers, on a new connection.
    static func get(_ port: Int, _ target: String, token: String?, headers: [String: String] = [:]) async throws -> RawClient.Response {
        var headers = headers
        if let token { headers["Authorization"] = "Bearer \(token)" }
        return try await RawClient(port: port).request("GET", target, headers: headers)
    }

    /// Every regular file under `directory` (recursively), as paths.
    static func files(under directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var found: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            let path = directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if (info.st_mode & S_IFMT) == S_IFDIR { found += files(under: path) } else { found.append(path) }
        }
        return found
    }

    /// The rows of `media` uploaded (or created) by `user`.
    static func rows(_ server: MyelinServer, uploader: String) async throws -> Int {
        try await server.app.database.read { db in
            Int(try db.queryFirst("SELECT COUNT(*) FROM media WHERE uploader = ?", .text(uploader))?.int(0) ?? 0)
        }
    }

    /// Waits (up to 5 s) until `condition` holds: the server cleans up after a cut-off
    /// upload asynchronously, once it notices the connection closed.
    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<100 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    /// `count` bytes of a pattern that differs per `seed`.
    static func bytes(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7 &+ ($0 >> 8)) }
    }
}
