import Matrix
import TestSupport
@testable import App

/// A JSON client-server API client over one `RawClient` connection, for end-to-end tests.
struct MatrixTestClient {
    let raw: RawClient
    var token: String?

    init(port: Int, token: String? = nil) throws {
        raw = try RawClient(port: port)
        self.token = token
    }

    struct Reply {
        let status: Int
        let json: JSON
        var errcode: String? { json["errcode"]?.stringValue }
    }

    /// `path` is relative to `/_matrix/client/v3` unless it starts with `/_`.
    @discardableResult
    func call(_ method: String, _ path: String, _ body: JSON? = nil, token explicit: String?? = nil,
              headers: [String: String] = [:]) async throws -> Reply {
        var headers = headers
        if let token = explicit ?? token { headers["Authorization"] = "Bearer \(token)" }
        let target = path.hasPrefix("/_") ? path : "/_matrix/client/v3" + path
        let response = try await raw.request(method, target, body: body.map(\.encodedString), headers: headers)
        let json = response.body.isEmpty ? JSON.null : try JSON.parse(response.body)
        return Reply(status: response.status, json: json)
    }

    /// Registers `username` with the dummy stage; returns a client carrying its token.
    static func registered(port: Int, _ username: String, password: String = "correct horse",
                           extra: [String: JSON] = [:]) async throws -> (client: MatrixTestClient, reply: Reply) {
        var client = try MatrixTestClient(port: port)
        var body: [String: JSON] = ["username": .string(username), "password": .string(password),
                                    "auth": ["type": "m.login.dummy"]]
        for (key, value) in extra { body[key] = value }
        let reply = try await client.call("POST", "/register", .object(body))
        client.token = reply.json["access_token"]?.stringValue
        return (client, reply)
    }
}
