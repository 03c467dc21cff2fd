import Actors
import Matrix
import Synchronization
import Transport

/// The real `FederationRequesting`: finds the destination (`ServerDiscovery`), signs every
/// request with this server's key (`X-Matrix`, server-server API "Request Authentication"),
/// sends it with the transport's HTTP client (its IP blacklist, TLS and limits) and reads
/// the JSON answer. Built by `MyelinServer` as `app.federationClient`; the key ring, the
/// destination actors and the federation handlers call it.
final class FederationClient: FederationRequesting {
    let serverName: ServerName
    let signingKey: SigningKey
    let client: HTTPClient
    let discovery: ServerDiscovery
    /// `federation.domain_whitelist`: when not empty, the only destinations allowed.
    let domainWhitelist: Set<String>
    /// `https` always in production; plain HTTP only for tests without certificates.
    let scheme: HTTPClientRequest.Scheme

    init(serverName: ServerName, signingKey: SigningKey, client: HTTPClient, discovery: ServerDiscovery? = nil,
         domainWhitelist: [String] = [], scheme: HTTPClientRequest.Scheme = .https) {
        self.serverName = serverName
        self.signingKey = signingKey
        self.client = client
        self.discovery = discovery ?? ServerDiscovery(client: client)
        self.domainWhitelist = Set(domainWhitelist.map { $0.lowercased() })
        self.scheme = scheme
    }

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        guard domainWhitelist.isEmpty || domainWhitelist.contains(String(destination.host).lowercased()) else {
            throw FederationRequestError(.refused, "\(destination) is not in federation.domain_whitelist")
        }
        guard path.hasPrefix("/"), !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) else {
            throw FederationRequestError(.invalidResponse, "malformed request path")
        }
        let auth: XMatrixAuthorization
        do {
            auth = try FederationRequestSignature.authorization(method: method, uri: path, origin: serverName.rawValue,
                                                                destination: destination.rawValue, content: body, key: signingKey)
        } catch {
            throw FederationRequestError(.invalidResponse, "cannot sign the request: \(error)")
        }
        var headers = HTTPHeaders()
        headers.add("Authorization", auth.headerValue)
        if body != nil { headers.add("Content-Type", "application/json") }
        let bytes = body.map { $0.encoded() }
        let places = await discovery.resolve(destination)
        var lastError = FederationRequestError(.unreachable, "\(destination) resolved to nowhere")
        for place in places {
            var request = HTTPClientRequest(method: HTTPMethod(method), scheme: scheme, host: place.host, port: place.port,
                                            target: path, headers: headers, body: bytes, tlsServerName: place.tlsServerName)
            request.headers.set("Host", place.hostHeader)
            do {
                let response = try await client.buffered(request)
                let json = response.body.isEmpty ? nil : try? JSON.parse(response.body)
                return FederationReply(status: response.status, json: json)
            } catch let error as HTTPClientError {
                lastError = FederationClient.mapped(error, destination)
                // Only a place that could not be reached is worth trying the next one for.
                guard lastError.kind == .unreachable || error.kind == .connectTimeout else { throw lastError }
            }
        }
        throw lastError
    }

    static func mapped(_ error: HTTPClientError, _ destination: ServerName) -> FederationRequestError {
        let message = "\(destination): \(error)"
        switch error.kind {
        case .blacklisted: return FederationRequestError(.refused, message)
        case .resolutionFailed, .connectFailed, .tls, .shutDown: return FederationRequestError(.unreachable, message)
        case .connectTimeout, .readTimeout: return FederationRequestError(.timeout, message)
        case .tooLarge: return FederationRequestError(.tooLarge, message)
        case .invalidResponse, .tooManyRedirects: return FederationRequestError(.invalidResponse, message)
        }
    }
}

extension FederationClient {
    /// The client `configuration` describes: the blacklist opened by
    /// `federation.ip_range_whitelist`, `federation.domain_whitelist`, and TLS verification
    /// per `federation.verify_certificates` and `federation.extra_ca_files`.
    convenience init(configuration: Configuration, signingKey: SigningKey) throws {
        var http = HTTPClientConfiguration()
        // The loader validated every range.
        http.blacklist = IPBlacklist(allowed: configuration.federation.ipRangeWhitelist.compactMap { IPRange($0) })
        http.tlsVerification = configuration.federation.verifyCertificates
            ? .verify(extraCAFiles: configuration.federation.extraCAFiles) : .none
        self.init(serverName: try ServerName(parsing: configuration.serverName), signingKey: signingKey,
                  client: try HTTPClient(configuration: http), domainWhitelist: configuration.federation.domainWhitelist)
    }
}

/// `app.federationClient`: the `FederationClient` of the configuration, built on the first
/// request (an app that never federates, as most tests, starts no client thread). Owned by
/// `MyelinApp`; `MyelinServer` connects it (key ring, room handlers, destinations) when federation is on.
final class LazyFederationClient: FederationRequesting {
    private let make: @Sendable () throws -> FederationClient
    private let state = Mutex<FederationClient?>(nil)

    init(_ make: @escaping @Sendable () throws -> FederationClient) { self.make = make }

    func client() throws -> FederationClient {
        try state.withLock { current in
            if let current { return current }
            let made = try make()
            current = made
            return made
        }
    }

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        let client: FederationClient
        do { client = try self.client() } catch {
            throw FederationRequestError(.unreachable, "no federation client: \(error)")
        }
        return try await client.request(destination, method: method, path: path, body: body)
    }

    /// Stops the HTTP client, if one was built.
    func shutdown() {
        state.withLock { $0?.client.shutdown() }
    }
}
