import Actors
import Logging
import Matrix
import Persistence
import Synchronization
import Transport

/// The HTTP pushers and their delivery queues: an index of each user's HTTP pushers (loaded
/// at start, reloaded when the user's pushers change) and a `Registry` of `PusherActor`s,
/// one per pusher, each with its own bounded queue and backoff. Owned by `PushPipeline`;
/// the pipeline enqueues, the `/pushers` handlers and the logout paths call `reload`.
///
/// Pusher URLs may point anywhere, loopback and private addresses included: Synapse has no IP
/// blacklist for push gateways by default (the administrator chooses the gateway apps use),
/// and a gateway on the same host is a common set-up.
final class PusherDeliveries: Sendable {
    let database: Database
    let configuration: Configuration.Push
    let registry: Registry<PusherKey, PusherActor>
    private let shared: Shared
    private let logger = Logger(label: "myelin.pushers")

    /// What every pusher actor shares: the pusher index, the HTTP client, the store.
    final class Shared: Sendable {
        let database: Database
        let configuration: Configuration.Push
        let byUser = Mutex<[UserID: [HTTPPusher]]>([:])
        private let client = Mutex<HTTPClient?>(nil)
        private let stopped = Mutex(false)
        /// Requests answered 2xx and failed (tests, the bench, diagnostics).
        let delivered = Atomic<Int>(0)
        let failed = Atomic<Int>(0)

        init(database: Database, configuration: Configuration.Push) {
            self.database = database
            self.configuration = configuration
        }

        func pusher(_ key: PusherKey) -> HTTPPusher? {
            byUser.withLock { $0[key.user]?.first { $0.appID == key.appID && $0.pushkey == key.pushkey } }
        }

        func httpClient() throws -> HTTPClient {
            try client.withLock { client in
                if let client { return client }
                guard !stopped.withLock({ $0 }) else { throw HTTPClientError(.shutDown) }
                var http = HTTPClientConfiguration()
                // No blacklist: see the type's comment.
                http.blacklist = IPBlacklist(blocked: [])
                http.connectTimeoutMs = 10_000
                http.readTimeoutMs = 30_000
                http.maxResponseBytes = 64 * 1024
                http.maxConnectionsPerHost = 16
                let made = try HTTPClient(configuration: http)
                client = made
                return made
            }
        }

        func shutdown() {
            stopped.withLock { $0 = true }
            client.withLock { $0?.shutdown() }
        }
    }

    init(database: Database, configuration: Configuration.Push) {
        self.database = database
        self.configuration = configuration
        let shared = Shared(database: database, configuration: configuration)
        self.shared = shared
        // Each actor keeps its queue across idle sweeps while it has work (it touches its
        // key after each attempt, and waits at most the longest backoff between attempts); an
        // idle empty one goes after ten minutes.
        let idle = Duration.milliseconds(max(600_000, 2 * configuration.backoffMaxMs))
        registry = Registry(limits: RegistryLimits(maxResident: 100_000, idleTimeout: idle)) { key in
            guard let pusher = shared.pusher(key) else { throw MatrixError(.notFound, "No such pusher") }
            return PusherActor(pusher: pusher, shared: shared)
        }
    }

    var delivered: Int { shared.delivered.load(ordering: .relaxed) }
    var failed: Int { shared.failed.load(ordering: .relaxed) }

    /// Reads every HTTP pusher of the store.
    func load() async {
        do {
            let all = try await database.pushers.stored().compactMap(HTTPPusher.init)
            shared.byUser.withLock { index in
                index = Dictionary(grouping: all, by: \.user)
            }
        } catch {
            logger.error("loading pushers failed: \(error)")
        }
    }

    /// The user's pushers changed in the store: reindex them, and stop the queues of those
    /// that went (or changed: a replaced pusher starts afresh).
    func reload(_ user: UserID) async {
        guard let stored = try? await database.pushers.stored(of: user) else { return }
        let now = stored.compactMap(HTTPPusher.init)
        let before = shared.byUser.withLock { index -> [HTTPPusher] in
            let before = index[user] ?? []
            index[user] = now.isEmpty ? nil : now
            return before
        }
        for old in before where !now.contains(old) { await registry.remove(old.key) }
    }

    func hasPushers(_ user: UserID) -> Bool { shared.byUser.withLock { $0[user] != nil } }

    func enqueue(_ push: PendingPush, for user: UserID) async {
        let pushers = shared.byUser.withLock { $0[user] ?? [] }
        for pusher in pushers {
            let registry = self.registry
            let key = pusher.key
            guard let actor = try? await registry.get(key) else { continue }
            await actor.enqueue(push, keepAlive: { await registry.touch(key) }, removeSelf: { [self] in
                await removeRejected(pusher)
            })
        }
    }

    /// The gateway rejected the pusher's push key: remove the pusher (push gateway API,
    /// `rejected`: "the homeserver should remove the pusher").
    func removeRejected(_ pusher: HTTPPusher) async {
        logger.info("push gateway rejected the push key of \(pusher.user)'s pusher for \(pusher.appID): removing it")
        try? await database.pushers.deletePusher(user: pusher.user, appID: pusher.appID, pushkey: pusher.pushkey)
        await reload(pusher.user)
    }

    func shutdown() {
        shared.shutdown()
    }
}

/// One HTTP pusher's deliveries: notifications in order, one request in flight, exponential
/// backoff after a failure (reset by a success), a bounded queue (the oldest dropped when
/// full), and a notification dropped once it fails at the longest backoff (Synapse's
/// behaviour). Supervised by `PusherDeliveries.registry`.
actor PusherActor: RegistryMember {
    let pusher: HTTPPusher
    private let shared: PusherDeliveries.Shared
    private var queue: [(id: UInt64, push: PendingPush)] = []
    private var nextID: UInt64 = 0
    private var running: Task<Void, Never>?
    private var backoffMs: Int
    private var stopped = false
    private let logger = Logger(label: "myelin.pushers")

    init(pusher: HTTPPusher, shared: PusherDeliveries.Shared) {
        self.pusher = pusher
        self.shared = shared
        backoffMs = shared.configuration.backoffInitialMs
    }

    func enqueue(_ push: PendingPush, keepAlive: @escaping @Sendable () async -> Void,
                 removeSelf: @escaping @Sendable () async -> Void) {
        guard !stopped else { return }
        if queue.count >= shared.configuration.maxQueuedPerPusher { queue.removeFirst() }
        nextID &+= 1
        queue.append((nextID, push))
        if running == nil {
            running = Task { await self.run(keepAlive: keepAlive, removeSelf: removeSelf) }
        }
    }

    private enum Attempt { case delivered, rejected, failed }

    private func run(keepAlive: @Sendable () async -> Void, removeSelf: @Sendable () async -> Void) async {
        defer { running = nil }
        while !stopped, !Task.isCancelled, let head = queue.first {
            let outcome = await send(head.push)
            await keepAlive()
            switch outcome {
            case .delivered:
                backoffMs = shared.configuration.backoffInitialMs
                if queue.first?.id == head.id { queue.removeFirst() }
            case .rejected:
                stopped = true
                queue = []
                await removeSelf()
                return
            case .failed:
                let max = shared.configuration.backoffMaxMs
                if backoffMs >= max {
                    // At the longest backoff: this notification is given up, the next is tried.
                    logger.warning("push to \(pusher.user)'s pusher for \(pusher.appID) failed at the longest backoff: dropped")
                    if queue.first?.id == head.id { queue.removeFirst() }
                    continue
                }
                do { try await Task.sleep(for: .milliseconds(backoffMs)) } catch { return }
                backoffMs = min(backoffMs * 2, max)
            }
        }
    }

    private func send(_ push: PendingPush) async -> Attempt {
        do {
            let unread = try await shared.database.pushActions.unreadRooms(of: pusher.user)
            guard var request = HTTPClientRequest(method: .post, url: pusher.url,
                                                  headers: ["Content-Type": "application/json"]) else {
                return .failed
            }
            request.body = push.body(for: pusher, unread: unread).encoded()
            let response = try await shared.httpClient().buffered(request)
            guard (200..<300).contains(response.status) else {
                shared.failed.add(1, ordering: .relaxed)
                logger.info("push gateway \(pusher.url) answered \(response.status)")
                return .failed
            }
            shared.delivered.add(1, ordering: .relaxed)
            let rejected = (try? JSON.parse(response.body))?["rejected"]?.arrayValue ?? []
            return rejected.contains(.string(pusher.pushkey)) ? .rejected : .delivered
        } catch {
            shared.failed.add(1, ordering: .relaxed)
            logger.info("push to \(pusher.url) failed: \(error)")
            return .failed
        }
    }

    func deactivate() async {
        stopped = true
        running?.cancel()
        queue = []
    }
}
