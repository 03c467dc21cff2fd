import Matrix
import Testing
import Transport
@testable import App

/// The authenticated request context (`requireUser`, `requireSelf`, `requireAdmin`) over a
/// running server: tokens are issued over the socket, then a request carrying each one is
/// put through the context as a handler would.
@Suite struct RequestContextAuthTests {
    static func context(_ app: MyelinApp, token: String?, userID: String = "") -> RequestContext {
        var headers = HTTPHeaders()
        if let token { headers = ["Authorization": "Bearer \(token)"] }
        let head = HTTPRequestHead(method: .get, target: "/test", headers: headers)
        return RequestContext(request: HTTPRequest(head: head, remoteAddress: "127.0.0.1"),
                              parameters: ["userId": userID], app: app)
    }

    static func refusal(_ body: () async throws -> Requester) async -> MatrixError? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? MatrixError
        }
    }

    /// An admin created through the shared-secret registration, as Synapse's tools do.
    static func registerAdmin(port: Int, _ username: String) async throws -> String {
        let client = try MatrixTestClient(port: port)
        let nonce = try #require(try await client.call("GET", "/_synapse/admin/v1/register").json["nonce"]?.stringValue)
        let mac = HMACSHA1.hex(key: Array("s3cret".utf8), message: Array("\(nonce)\0\(username)\0pw\0admin".utf8))
        let created = try await client.call("POST", "/_synapse/admin/v1/register", [
            "nonce": .string(nonce), "username": .string(username), "password": "pw", "admin": true, "mac": .string(mac)])
        return try #require(created.json["access_token"]?.stringValue)
    }

    @Test func requireAdminAdmitsOnlyServerAdmins() async throws {
        try await withMyelinServer({ $0.registration.sharedSecret = "s3cret" }) { server, port in
            let app = server.app
            let adminToken = try await Self.registerAdmin(port: port, "root")
            let user = try await MatrixTestClient.registered(port: port, "alice").client
            let userToken = try #require(user.token)

            let admin = try await Self.context(app, token: adminToken).requireAdmin()
            #expect(admin.userID.rawValue == "@root:localhost")
            #expect(admin.isAdmin)

            let refused = await Self.refusal { try await Self.context(app, token: userToken).requireAdmin() }
            #expect(refused?.code == .forbidden)
            #expect(refused?.status == 403)
            #expect(refused?.message == "You are not a server admin")
            // The non-admin is still a user.
            #expect(try await Self.context(app, token: userToken).requireUser().isAdmin == false)

            let anonymous = await Self.refusal { try await Self.context(app, token: nil).requireAdmin() }
            #expect(anonymous?.code == .missingToken)
            let unknown = await Self.refusal { try await Self.context(app, token: "nonsense").requireAdmin() }
            #expect(unknown?.code == .unknownToken)
        }
    }

    @Test func requireSelfRefusesOtherUsersAndMalformedIDs() async throws {
        try await withMyelinServer { server, port in
            let app = server.app
            let token = try #require(try await MatrixTestClient.registered(port: port, "bob").client.token)
            let me = try await Self.context(app, token: token, userID: "@bob:localhost").requireSelf("not yours")
            #expect(me.userID.rawValue == "@bob:localhost")
            let other = await Self.refusal {
                try await Self.context(app, token: token, userID: "@carol:localhost").requireSelf("not yours")
            }
            #expect(other?.code == .forbidden)
            #expect(other?.message == "not yours")
            let malformed = await Self.refusal {
                try await Self.context(app, token: token, userID: "bob").requireSelf("not yours")
            }
            #expect(malformed?.code == .invalidParam)
            // Authentication comes first: without a token the path is never looked at.
            let anonymous = await Self.refusal { try await Self.context(app, token: nil, userID: "bob").requireSelf("x") }
            #expect(anonymous?.code == .missingToken)
        }
    }
}
