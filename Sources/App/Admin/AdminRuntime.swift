import Actors
import Matrix
import Transport

/// `GET /_myelin/admin/api/runtime` (admins only): the live state of the actor pools and
/// the transport, for operators tuning the `actors:` settings and for the admin page's
/// Runtime view. Every number is a counter since start or a gauge now; rates (activations,
/// evictions and requests per second) and a windowed p99 are the difference of two samples
/// divided by the time between them (`monotonic_ms`), which the page computes. The same
/// numbers are on the Prometheus page (`prometheus`).
enum AdminRuntime {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_myelin/admin/api/runtime", runtime)
    }

    /// One actor pool: what its registry counted and the configured limits.
    struct Pool: Sendable {
        let kind: String
        let counters: RegistryCounters
        let limits: RegistryLimits
    }

    static func pools(_ app: MyelinApp) async -> [Pool] {
        func pool<K, M>(_ kind: String, _ registry: Registry<K, M>) async -> Pool {
            Pool(kind: kind, counters: await registry.counters, limits: await registry.limits)
        }
        let rooms = app.roomService
        return [
            await pool("rooms", rooms.rooms.registry),
            await pool("sessions", app.accounts.sessions.registry),
            await pool("federation_destinations", rooms.federation.registry),
            await pool("media_uploads", app.media.uploads),
            await pool("pushers", rooms.push.deliveries.registry),
        ]
    }

    static func seconds(_ duration: Duration) -> Int64 { duration.components.seconds }

    /// `GET /_myelin/admin/api/runtime`.
    static func runtime(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let app = context.app
        var actors: [String: JSON] = [:]
        for pool in await pools(app) {
            let c = pool.counters
            actors[pool.kind] = .object([
                "resident": .int(Int64(c.resident)),
                "activating": .int(Int64(c.activating)),
                "activations": .int(Int64(c.activations)),
                "joins": .int(Int64(c.joins)),
                "deactivations": .int(Int64(c.deactivations)),
                "evictions": .int(Int64(c.evictions)),
                "idle_deactivations": .int(Int64(c.idleDeactivations)),
                "failures": .int(Int64(c.failures)),
                "max_resident": .int(Int64(pool.limits.maxResident)),
                "idle_timeout_seconds": .int(seconds(pool.limits.idleTimeout)),
            ])
        }
        let fanout = app.roomService.fanout
        actors["notifiers"] = .object([
            "resident": .int(Int64(fanout.residentCount)),
            "activations": .int(Int64(fanout.notifiersCreated)),
            "deactivations": .int(Int64(fanout.notifiersRemoved)),
            "max_resident": .int(Int64(fanout.limits.maxResident)),
            "idle_timeout_seconds": .int(seconds(fanout.limits.idleTimeout)),
        ])
        let snap = app.metrics.snapshot()
        let open = app.openConnections.withLock { $0.reduce(0) { $0 + $1() } }
        let configured = app.configuration.actors
        func limits(_ pool: Configuration.ActorPool) -> JSON {
            ["max_resident": .int(Int64(pool.maxResident)), "idle_timeout_seconds": .int(Int64(pool.idleTimeoutSeconds))]
        }
        let now = Clock.nowMilliseconds()
        let body: JSON = .object([
            "server_name": .string(app.configuration.serverName),
            "version": .string(MyelinVersion.string),
            "now_ms": .int(now),
            "monotonic_ms": .int(Clock.monotonicNanoseconds() / 1_000_000),
            "uptime_seconds": .int(max(0, (now - app.startedAt) / 1000)),
            "actors": .object(actors),
            "sync": ["long_polls_held": .int(Int64(fanout.longPollsHeld))],
            "transport": .object([
                "requests_total": .int(Int64(snap.requests)),
                "requests_in_flight": .int(Int64(snap.inFlight)),
                "open_connections": .int(Int64(open)),
                "latency_micros_total": .int(Int64(snap.latencyMicros)),
                "p50_ms": quantileMs(0.50, snap.buckets),
                "p99_ms": quantileMs(0.99, snap.buckets),
                "latency_bucket_bounds_us": .array(Metrics.bucketBounds.map { .int(Int64($0)) }),
                "latency_bucket_counts": .array(snap.buckets.map { .int(Int64($0)) }),
            ]),
            "limits": .object([
                "rooms": limits(configured.rooms),
                "sessions": limits(configured.sessions),
                "notifiers": limits(configured.notifiers),
                "federation_destinations": limits(configured.federationDestinations),
                "media_uploads": limits(configured.mediaUploads),
                "room_recent_events": .int(Int64(configured.roomRecentEvents)),
            ]),
        ])
        return .json(body)
    }

    /// A quantile since start, in ms (the upper bound of its histogram bucket); null before
    /// the first request.
    static func quantileMs(_ q: Double, _ buckets: [Int]) -> JSON {
        guard let micros = Metrics.Snapshot.quantile(q, of: buckets) else { return .null }
        return .double(Double(micros) / 1000)
    }

    /// The pools and long-polls in Prometheus' text format, appended to the metrics page.
    static func prometheus(_ app: MyelinApp) async -> String {
        var out = ""
        let pools = await pools(app)
        let fanout = app.roomService.fanout
        func family(_ name: String, _ type: String, _ help: String, _ value: (Pool) -> Int, notifiers: Int) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for pool in pools { out += "\(name){kind=\"\(pool.kind)\"} \(value(pool))\n" }
            out += "\(name){kind=\"notifiers\"} \(notifiers)\n"
        }
        family("myelin_actors_resident", "gauge", "Actors resident now, per pool.", { $0.counters.resident },
               notifiers: fanout.residentCount)
        family("myelin_actors_max_resident", "gauge", "The configured limit of resident actors, per pool.",
               { $0.limits.maxResident }, notifiers: fanout.limits.maxResident)
        family("myelin_actor_activations_total", "counter", "Actor activations since start, per pool.",
               { $0.counters.activations }, notifiers: fanout.notifiersCreated)
        family("myelin_actor_deactivations_total", "counter", "Actor deactivations since start, per pool.",
               { $0.counters.deactivations }, notifiers: fanout.notifiersRemoved)
        out += "# HELP myelin_actor_evictions_total Deactivations forced by max_resident, per pool.\n"
        out += "# TYPE myelin_actor_evictions_total counter\n"
        for pool in pools { out += "myelin_actor_evictions_total{kind=\"\(pool.kind)\"} \(pool.counters.evictions)\n" }
        out += "# HELP myelin_actor_idle_deactivations_total Deactivations after idle_timeout_s, per pool.\n"
        out += "# TYPE myelin_actor_idle_deactivations_total counter\n"
        for pool in pools { out += "myelin_actor_idle_deactivations_total{kind=\"\(pool.kind)\"} \(pool.counters.idleDeactivations)\n" }
        out += "# HELP myelin_sync_long_polls Long-polling /sync requests waiting now.\n# TYPE myelin_sync_long_polls gauge\n"
        out += "myelin_sync_long_polls \(fanout.longPollsHeld)\n"
        return out
    }
}
