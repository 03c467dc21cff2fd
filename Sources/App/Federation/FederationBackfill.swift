import Actors
import Matrix
import Persistence
import Synchronization

/// History fetched from the other servers of a room (server-server API, "Backfilling and
/// retrieving missing events"), for a local user paginating `/messages` past what this server
/// holds (a room joined through `send_join` starts at the join). One run asks one server for
/// `GET /backfill` from the room's backward extremities (prev events of its oldest timeline
/// events that are not in the timeline), trying the room's servers in turn; verifies each
/// event's signatures and content hash, fetches missing auth events, fetches the state before
/// events whose prev events stay unknown (`FederationGaps`), and hands the batch to
/// `RoomActor.storeBackfill`. Runs of one room are coalesced. Owned by `MyelinApp`; called
/// by `Messages`.
final class FederationBackfill: Sendable {
    /// Events asked per `/backfill` request (Synapse asks 100 too).
    static let eventsPerRequest = 100
    /// Backfill requests one `/messages` call may cause.
    static let maxRequestsPerPage = 3
    /// Servers tried per run before giving up.
    static let maxServersTried = 3
    /// `v` event ids per request (a wide DAG ends a batch with many branches: every one not
    /// asked for is a hole), and oldest events examined for them.
    static let maxExtremities = 50
    static let examinedEvents = 200
    /// Gaps inside one batch whose state is fetched (`/state_ids`): the ends of concurrent
    /// branches at the bottom of a batch.
    static let maxStateFetches = 10
    /// How far above the oldest event held the events whose missing prev events are asked for go.
    static let maxDepthBand: Int64 = 50

    /// After a run that stored nothing, the room's next run waits this long: a client paging
    /// at the bottom of a room whose servers have nothing (more) to give must not make every
    /// `/messages` call cost remote requests.
    static let fruitlessRetryMs: Int64 = 30_000

    private let running = Mutex<[RoomID: Task<Int, Never>]>([:])
    /// When each room's last run stored nothing (pruned past `fruitlessRetryMs`).
    private let fruitless = Mutex<[RoomID: Int64]>([:])

    /// Runs one backfill of the room (or waits for the one running) and returns the events
    /// it stored; 0 when there is nothing older, no server answered, or federation is off.
    func backfill(_ roomID: RoomID, app: MyelinApp) async -> Int {
        let now = Clock.nowMilliseconds()
        if let last = fruitless.withLock({ $0[roomID] }), now - last < Self.fruitlessRetryMs { return 0 }
        let task = running.withLock { running -> Task<Int, Never> in
            if let task = running[roomID] { return task }
            let task = Task { await Self.run(roomID, app: app) }
            running[roomID] = task
            return task
        }
        let stored = await task.value
        running.withLock { running in if running[roomID] == task { running[roomID] = nil } }
        fruitless.withLock { fruitless in
            if stored > 0 { fruitless[roomID] = nil; return }
            if fruitless.count >= 10_000 { fruitless = fruitless.filter { now - $0.value < Self.fruitlessRetryMs } }
            fruitless[roomID] = now
        }
        return stored
    }

    /// The prev events missing from the timeline of the room's oldest timeline events (those
    /// within `maxDepthBand` of the oldest one: concurrent branches end unevenly, while a gap
    /// far above the bottom is `get_missing_events`' business, not history's), and the depth
    /// nothing backfilled may reach. None once the create event is in the timeline: the
    /// history held here is then complete.
    static func backwardExtremities(_ roomID: RoomID, version: RoomVersion, app: MyelinApp) async throws -> ([EventID], Int64) {
        let key = roomID.rawValue
        let rows = try await app.database.read { db in
            try RoomEventStore.oldestTimelineEvents(db, roomID: key, limit: examinedEvents)
        }
        guard let bottom = rows.first, bottom.type != EventType.roomCreate else { return ([], 0) }
        let oldest = rows.filter { $0.depth <= bottom.depth + maxDepthBand }
        var prevs: [EventID] = []
        for row in oldest {
            guard let id = try? EventID(parsing: row.eventID), let pdu = try? PDU(bytes: row.json, roomVersion: version, eventID: id) else {
                continue
            }
            for prev in pdu.prevEvents where !prevs.contains(prev) { prevs.append(prev) }
        }
        let ids = prevs.map(\.rawValue)
        let present = try await app.database.read { db in
            Set(try RoomEventStore.events(db, ids: ids).filter { RoomEventStore.isTimeline($0.streamOrdering) }.map(\.eventID))
        }
        let missing = prevs.filter { !present.contains($0.rawValue) }
        return (Array(missing.prefix(maxExtremities)), oldest.map(\.depth).max() ?? bottom.depth)
    }

    /// The servers to ask, best first: the room's creator's server when the room id names
    /// it, then the other servers with joined members.
    static func candidates(_ roomID: RoomID, actor: RoomActor, app: MyelinApp) async -> [ServerName] {
        let local = app.localServer
        var servers = await actor.joinedServers.filter { $0 != local }.sorted { $0.rawValue < $1.rawValue }
        if let origin = roomID.serverName, let index = servers.firstIndex(of: origin) {
            servers.remove(at: index)
            servers.insert(origin, at: 0)
        }
        return Array(servers.prefix(maxServersTried))
    }

    static func run(_ roomID: RoomID, app: MyelinApp) async -> Int {
        guard app.federationLink.isConnected else { return 0 }
        do {
            let actor = try await app.roomService.existingRoom(roomID)
            guard let version = await actor.version else { return 0 }
            let (extremities, ceilingDepth) = try await backwardExtremities(roomID, version: version, app: app)
            guard !extremities.isEmpty else { return 0 }
            for server in await candidates(roomID, actor: actor, app: app) {
                do {
                    let batch = try await fetch(extremities, from: server, roomID: roomID, version: version, maxDepth: ceilingDepth, app: app)
                    guard !batch.isEmpty else { continue }
                    try await FederationInbound.fetchMissingAuthEvents(batch, actor: actor, roomID: roomID, version: version,
                                                                       origin: server, app: app)
                    let states = await FederationGaps.statesForGaps(batch, roomID: roomID, version: version, server: server,
                                                                    limit: maxStateFetches, actor: actor, app: app)
                    let outcome = try await actor.storeBackfill(BackfillBatch(events: batch, statesBefore: states))
                    app.logger.info("backfill: \(roomID) from \(server): \(outcome.stored) stored, \(outcome.rejected) rejected, \(outcome.skipped) skipped, \(outcome.known) known")
                    if outcome.stored > 0 { return outcome.stored }
                } catch {
                    app.logger.warning("backfill: \(roomID) from \(server) failed: \(error)")
                }
            }
        } catch {
            app.logger.warning("backfill: \(roomID) failed: \(error)")
        }
        return 0
    }

    /// One `GET /backfill` answer, verified: this room's events, shallower than `maxDepth`.
    static func fetch(_ extremities: [EventID], from server: ServerName, roomID: RoomID, version: RoomVersion, maxDepth: Int64,
                      app: MyelinApp) async throws -> [PDU] {
        let query = extremities.map { "v=" + FederationLink.segment($0.rawValue) }.joined(separator: "&")
        let path = "/_matrix/federation/v1/backfill/\(FederationLink.segment(roomID.rawValue))?\(query)&limit=\(eventsPerRequest)"
        let answer = try await app.federationLink.call(server, "GET", path)
        var events: [PDU] = []
        var seen: Set<EventID> = []
        for raw in (answer["pdus"]?.arrayValue ?? []).prefix(eventsPerRequest) {
            guard let pdu = try? await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing),
                  pdu.effectiveRoomID == roomID, pdu.depth < maxDepth, seen.insert(pdu.eventID).inserted else { continue }
            events.append(pdu)
        }
        return events
    }
}

extension Messages {
    /// A backwards page short of its limit at the oldest event held here: backfills and reads again,
    /// at most `FederationBackfill.maxRequestsPerPage` times. A page still short when that
    /// budget is spent keeps an `end` token, so the client asks again.
    static func withBackfill(_ first: Page, _ request: PageRequest, roomID: RoomID, app: MyelinApp) async throws -> Page {
        var page = first
        var requests = 0
        while page.reachedBottom && requests < FederationBackfill.maxRequestsPerPage {
            requests += 1
            guard await app.backfill.backfill(roomID, app: app) > 0 else { return page }
            page = try await app.database.read { db in try readPage(db, request) }
        }
        if page.end == nil && requests == FederationBackfill.maxRequestsPerPage { page.end = page.cursor }
        return page
    }
}
