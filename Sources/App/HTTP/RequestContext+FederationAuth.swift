import Actors
import Matrix
import Transport

/// Who may call a federation handler, said once at its top, as `requireUser` is for the
/// client-server API.
extension RequestContext {
    /// The server that sent this request, authenticated by its `X-Matrix` Authorization
    /// header (server-server API, "Request Authentication"): the header must parse, its
    /// `destination` (when present) must be this server, and its signature of
    /// `{method, uri, origin, destination, content}` must verify with the origin's key as
    /// the key ring knows it now. The signed `uri` is the request target exactly as received.
    /// 401 `M_UNAUTHORIZED` otherwise; a body that is not JSON is 400 `M_NOT_JSON`. With
    /// `federation.enabled: false` every federation request is 403 `M_FORBIDDEN`, and with a
    /// `federation.domain_whitelist` every server outside it (as Synapse answers).
    func requireServer() async throws -> ServerName {
        guard app.configuration.federation.enabled else {
            throw MatrixError(.forbidden, "Federation is disabled on this server")
        }
        let headers = request.headers.values("Authorization")
        guard let header = headers.first(where: { $0.utf8.count >= 8 && asciiLowercased($0.prefix(8)) == "x-matrix" }) else {
            throw MatrixError(.unauthorized, "Missing X-Matrix Authorization header")
        }
        let auth = try XMatrixAuthorization(parsing: header)
        let whitelist = app.configuration.federation.domainWhitelist
        // By host, without the port, as the outbound client checks it.
        if !whitelist.isEmpty, !whitelist.contains(where: { $0.lowercased() == String(auth.origin.host).lowercased() }) {
            throw MatrixError(.forbidden, "Federation with \(auth.origin.rawValue.prefix(255)) is not allowed by this server")
        }
        let ourName = app.configuration.serverName
        if let destination = auth.destination, destination.rawValue != ourName {
            throw MatrixError(.unauthorized, "Request is for \(destination.rawValue.prefix(255)), not this server")
        }
        let bytes = try await request.body.collect()
        // `JSON?.none`, not `nil`: JSON is ExpressibleByNilLiteral, and `nil` here would be `.null`.
        let content: JSON? = bytes.isEmpty ? JSON?.none : try JSON.parse(bytes)
        let key = try await app.keyRing.verifyKey(server: auth.origin, keyID: auth.keyID, validAt: app.keyRing.now())
        guard FederationRequestSignature.verify(auth, method: request.method.description, uri: request.head.target,
                                                destination: ourName, content: content, key: key) else {
            throw MatrixError(.unauthorized, "Invalid X-Matrix signature from \(auth.origin)")
        }
        return auth.origin
    }

    private func asciiLowercased(_ s: Substring) -> String {
        String(decoding: s.utf8.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }
}

/// The seam named in the federation brief: `requireServer(context)` is `context.requireServer()`.
func requireServer(_ context: RequestContext) async throws -> ServerName {
    try await context.requireServer()
}
