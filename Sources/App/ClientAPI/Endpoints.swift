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
        "unstable_features": .object([:]),
    ]).encoded()

    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/client/versions") { _ in
            HTTPResponse(contentType: "application/json", bytes: versionsBody)
        }
        routes.get("/health") { _ in HTTPResponse(contentType: "text/plain", bytes: Array("OK".utf8)) }
        routes.get("/.well-known/matrix/client") { context in
            let base = context.app.configuration.wellKnown.clientBaseURL
            guard !base.isEmpty else { throw MatrixError(.notFound, "No .well-known/matrix/client configured") }
            return .json(["m.homeserver": ["base_url": .string(base)]])
        }
        routes.get("/.well-known/matrix/server") { context in
            let server = context.app.configuration.wellKnown.server
            guard !server.isEmpty else { throw MatrixError(.notFound, "No .well-known/matrix/server configured") }
            return .json(["m.server": .string(server)])
        }
        routes.get("/") { context in
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
}

/// The server's published signing keys (`GET /_matrix/key/v2/server`).
enum KeyServer {
    /// How long other servers may cache our key.
    static let validityMilliseconds: Int64 = 7 * 24 * 3600 * 1000

    static func register(_ routes: inout RouteBuilder) {
        let handler: Handler = { context in
            let app = context.app
            let body = app.signingKey.serverKeysResponse(serverName: app.configuration.serverName,
                                                        validUntilTS: Clock.nowMilliseconds() + validityMilliseconds)
            return .json(body)
        }
        routes.get("/_matrix/key/v2/server", handler)
        routes.get("/_matrix/key/v2/server/{keyId}", handler)
    }
}

/// The Synapse admin API endpoints that need no authentication.
enum SynapseAdmin {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_synapse/admin/v1/server_version") { _ in
            .json(["server_version": .string("Myelin \(MyelinVersion.string)")])
        }
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
