import Actors
import Matrix
import Transport

extension FederationClient {
    /// A GET to `destination` whose answer streams (a media download may be far larger than
    /// the JSON answers `request` buffers): discovery, the domain whitelist and (when
    /// `signed`) the X-Matrix signature as in `request`; returns once the head arrived.
    /// `signed: false` is the legacy `/_matrix/media/v3/download` of servers older than
    /// Matrix 1.11, which takes no authentication. `maxBytes` bounds the body.
    func streamingGet(_ destination: ServerName, path: String, signed: Bool, maxBytes: Int) async throws -> HTTPClientResponse {
        guard domainWhitelist.isEmpty || domainWhitelist.contains(String(destination.host).lowercased()) else {
            throw FederationRequestError(.refused, "\(destination) is not in federation.domain_whitelist")
        }
        guard path.hasPrefix("/"), !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) else {
            throw FederationRequestError(.invalidResponse, "malformed request path")
        }
        var headers = HTTPHeaders()
        if signed {
            do {
                let auth = try FederationRequestSignature.authorization(method: "GET", uri: path, origin: serverName.rawValue,
                                                                        destination: destination.rawValue, content: nil, key: signingKey)
                headers.add("Authorization", auth.headerValue)
            } catch {
                throw FederationRequestError(.invalidResponse, "cannot sign the request: \(error)")
            }
        }
        let places = await discovery.resolve(destination)
        var lastError = FederationRequestError(.unreachable, "\(destination) resolved to nowhere")
        for place in places {
            var request = HTTPClientRequest(method: .get, scheme: scheme, host: place.host, port: place.port,
                                            target: path, headers: headers, tlsServerName: place.tlsServerName)
            request.headers.set("Host", place.hostHeader)
            request.maxResponseBytes = maxBytes
            do {
                return try await client.execute(request)
            } catch let error as HTTPClientError {
                lastError = FederationClient.mapped(error, destination)
                guard lastError.kind == .unreachable || error.kind == .connectTimeout else { throw lastError }
            }
        }
        throw lastError
    }

    /// A plain GET of an absolute `url` (a `Location` part or a redirect), through the same
    /// HTTP client and so its IP blacklist, following up to `maxRedirects` redirects, each
    /// checked again. No Authorization: the URL is another party's.
    func plainGet(url: String, maxBytes: Int, maxRedirects: Int = 5) async throws -> HTTPClientResponse {
        var target = url
        for _ in 0...maxRedirects {
            guard target.utf8.count <= 4096, var request = HTTPClientRequest(method: .get, url: target) else {
                throw FederationRequestError(.invalidResponse, "unusable media location")
            }
            request.maxResponseBytes = maxBytes
            let response: HTTPClientResponse
            do { response = try await client.execute(request) } catch let error as HTTPClientError {
                throw FederationClient.mapped(error, location: request.host)
            }
            guard [301, 302, 303, 307, 308].contains(response.status), let location = response.headers["Location"] else {
                return response
            }
            // Drain the redirect's (small) body so that the connection can be reused.
            _ = try? await response.body.collect()
            if location.hasPrefix("/") && !location.hasPrefix("//") {
                let port = request.port == (request.scheme == .https ? 443 : 80) ? "" : ":\(request.port)"
                let host = request.host.contains(":") ? "[\(request.host)]" : request.host
                target = "\(request.scheme.rawValue)://\(host)\(port)\(location)"
            } else {
                target = location
            }
        }
        throw FederationRequestError(.invalidResponse, "too many redirects for media")
    }

    /// `mapped(_:_:)` for a request that is not to a server name (a media location).
    static func mapped(_ error: HTTPClientError, location: String) -> FederationRequestError {
        let kind: FederationRequestError.Kind
        switch error.kind {
        case .blacklisted: kind = .refused
        case .resolutionFailed, .connectFailed, .tls, .shutDown: kind = .unreachable
        case .connectTimeout, .readTimeout: kind = .timeout
        case .tooLarge: kind = .tooLarge
        case .invalidResponse, .tooManyRedirects: kind = .invalidResponse
        }
        return FederationRequestError(kind, "\(location): \(error)")
    }
}
