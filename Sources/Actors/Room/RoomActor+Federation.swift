import Matrix
import Persistence

/// How a remote event lands on the room: the forward extremities after it and, when the
/// room's state is not simply the state before it plus itself, the state to hold.
struct RemoteApplication: Sendable {
    var extremities: [EventID]
    var resolvedState: AuthState?
    /// The event's own state (the state before it plus itself) when it is not `resolvedState`.
    var eventState: RoomEventStore.StateGroup? = nil
    /// The event was stored as an outlier (fetched for another's auth) and now joins the timeline.
    var replacesOutlier = false
}

/// What became of one PDU received over federation (server-server API, "Checks performed
/// on receipt of a PDU").
public enum ReceivedPDUOutcome: Sendable, Equatable {
    /// Persisted, in the timeline, published to local long-polls.
    case persisted
    /// Already known; nothing done.
    case duplicate
    /// Authorised by the state before it but not by the room's current state: not applied.
    case softFailed(String)
    /// Failed a check against its auth events or the state before it: not applied.
    case rejected(String)
}

/// The federation side of the room's single writer: remote events enter through the same
/// apply/persist/publish path as local ones, one batch at a time, never concurrently with a
/// local send (the `draining` flag is the writer's lock). Called by the App's federation
/// handlers (`/send`, `send_join`, `send_leave`, `invite`) and by the joining side.
extension RoomActor {
    /// Events the resolution of branches may read at most (their auth chains included).
    static let maxResolutionEvents = 20_000

    /// Waits until no batch is being written, then holds the writer.
    func beginExclusive() async throws {
        while draining { await withCheckedContinuation { drainWaiters.append($0) } }
        guard !closed else { throw RoomActorUnavailable() }
        draining = true
    }

    /// Releases the writer; local sends queued meanwhile start draining.
    func endExclusive() {
        finishDrain()
        if !queue.isEmpty && !draining {
            draining = true
            Task { await self.drain() }
        }
    }

    // MARK: Reads for federation

    /// The servers with joined members in the current state (the destinations of the room's
    /// new events; `FederationDestinations` computes the same from published state).
    public var joinedServers: Set<ServerName> {
        var servers: Set<ServerName> = []
        for (key, pdu) in room?.state ?? [:] where key.type == EventType.roomMember && pdu.membership == MembershipState.join.rawValue {
            if let user = try? UserID(parsing: key.stateKey) { servers.insert(user.serverName) }
        }
        return servers
    }

    /// The forward extremities (the latest events of the room); empty if the room does not exist.
    public var forwardExtremities: [EventID] { room?.extremities ?? [] }

    /// An unsigned event for another server to complete (`make_join`, `make_leave`,
    /// `make_knock`): prev events, auth events and depth from the current state, checked
    /// against the auth rules. `M_FORBIDDEN` if the current state does not allow it.
    public func eventTemplate(type: String, sender: UserID, stateKey: String?, content: [String: JSON]) throws -> [String: JSON] {
        guard let working = room else { throw MatrixError(.notFound, "Unknown room") }
        let builder = EventBuilder(roomVersion: working.version, signingKey: context.signingKey, serverName: context.serverName)
        let pdu = try builder.build(type: type, sender: sender, stateKey: stateKey, content: content, roomID: roomID,
                                    prevEvents: Self.prevEvents(citing: working.extremities), depth: working.maxDepth + 1,
                                    originServerTS: currentTimeMillis(), state: working.state)
        var json = pdu.json
        for field in ["signatures", "hashes", "unsigned"] { json[field] = nil }
        if working.version.eventIDFormat != .opaqueWithDomain { json["event_id"] = nil }
        return json
    }

    // MARK: Remote events

    /// Applies PDUs received over federation, in the given order (each one's prev events
    /// already stored or earlier in the list; the caller fetched missing ones). Each is
    /// checked against its auth events, then against the state before it (the state at its
    /// prev events, resolved when they differ), then soft-failed against the current state;
    /// an accepted one is persisted with its state group, moves the forward extremities and
    /// is published exactly like a local event.
    ///
    /// `statesAtPrevs` gives, for prev events stored without a state of their own (outliers,
    /// e.g. fetched with `/event`), the state before them as another server answered
    /// (`/state_ids` at them); every event it names must be stored (as outliers at least).
    /// `statesBefore` gives the state before events whose prev events could not be had (a
    /// gap, fetched with `/state_ids`; server-server API, "If the missing events cannot be retrieved").
    public func receive(_ pdus: [PDU], statesAtPrevs: [EventID: StateMap] = [:],
                        statesBefore: [EventID: [PDU]] = [:]) async throws -> [EventID: ReceivedPDUOutcome] {
        try await beginExclusive()
        defer { endExclusive() }
        var outcomes: [EventID: ReceivedPDUOutcome] = [:]
        for pdu in pdus {
            outcomes[pdu.eventID] = try await receiveOne(pdu, supplied: statesAtPrevs, given: statesBefore[pdu.eventID])
        }
        return outcomes
    }

    static func stateMap(_ entries: [RoomEventStore.StateEntry]) -> StateMap {
        var map: StateMap = [:]
        for entry in entries {
            if let id = try? EventID(parsing: entry.eventID) { map[StateKey(entry.type, entry.stateKey)] = id }
        }
        return map
    }

    /// Resolves state maps with the room version's algorithm, loading the events they name
    /// and their auth chains (bounded), and returns the resolved state as events.
    func resolveStates(_ sets: [StateMap], version: RoomVersion, known: [PDU] = []) async throws -> AuthState {
        var cache: [EventID: PDU] = [:]
        for pdu in known { cache[pdu.eventID] = pdu }
        var wanted = Set(sets.flatMap(\.values)).filter { cache[$0] == nil }
        for pdu in known { for auth in pdu.authEvents where cache[auth] == nil { wanted.insert(auth) } }
        // Rejected events are ignored as auth events (server-server API, "Rejection").
        var rejected: Set<EventID> = []
        // Auth chains, breadth first, bounded.
        while !wanted.isEmpty && cache.count < Self.maxResolutionEvents {
            let ids = wanted.map(\.rawValue)
            let (rows, refused) = try await context.database.read { db in
                (try RoomEventStore.events(db, ids: ids), try EventStateStore.rejected(db, ids: ids))
            }
            for id in refused { if let id = try? EventID(parsing: id) { rejected.insert(id) } }
            wanted = []
            for row in rows {
                guard let id = try? EventID(parsing: row.eventID),
                      let pdu = try? PDU(bytes: row.json, roomVersion: version, eventID: id) else { continue }
                cache[id] = pdu
                for auth in pdu.authEvents where cache[auth] == nil { wanted.insert(auth) }
            }
            if rows.isEmpty { break }
        }
        let resolved: StateMap
        if sets.count == 1 {
            resolved = sets[0]
        } else {
            let snapshot = cache
            resolved = try StateResolution.resolve(sets, roomVersion: version, rejected: rejected) { snapshot[$0] }
        }
        var state: AuthState = [:]
        for (key, id) in resolved {
            if let pdu = cache[id] { state[key] = pdu }
        }
        return state
    }

    // MARK: Joining a room of another server

    /// Makes this server resident in a room it joined through another server (`send_join`):
    /// `state` (the state before the join) and `authChain` are stored as outliers (no
    /// stream position in the timeline: negative positions), then `join` is persisted with
    /// a full state group, becomes the only forward extremity and is published. The caller
    /// verified signatures, hashes and the auth of every event. If the room is already
    /// resident the join is received like any remote event.
    public func becomeResident(version: RoomVersion, state: [PDU], authChain: [PDU], join: PDU) async throws -> ReceivedPDUOutcome {
        if room != nil { return try await receive([join])[join.eventID] ?? .duplicate }
        try await beginExclusive()
        defer { endExclusive() }
        guard room == nil else { throw RoomActorUnavailable() }
        var before: AuthState = [:]
        for pdu in state { if let entry = pdu.stateEntry { before[entry] = pdu } }
        guard before[.create] != nil else { throw MatrixError(.badJSON, "The state of the room has no m.room.create") }
        do { try EventAuth.authorize(join, against: before) } catch { return .rejected(error.description) }
        try await storeOutliers(authChain + state, excluding: join.eventID, version: version, state: Set(before.values.map(\.eventID)))
        var working = RoomState(version: version, state: before, stateGroup: 0, stateDeltaDepth: 0, extremities: [],
                                maxDepth: state.map(\.depth).max() ?? 0, lastStreamOrdering: 0, recent: [], recentFloor: 0)
        let allocation = context.events.allocate()
        let write = apply(join, at: allocation.position, to: &working, fullSnapshot: true,
                          remote: RemoteApplication(extremities: [join.eventID], resolvedState: nil))
        let (events, _) = try await persist([write], allocations: [allocation], createdTS: currentTimeMillis(), version: version)
        makeVisible([write], working, [allocation])
        room = working
        publish(events, working)
        return .persisted
    }

    /// Writes events known only through another server's answer: no place in the timeline
    /// (a random negative position, never after any sync token), no state group of their own.
    /// Stores events fetched to check others (missing auth events) as outliers of this room:
    /// not in the timeline, not extremities, no state. Only events of this room are kept.
    public func storeOutliers(_ pdus: [PDU]) async throws {
        guard let version = room?.version else { throw MatrixError(.notFound, "Unknown room") }
        try await storeOutliers(pdus.filter { $0.effectiveRoomID == roomID && $0.roomVersion.id == version.id },
                                excluding: nil, version: version)
    }

    private func storeOutliers(_ pdus: [PDU], excluding: EventID?, version: RoomVersion, state: Set<EventID> = []) async throws {
        let key = roomID.rawValue
        let room = roomID
        var generator = SystemRandomNumberGenerator()
        var rows: [RoomEventStore.EventRow] = []
        var seen: Set<EventID> = excluding.map { [$0] } ?? []
        var memberships: [MembershipStore.Membership] = []
        for pdu in pdus where seen.insert(pdu.eventID).inserted {
            let position = -Int64(generator.next(upperBound: UInt64(1) << 62)) - 1
            let bytes = pdu.bytes ?? JSON.object(pdu.json).encoded()
            let client = ClientEventForm.json(of: pdu.json, eventID: pdu.eventID, roomID: room, unsigned: [:]).encoded()
            rows.append(RoomEventStore.EventRow(streamOrdering: position, eventID: pdu.eventID.rawValue, roomID: key, type: pdu.type,
                                                stateKey: pdu.stateKey, sender: pdu.sender.rawValue, depth: pdu.depth,
                                                stateGroup: 0, json: bytes, clientJSON: client))
            if state.contains(pdu.eventID), let stateKey = pdu.stateKey, let membership = pdu.membership,
               let user = try? UserID(parsing: stateKey), user.serverName != context.serverName {
                // Remote members of the state joined: who is in which room (the destinations'
                // rooms per server read these rows). Local users' rows come from their own events.
                memberships.append(MembershipStore.Membership(roomID: key, userID: stateKey, membership: membership,
                                                              eventID: pdu.eventID.rawValue, streamOrdering: position))
            }
        }
        let members = memberships
        let ids = rows.map(\.eventID)
        let outliers = rows
        try await context.database.write { db in
            let existing = Set(try RoomEventStore.events(db, ids: ids).map(\.eventID))
            for row in outliers where !existing.contains(row.eventID) { try RoomEventStore.insertEvent(db, row) }
            for membership in members { try MembershipStore.setMembership(db, membership) }
        }
    }
}
