import Matrix
import Transport

extension MyelinApp {
    /// Gives the media repository its remote source (`FederationMediaSource`); called by
    /// `MyelinServer` at start-up when federation is on. Media downloads get their own HTTP
    /// client (built on the first remote download), with the federation client's blacklist
    /// and TLS settings but a body limit of `media.max_upload_bytes` (plus the multipart
    /// framing) rather than the 50 MiB of federation JSON, and their own connection pools, so
    /// that a large download never holds a connection room and key requests wait for.
    func connectRemoteMedia() {
        let configuration = self.configuration
        let signingKey = self.signingKey
        let maxBytes = Int64(configuration.media.maxUploadBytes)
        let client = LazyFederationClient {
            var http = HTTPClientConfiguration()
            http.blacklist = IPBlacklist(allowed: configuration.federation.ipRangeWhitelist.compactMap { IPRange($0) })
            http.tlsVerification = configuration.federation.verifyCertificates
                ? .verify(extraCAFiles: configuration.federation.extraCAFiles) : .none
            http.maxResponseBytes = Int(min(maxBytes, Int64(Int.max / 2))) + RemoteMediaFetcher.maxSmallBody
            http.maxConnectionsPerHost = 4
            http.maxConnections = 64
            return FederationClient(serverName: try ServerName(parsing: configuration.serverName), signingKey: signingKey,
                                    client: try HTTPClient(configuration: http),
                                    domainWhitelist: configuration.federation.domainWhitelist)
        }
        let cache = RemoteMediaCache(repository: media, store: database.remoteMediaCache, localOrigin: configuration.serverName,
                                     maxBytes: Int64(configuration.media.remoteCacheMaxBytes), logger: logger)
        let fetcher = RemoteMediaFetcher(client: { try client.client() }, files: media.files, maxBytes: maxBytes)
        media.setRemoteSource(FederationMediaSource(fetcher: fetcher, repository: media, cache: cache, logger: logger,
                                                    shutdown: { client.shutdown() }))
        // What a previous process left over the limit (or a lowered limit) goes at start-up.
        cache.trimSoon()
    }

    /// Stops the remote media HTTP client, if one was built.
    func disconnectRemoteMedia() {
        (media.remoteSource as? FederationMediaSource)?.shutdown()
    }
}
