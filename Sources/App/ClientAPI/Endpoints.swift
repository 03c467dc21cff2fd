import Matrix
import Transport

/// Every route of the server, grouped by the specification's modules.
enum Endpoints {
    static func register(_ routes: inout RouteBuilder) {
        Discovery.register(&routes)
        KeyServer.register(&routes)
        SynapseAdmin.register(&routes)
        AccountEndpoints.register(&routes)
        RoomEndpoints.register(&routes)
        Keys.register(&routes)
        KeyBackup.register(&routes)
        FederationQueries.register(&routes)
        FederationRoomEndpoints.register(&routes)
        FederationHierarchy.register(&routes)
        FederationThirdPartyInvites.register(&routes)
        FederationV1Membership.register(&routes)
        MediaAdmin.register(&routes)
        AdminUsers.register(&routes)
        AdminRooms.register(&routes)
        MediaEndpoints.register(&routes)
        VoiceEndpoints.register(&routes)
        URLPreviewEndpoints.register(&routes)
        FederationMediaEndpoints.register(&routes)
        ThumbnailEndpoints.register(&routes)
        AdminSecurity.register(&routes)
        AdminServer.register(&routes)
        FriendsEndpoints.register(&routes)
        SeedClientExtensions.register(&routes)
    }
}

/// Versions, well-known documents, health and the welcome page.
enum Discovery {
    /// The specification versions whose client-server API this server implements.
    static let versions: [String] = [
        "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
        "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
    ]

    static let versionsBody: [UInt8] = JSON.object([
        "versions": .array(versions.map { .string($0) }),
        // Dehydrated devices (`DehydratedDevices`): clients look for the flag.
        "unstable_features": ["org.matrix.msc3814": true],
    ]).encoded()

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/client/versions", versionsList)
        routes.get("/.well-known/matrix/client", wellKnownClient)
        routes.get("/.well-known/matrix/server", wellKnownServer)
        routes.get("/health", health)
        routes.get("/", welcome)
    }

    /// `GET /_matrix/client/versions`: the specification versions this server implements.
    static func versionsList(_ context: RequestContext) async throws -> HTTPResponse {
        HTTPResponse(contentType: "application/json", bytes: versionsBody)
    }

    /// `GET /.well-known/matrix/client`: the client base URL, when configured.
    static func wellKnownClient(_ context: RequestContext) async throws -> HTTPResponse {
        let base = context.app.configuration.wellKnown.clientBaseURL
        guard !base.isEmpty else { throw MatrixError(.notFound, "No .well-known/matrix/client configured") }
        return .json(["m.homeserver": ["base_url": .string(base)]])
    }

    /// `GET /.well-known/matrix/server`: the delegated federation server, when configured.
    static func wellKnownServer(_ context: RequestContext) async throws -> HTTPResponse {
        let server = context.app.configuration.wellKnown.server
        guard !server.isEmpty else { throw MatrixError(.notFound, "No .well-known/matrix/server configured") }
        return .json(["m.server": .string(server)])
    }

    /// `GET /health`: OK while the server runs.
    static func health(_ context: RequestContext) async throws -> HTTPResponse {
        HTTPResponse(contentType: "text/plain", bytes: Array("OK".utf8))
    }

    /// `GET /`: a page that says the server runs and what it is for.
    static func welcome(_ context: RequestContext) async throws -> HTTPResponse {
        let name = context.app.configuration.serverName
        let page = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Myelin</title></head>
        <body><h1>It works! Myelin is running.</h1>
        <p>This is the Matrix homeserver for <strong>\(HTML.escape(name))</strong>.
        Point a Matrix client (Element, for example) at this server to use it.</p></body></html>
        """
        return HTTPResponse(contentType: "text/html; charset=utf-8", bytes: Array(page.utf8))
    }
}

/// The server's published signing keys (`GET /_matrix/key/v2/server`).
enum KeyServer {
    /// How long other servers may cache our key.
    static let validityMilliseconds: Int64 = 7 * 24 * 3600 * 1000

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/key/v2/server", serverKeys)
        routes.get("/_matrix/key/v2/server/{keyId}", serverKeys)
    }

    /// `GET /_matrix/key/v2/server[/{keyId}]`: the server's signing keys, signed.
    static func serverKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let body = app.signingKey.serverKeysResponse(serverName: app.configuration.serverName,
                                                    validUntilTS: Clock.nowMilliseconds() + validityMilliseconds)
        return .json(body)
    }
}

/// The Synapse admin API endpoints that need no authentication.
enum SynapseAdmin {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_synapse/admin/v1/server_version", serverVersion)
    }

    /// `GET /_synapse/admin/v1/server_version`: this server's name and version.
    static func serverVersion(_ context: RequestContext) async throws -> HTTPResponse {
        .json(["server_version": .string("Myelin \(MyelinVersion.string)")])
    }
}

enum MyelinVersion {
    static let string = "0.1.0"
}

enum HTML {
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
