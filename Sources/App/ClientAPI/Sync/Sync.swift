import Transport
import Actors
import Matrix
import Persistence
import Synchronization

/// `GET /sync` (spec: client-server API, "Syncing"): initial, incremental and long-poll.
///
/// A caught-up client's long-poll registers with the user's notifier (`NotifierFanout`)
/// before reading positions, wakes with a token when a stream concerning the user
/// advances, and builds the response from memory: memberships from the `MembershipService`,
/// new events from each room actor's ring of recent events as the `TimelineService` holds it
/// (stored client bytes, concatenated), typing from the `TypingService`, unread counts from
/// `UnreadCounts`. The store is read only for
/// what memory does not hold (initial syncs, gaps larger than the ring, receipts and
/// account data when their streams moved). Identical concurrent requests share one
/// computation (`SyncResponseCache`), as Synapse's response cache does. What outlives a
/// request is in `SyncService`.
enum Sync {
    static let defaultTimelineLimit = 10
    static let maxTimeout: Int64 = 300_000

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, "/sync", sync)
    }

    /// One sync request's parameters. A class: every async frame of a sync holds its request
    /// across a suspension (a long-poll's for the whole wait), a reference instead of ~200
    /// bytes each.
    final class Request: Sendable, Hashable {
        let user: UserID
        let device: String
        let since: StreamToken?
        let timeoutMs: Int64
        /// The filter's identity: parsed filters are cached and shared, so equal filters of
        /// one user are one object (hashing an identity, not the filter's text).
        let filter: ObjectIdentifier?
        let fullState: Bool

        init(user: UserID, device: String, since: StreamToken?, timeoutMs: Int64, filter: ObjectIdentifier?, fullState: Bool) {
            self.user = user
            self.device = device
            self.since = since
            self.timeoutMs = timeoutMs
            self.filter = filter
            self.fullState = fullState
        }

        static func == (a: Request, b: Request) -> Bool {
            a === b || (a.user == b.user && a.device == b.device && a.since == b.since && a.timeoutMs == b.timeoutMs
                        && a.filter == b.filter && a.fullState == b.fullState)
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(user)
            hasher.combine(device)
            hasher.combine(since)
            hasher.combine(timeoutMs)
            hasher.combine(filter)
            hasher.combine(fullState)
        }
    }

    /// `GET /sync` (spec: "Syncing"). Kept small: its frame is held for the whole long-poll,
    /// so the parsing is done in `prepare`, whose frame is gone before the wait.
    static func sync(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let (request, filter, tracksPresence) = try await prepare(context)
        defer { if tracksPresence { app.sync.presence.syncEnded(request.user) } }
        if request.since == nil || request.fullState { return try await everything(app, request, filter) }
        let bytes = try await app.sync.responses.run(request) {
            try await app.sync.respond(app, request, filter).encoded(for: request, filter)
        }
        return .rawJSON(bytes)
    }

    /// An initial or full-state sync, off the event loops: it may compute for tens of
    /// milliseconds between suspensions (every room's state, encoded), which with
    /// `transport.handlers: loops` would hold up the other connections of the loop that read
    /// it. Swift's global executor runs it; the answer goes back to the loop as any other.
    @inline(never)
    private static func everything(_ app: MyelinApp, _ request: Request, _ filter: SyncFilter) async throws -> HTTPResponse {
        let bytes = try await withTaskExecutorPreference(globalConcurrentExecutor) {
            try await app.sync.responses.run(request) {
                try await app.sync.respond(app, request, filter).encoded(for: request, filter)
            }
        }
        return .rawJSON(bytes)
    }

    /// The request's parameters and filter, with the user's presence brought online when the
    /// sync keeps it so (the caller ends that with `syncEnded` when the third value is true).
    @inline(never)
    private static func prepare(_ context: RequestContext) async throws -> (Request, SyncFilter, Bool) {
        let app = context.app
        let requester = try await context.requireUser()
        var since: StreamToken?
        var timeout: Int64 = 0
        var fullState = false
        // Only the short parameters are decoded; the filter (often long inline JSON) is kept
        // encoded as the cache key and decoded on a miss.
        let raw = context.rawQueryValues(["since", "timeout", "full_state", "filter", "set_presence"])
        if let text = raw[0] {
            since = try StreamToken(parsing: PercentDecoding.decode(Substring(text)) ?? text)
        }
        if let text = raw[1] {
            guard let value = Int64(text), value >= 0 else { throw MatrixError(.invalidParam, "timeout must be a non-negative integer") }
            timeout = min(value, maxTimeout)
        }
        switch raw[2] {
        case nil, "false"?: fullState = false
        case "true"?: fullState = true
        default: throw MatrixError(.invalidParam, "full_state must be true or false")
        }
        let setPresence = raw[4] ?? "online"
        guard SyncPresence.settable.contains(setPresence) else {
            throw MatrixError(.invalidParam, "set_presence must be online, offline or unavailable")
        }
        let filter = try await app.sync.filter(app, requester.userID, raw[3] ?? "")
        // A syncing client keeps its user online (unless it asks otherwise).
        let tracksPresence = app.configuration.presence.enabled && setPresence != "offline" && !requester.isGuest
        if tracksPresence { await app.sync.presence.syncStarted(app, requester.userID, wanted: setPresence) }
        let request = Request(user: requester.userID, device: requester.deviceID ?? "", since: since,
                              timeoutMs: timeout, filter: ObjectIdentifier(filter), fullState: fullState)
        return (request, filter, tracksPresence)
    }

    static func parseFilter(_ app: MyelinApp, _ user: UserID, _ text: String) async throws -> SyncFilter {
        let json: JSON
        if text.hasPrefix("{") {
            guard let value = try? JSON.parse(Array(text.utf8)), let object = value.objectValue else {
                throw MatrixError(.badJSON, "filter is not a JSON object")
            }
            try Filters.validate(filter: object)
            json = value
        } else {
            guard let id = Int64(text), id >= 0,
                  let stored = try await app.database.filters.filter(userID: user, filterID: id) else {
                throw MatrixError(.invalidParam, "No such filter \(text)")
            }
            json = try JSON.parse(Array(stored.utf8))
        }
        return SyncFilter(json)
    }
}

/// The parts of a sync filter the builder applies.
/// Immutable and shared: one instance per distinct filter (cached), referenced by every
/// waiting sync that uses it.
final class SyncFilter: Sendable {
    let timeline: EventFilter
    let state: EventFilter
    let ephemeral: EventFilter
    let roomAccountData: EventFilter
    let accountData: EventFilter
    let presence: EventFilter
    let rooms: EventFilter
    let includeLeave: Bool
    /// `event_fields`: each a path of keys (dots separate, `\.` is a literal dot).
    let eventFields: [[String]]?

    static let none = SyncFilter(nil)

    init(_ json: JSON?) {
        let room = json?["room"]
        timeline = EventFilter(room?["timeline"])
        state = EventFilter(room?["state"])
        ephemeral = EventFilter(room?["ephemeral"])
        roomAccountData = EventFilter(room?["account_data"])
        accountData = EventFilter(json?["account_data"])
        presence = EventFilter(json?["presence"])
        rooms = EventFilter(room)
        includeLeave = room?["include_leave"]?.boolValue ?? false
        eventFields = json?["event_fields"]?.arrayValue?.compactMap(\.stringValue).map(SyncFilter.fieldPath)
    }

    var lazyLoadMembers: Bool { state.lazyLoadMembers || timeline.lazyLoadMembers }

    static func fieldPath(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for character in text {
            if escaped { current.append(character); escaped = false; continue }
            if character == "\\" { escaped = true; continue }
            if character == "." { parts.append(current); current = ""; continue }
            current.append(character)
        }
        parts.append(current)
        return parts
    }

    /// Keeps only the `event_fields` of an encoded event (spec: "Filtering", event_fields).
    func applyingEventFields(_ bytes: [UInt8]) -> [UInt8] {
        guard let eventFields, let event = try? JSON.parse(bytes) else { return bytes }
        var out = JSON.object([:])
        for path in eventFields {
            var value: JSON? = event
            for key in path { value = value?[key] }
            guard let value else { continue }
            SyncFilter.set(&out, path[...], value)
        }
        return out.encoded()
    }

    private static func set(_ target: inout JSON, _ path: ArraySlice<String>, _ value: JSON) {
        guard let key = path.first, case .object(var object) = target else { return }
        if path.count == 1 {
            object[key] = value
        } else {
            var child = object[key] ?? .object([:])
            if case .object = child {} else { child = .object([:]) }
            set(&child, path.dropFirst(), value)
            object[key] = child
        }
        target = .object(object)
    }
}

/// Identical concurrent sync requests (a client retrying after its HTTP timeout) share one
/// computation: the first computes on its own task, the others wait for its result.
final class SyncResponseCache: Sendable {
    private typealias Waiter = CheckedContinuation<Result<[UInt8], any Error>?, Never>
    private let inFlight = Mutex<[Sync.Request: [Waiter]]>([:])

    func run(_ request: Sync.Request, _ compute: () async throws -> [UInt8]) async throws -> [UInt8] {
        while true {
            let owner = inFlight.withLock { map -> Bool in
                if map[request] != nil { return false }
                map[request] = []
                return true
            }
            if owner { break }
            let shared: Result<[UInt8], any Error>? = await withCheckedContinuation { (waiter: Waiter) in
                let joined = inFlight.withLock { map -> Bool in
                    guard map[request] != nil else { return false }
                    map[request]!.append(waiter)
                    return true
                }
                // The computation finished in between: try again.
                if !joined { waiter.resume(returning: nil) }
            }
            if let shared { return try shared.get() }
        }
        let result: Result<[UInt8], any Error>
        do { result = .success(try await compute()) } catch { result = .failure(error) }
        let waiters = inFlight.withLock { $0.removeValue(forKey: request) ?? [] }
        for waiter in waiters { waiter.resume(returning: result) }
        return try result.get()
    }
}
