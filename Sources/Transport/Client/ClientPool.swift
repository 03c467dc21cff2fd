import CLibUV
import Glibc

/// An address from name resolution, ready for `uv_tcp_connect`.
struct ResolvedAddress {
    var storage: sockaddr_storage
    var ip: IPAddress
}

/// The client's connections, keyed by (host, port, scheme, TLS name): idle kept-alive ones
/// to reuse, limits per key and in total, and requests waiting for a slot.
///
/// Threading: the client loop's thread only (every entry point is called through
/// `ClientLoop.execute` or from a libuv callback).
final class ClientPool: @unchecked Sendable {
    struct Key: Hashable {
        var host: String
        var port: Int
        var scheme: HTTPClientRequest.Scheme
        var tlsServerName: String?
    }

    let loop: ClientLoop
    let configuration: HTTPClientConfiguration
    /// One read buffer for every connection: a read is parsed before the next one starts.
    let readBufferSize = 64 * 1024
    let readBuffer: UnsafeMutablePointer<CChar>
    /// Decrypted bytes of one TLS read, parsed before the next one.
    let plainBuffer: UnsafeMutablePointer<CChar>
    /// The client TLS context (verification per the configuration), shared by connections.
    let tls: TLSContext
    private var open: [UInt64: ClientConnection] = [:]
    private var idle: [Key: [ClientConnection]] = [:]
    private var perKey: [Key: Int] = [:]
    private var waiting: [(Key, ClientExchange)] = []
    private var nextID: UInt64 = 0
    private var shutDown = false
    /// Connections opened since the start (tests check reuse with it).
    private(set) var connectionsOpened = 0

    init(loop: ClientLoop, configuration: HTTPClientConfiguration, tls: TLSContext) {
        self.loop = loop
        self.configuration = configuration
        self.tls = tls
        readBuffer = .allocate(capacity: readBufferSize)
        plainBuffer = .allocate(capacity: readBufferSize)
    }

    func start(_ exchange: ClientExchange) {
        let request = exchange.request
        guard !shutDown else { exchange.fail(HTTPClientError(.shutDown)); return }
        guard request.target.hasPrefix("/") || request.target == "*",
              !request.target.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }),
              !request.host.isEmpty, request.host.utf8.count <= 255,
              !request.host.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "/") }),
              (1...65535).contains(request.port) else {
            exchange.fail(HTTPClientError(.invalidResponse, "malformed request"))
            return
        }
        let key = Key(host: request.host.lowercased(), port: request.port, scheme: request.scheme,
                      tlsServerName: request.tlsServerName)
        dispatch(exchange, key)
    }

    func retry(_ exchange: ClientExchange) {
        let r = exchange.request
        dispatch(exchange, Key(host: r.host.lowercased(), port: r.port, scheme: r.scheme, tlsServerName: r.tlsServerName))
    }

    private func dispatch(_ exchange: ClientExchange, _ key: Key) {
        if var list = idle[key], let connection = list.popLast() {
            idle[key] = list.isEmpty ? nil : list
            connection.send(exchange)
            return
        }
        if perKey[key, default: 0] < configuration.maxConnectionsPerHost {
            if open.count >= configuration.maxConnections, let victim = idle.values.first?.first {
                victim.close()
            }
            if open.count < configuration.maxConnections {
                connect(exchange, key)
                return
            }
        }
        waiting.append((key, exchange))
    }

    private func connect(_ exchange: ClientExchange, _ key: Key) {
        let connection = ClientConnection(pool: self, key: key, id: nextID)
        nextID &+= 1
        connectionsOpened += 1
        open[connection.id] = connection
        perKey[key, default: 0] += 1
        connection.exchange = exchange
        Resolver.resolve(host: key.host, port: key.port, loop: loop) { [self] result in
            guard !connection.closed else { return }
            switch result {
            case .failure(let error):
                connection.fail(error)
            case .success(let addresses):
                // Checked after resolution, on every address, before any connection (SSRF).
                let allowed = addresses.filter { configuration.blacklist.permits($0.ip) }
                guard !allowed.isEmpty else {
                    connection.fail(HTTPClientError(.blacklisted, "\(key.host) resolves only to blacklisted addresses"))
                    return
                }
                connection.connect(to: allowed)
            }
        }
    }

    /// `connection` finished a response and may serve another.
    func release(_ connection: ClientConnection) {
        guard !shutDown else { connection.close(); return }
        if let index = waiting.firstIndex(where: { $0.0 == connection.key }) {
            let (_, exchange) = waiting.remove(at: index)
            connection.send(exchange)
            return
        }
        // Requests for other hosts wait on the total limit: the slot is worth more to them.
        if !waiting.isEmpty && open.count >= configuration.maxConnections {
            connection.close()
            return
        }
        connection.startIdleTimer()
        idle[connection.key, default: []].append(connection)
    }

    /// `connection` closed: its slot goes to the first request that can use it.
    func forget(_ connection: ClientConnection) {
        guard open.removeValue(forKey: connection.id) != nil else { return }
        let key = connection.key
        let left = perKey[key, default: 1] - 1
        perKey[key] = left > 0 ? left : nil
        if var list = idle[key], let i = list.firstIndex(where: { $0 === connection }) {
            list.remove(at: i)
            idle[key] = list.isEmpty ? nil : list
        }
        if let index = waiting.firstIndex(where: { perKey[$0.0, default: 0] < configuration.maxConnectionsPerHost }) {
            let (key, exchange) = waiting.remove(at: index)
            dispatch(exchange, key)
        }
    }

    func shutdown() {
        shutDown = true
        let waiters = waiting
        waiting = []
        for (_, exchange) in waiters { exchange.fail(HTTPClientError(.shutDown)) }
        for connection in Array(open.values) { connection.fail(HTTPClientError(.shutDown)) }
        loop.stopAccepting()
    }
}
