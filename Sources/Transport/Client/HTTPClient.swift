/// An HTTP/1.1 client on its own libuv loop: keep-alive connection pools per (host, port,
/// scheme, TLS name) with limits, connect and read timeouts, response size limits,
/// streaming and buffered bodies, and an IP blacklist applied to every resolved address
/// before connecting (redirects included). Owned by the App (the federation client, media
/// fetching later); safe to call from any task. Nothing here blocks a thread of the
/// cooperative pool: DNS runs on libuv's thread pool, sockets on the client loop.
public final class HTTPClient: Sendable {
    let loop: ClientLoop
    let pool: ClientPool
    public let configuration: HTTPClientConfiguration

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration()) throws {
        self.configuration = configuration
        let tls: TLSContext
        do { tls = try TLSContext.client(verification: configuration.tlsVerification) } catch {
            throw HTTPClientError(.tls, "cannot make the TLS context: \(error)")
        }
        loop = try ClientLoop()
        pool = ClientPool(loop: loop, configuration: configuration, tls: tls)
    }

    /// Sends `request`; returns once the response head arrived, its body streaming.
    public func execute(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        try await withCheckedThrowingContinuation { continuation in
            let pool = self.pool
            let accepted = loop.execute {
                pool.start(ClientExchange(request: request, continuation: continuation))
            }
            if !accepted { continuation.resume(throwing: HTTPClientError(.shutDown)) }
        }
    }

    /// Sends `request` and reads the whole body. Follows up to `maxRedirects` redirects
    /// (301, 302, 303, 307, 308; a 303 becomes a GET), each to a new address that passes the
    /// blacklist again.
    public func buffered(_ request: HTTPClientRequest, maxRedirects: Int = 0) async throws -> HTTPClientBufferedResponse {
        var request = request
        var redirects = 0
        while true {
            let response = try await execute(request)
            let body = try await response.body.collect()
            guard [301, 302, 303, 307, 308].contains(response.status), let location = response.headers["Location"] else {
                return HTTPClientBufferedResponse(status: response.status, headers: response.headers, body: body)
            }
            guard redirects < maxRedirects else {
                if maxRedirects == 0 {
                    return HTTPClientBufferedResponse(status: response.status, headers: response.headers, body: body)
                }
                throw HTTPClientError(.tooManyRedirects)
            }
            redirects += 1
            request = try redirected(request, to: location, status: response.status)
        }
    }

    func redirected(_ request: HTTPClientRequest, to location: String, status: Int) throws -> HTTPClientRequest {
        var next: HTTPClientRequest
        if location.hasPrefix("/") && !location.hasPrefix("//") {
            next = request
            next.target = location
        } else if let absolute = HTTPClientRequest(method: request.method, url: location) {
            next = absolute
            // Headers of the original request (Host aside) go along; TLS verifies the new host.
            next.headers = request.headers
            next.headers.remove("Host")
        } else {
            throw HTTPClientError(.invalidResponse, "unusable redirect location")
        }
        if status == 303 { next.method = .get; next.body = nil }
        return next
    }

    /// The SRV records of `name` (e.g. `_matrix-fed._tcp.example.org`), unsorted; empty
    /// when there are none.
    public func srvRecords(_ name: String) async throws -> [SRVRecord] {
        try await withCheckedThrowingContinuation { continuation in
            let loop = self.loop
            let accepted = loop.execute {
                Resolver.srv(name, loop: loop) { continuation.resume(with: $0.mapError { $0 as any Error }) }
            }
            if !accepted { continuation.resume(throwing: HTTPClientError(.shutDown)) }
        }
    }

    /// Connections opened so far (reuse shows as fewer connections than requests).
    public func connectionsOpened() async -> Int {
        await withCheckedContinuation { continuation in
            let pool = self.pool
            if !loop.execute({ continuation.resume(returning: pool.connectionsOpened) }) { continuation.resume(returning: 0) }
        }
    }

    /// Fails what is in flight, closes every connection and stops the loop.
    public func shutdown() {
        let pool = self.pool
        loop.execute { pool.shutdown() }
    }
}
