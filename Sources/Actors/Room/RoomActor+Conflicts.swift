import Matrix
import Persistence

/// The checks a received PDU goes through and where it lands in the room's DAG (server-server
/// API, "Checks performed on receipt of a PDU", "Rejection", "Soft failure"; room versions,
/// "State resolution"). Synapse (`handlers/federation_event.py`) is the reference behaviour:
///
/// - the state before an event is the resolution of the states after its prev events (the
///   current state when its prev events are exactly the forward extremities); a prev event
///   that was rejected contributes the state before it, a soft-failed one the state after it;
/// - an event failing its auth events or the state before it is *rejected*: stored (so that
///   it is known, and never fetched or accepted again) but never state, never in the
///   timeline, never a forward extremity, and ignored as an auth event by later events and
///   by state resolution;
/// - an event allowed by the state before it but not by the current state is *soft-failed*:
///   stored with its state, usable as a prev or auth event by later events, but not in the
///   timeline nor a forward extremity;
/// - an accepted event becomes a forward extremity in place of its prev events, and the
///   room's current state is the resolution of the states after *all* forward extremities.
extension RoomActor {
    /// Prev events a new local event cites at most (Synapse cites the 10 newest extremities).
    static let maxPrevEvents = 10

    /// The prev events of a new local event: the newest `maxPrevEvents` forward extremities,
    /// so that an event sent while the room has several merges them (bounded).
    static func prevEvents(citing extremities: [EventID]) -> [EventID] {
        Array(extremities.suffix(maxPrevEvents))
    }

    /// What the store holds about the events one PDU names.
    struct Neighbourhood: Sendable {
        var rows: [String: RoomEventStore.EventRow] = [:]
        var rejected: Set<String> = []
        /// The state after each prev event that has one here, with its group.
        var prevStates: [String: (group: Int64, entries: [RoomEventStore.StateEntry])] = [:]
        /// The event itself is stored with a state of its own (soft-failed) or rejected.
        var knownInDAG = false
    }

    /// The state before an event: the map of events and, when it is exactly a stored group,
    /// that group.
    struct StateBefore {
        var state: AuthState
        var group: Int64?
    }

    /// `withPrevStates`: false when the state before the event is the current state (its
    /// prev events are the forward extremities), which spares reading their states.
    func loadNeighbourhood(_ pdu: PDU, withPrevStates: Bool) async throws -> Neighbourhood {
        let ids = Array(Set(pdu.authEvents + pdu.prevEvents + [pdu.eventID]).map(\.rawValue))
        let prevs = Set(pdu.prevEvents.map(\.rawValue))
        let own = pdu.eventID.rawValue
        let key = roomID.rawValue
        return try await context.database.read { db in
            var near = Neighbourhood()
            let rows = try RoomEventStore.events(db, ids: ids).filter { $0.roomID == key }
            for row in rows { near.rows[row.eventID] = row }
            near.rejected = try EventStateStore.rejected(db, ids: rows.map(\.eventID))
            let recorded = try EventStateStore.stateGroups(db, ids: rows.map(\.eventID).filter { prevs.contains($0) || $0 == own })
            near.knownInDAG = recorded[own] != nil || near.rejected.contains(own)
            for row in rows where withPrevStates && prevs.contains(row.eventID) {
                // Outliers (negative positions, no recorded state) have no state here.
                guard let group = recorded[row.eventID] ?? (RoomEventStore.isTimeline(row.streamOrdering) ? row.stateGroup : nil) else { continue }
                near.prevStates[row.eventID] = (group, try RoomEventStore.state(db, group: group))
            }
            return near
        }
    }

    func receiveOne(_ pdu: PDU, supplied: [EventID: StateMap], given: [PDU]? = nil) async throws -> ReceivedPDUOutcome {
        guard let working = room else { throw MatrixError(.notFound, "Unknown room") }
        let version = working.version
        guard pdu.roomVersion.id == version.id, pdu.effectiveRoomID == roomID else {
            return .rejected("event of another room or room version")
        }
        let linear = given == nil && Set(pdu.prevEvents) == Set(working.extremities)
        let near = try await loadNeighbourhood(pdu, withPrevStates: !linear)
        let stored = near.rows[pdu.eventID.rawValue]
        // A plain outlier (fetched for another event's auth) arriving for real joins the DAG.
        if stored != nil && (near.knownInDAG || RoomEventStore.isTimeline(stored!.streamOrdering)) { return .duplicate }
        var authEvents: [PDU] = []
        for id in pdu.authEvents {
            // Not stored as rejected: the auth event may be fetched later.
            guard let row = near.rows[id.rawValue] else { return .rejected("unknown auth event \(id)") }
            authEvents.append(try PDU(bytes: row.json, roomVersion: version, eventID: id))
        }
        let before: StateBefore?
        if linear {
            before = StateBefore(state: working.state, group: working.stateGroup)
        } else if let given {
            before = StateBefore(state: Self.authState(given), group: nil)
        } else {
            before = try await stateBefore(pdu, near: near, supplied: supplied, version: version)
        }
        // Auth rules: "If there are entries which were themselves rejected ..., reject."
        if let refused = pdu.authEvents.first(where: { near.rejected.contains($0.rawValue) }) {
            return try await reject(pdu, "auth event \(refused) was rejected", before: before, version: version)
        }
        do { try EventAuth.checkAuthEvents(pdu, authEvents: authEvents) } catch {
            return try await reject(pdu, error.description, before: before, version: version)
        }
        guard let before else { return .rejected("the state before the event is unknown: none of its prev events has a state here") }
        do { try EventAuth.authorize(pdu, against: before.state) } catch {
            return try await reject(pdu, error.description, before: before, version: version)
        }
        // A redaction of another room's event is held aside, out of every timeline, as
        // Synapse ignores it (SyTest "An event which redacts an event in a different room
        // should be ignored"); a redaction never applies across rooms anyway (`persist`).
        if let target = pdu.redacts, pdu.stateEntry == nil,
           let row = try await context.database.read({ db in try RoomEventStore.event(db, eventID: target.rawValue) }),
           row.roomID != roomID.rawValue {
            try await storeAside(pdu, state: before, rejected: nil, version: version)
            return .softFailed("redacts an event of another room")
        }
        var after = before.state
        if let entry = pdu.stateEntry { after[entry] = pdu }
        if !linear {
            do {
                try EventAuth.authorize(pdu, against: working.state)
            } catch {
                // Soft failure: kept with its state (later events may cite it) but never in
                // the timeline nor a forward extremity (server-server API, "Soft failure").
                let own = pdu.stateEntry == nil ? before : StateBefore(state: after, group: nil)
                try await storeAside(pdu, state: own, rejected: nil, version: version)
                return .softFailed(error.description)
            }
        }
        return try await accept(pdu, after: after, linear: linear, replacesOutlier: stored != nil, version: version)
    }

    /// The state events of a state another server gave (`/state_ids` at a gap), by key.
    static func authState(_ events: [PDU]) -> AuthState {
        var state: AuthState = [:]
        for event in events { if let key = event.stateEntry { state[key] = event } }
        return state
    }

    /// The resolution of the states after the prev events known here with a state (the ones
    /// `supplied` by the caller included); nil when none is.
    func stateBefore(_ pdu: PDU, near: Neighbourhood, supplied: [EventID: StateMap],
                     version: RoomVersion) async throws -> StateBefore? {
        var sets: [StateMap] = []
        var groups: [Int64?] = []
        for prev in pdu.prevEvents {
            if let entries = near.prevStates[prev.rawValue] {
                sets.append(Self.stateMap(entries.entries))
                groups.append(entries.group)
            } else if var map = supplied[prev], let row = near.rows[prev.rawValue] {
                // The state before the prev event, plus the prev event unless it was rejected.
                if let stateKey = row.stateKey, !near.rejected.contains(prev.rawValue) { map[StateKey(row.type, stateKey)] = prev }
                sets.append(map)
                groups.append(nil)
            }
        }
        guard !sets.isEmpty else { return nil }
        let state = try await resolveStates(sets, version: version)
        return StateBefore(state: state, group: Set(groups).count == 1 ? groups[0] : nil)
    }

    /// Persists an accepted event: a forward extremity in place of its prev events, in the
    /// timeline, published; the room's state becomes the resolution of the states after all
    /// forward extremities (server-server API, "Room State Resolution").
    func accept(_ pdu: PDU, after: AuthState, linear: Bool, replacesOutlier: Bool, version: RoomVersion) async throws -> ReceivedPDUOutcome {
        guard var working = room else { throw MatrixError(.notFound, "Unknown room") }
        let others = working.extremities.filter { !pdu.prevEvents.contains($0) }
        var current: AuthState?
        var own: RoomEventStore.StateGroup?
        if !linear || !others.isEmpty {
            current = others.isEmpty ? after : try await resolveExtremities(others, with: after, version: version)
            if let current, current.mapValues(\.eventID) != after.mapValues(\.eventID) {
                // The event's own state differs from the room's: later events citing it need it.
                own = fullGroup(after, id: Self.asidePosition())
            }
        }
        let remote = RemoteApplication(extremities: others + [pdu.eventID], resolvedState: current, eventState: own,
                                       replacesOutlier: replacesOutlier)
        let allocation = context.events.allocate()
        let write = apply(pdu, at: allocation.position, to: &working, fullSnapshot: false, remote: remote)
        let (events, _) = try await persist([write], allocations: [allocation], createdTS: nil, version: version)
        makeVisible([write], working, [allocation])
        room = working
        publish(events, working)
        return .persisted
    }

    /// The resolution of `after` (the state after the new event) and the states after the
    /// other forward extremities.
    func resolveExtremities(_ others: [EventID], with after: AuthState, version: RoomVersion) async throws -> AuthState {
        let ids = others.map(\.rawValue)
        let key = roomID.rawValue
        let states = try await context.database.read { db -> [[RoomEventStore.StateEntry]] in
            let recorded = try EventStateStore.stateGroups(db, ids: ids)
            var states: [[RoomEventStore.StateEntry]] = []
            for row in try RoomEventStore.events(db, ids: ids) where row.roomID == key {
                guard let group = recorded[row.eventID] ?? (RoomEventStore.isTimeline(row.streamOrdering) ? row.stateGroup : nil) else { continue }
                states.append(try RoomEventStore.state(db, group: group))
            }
            return states
        }
        let sets = [after.mapValues(\.eventID)] + states.map(Self.stateMap)
        return try await resolveStates(sets, version: version, known: Array(after.values) + (room.map { Array($0.state.values) } ?? []))
    }

    /// Rejects an event and stores it as rejected (server-server API, "Rejection"), with the
    /// state before it when known: a later event citing it as a prev event starts from there.
    func reject(_ pdu: PDU, _ reason: String, before: StateBefore?, version: RoomVersion) async throws -> ReceivedPDUOutcome {
        try await storeAside(pdu, state: before, rejected: reason, version: version)
        return .rejected(reason)
    }

    /// Stores a rejected or soft-failed event outside the timeline (a negative position, as
    /// outliers), with its state recorded (`EventStateStore`): an existing group when the
    /// state is one, else a new full group.
    func storeAside(_ pdu: PDU, state: StateBefore?, rejected reason: String?, version: RoomVersion) async throws {
        let key = roomID.rawValue
        let position = Self.asidePosition()
        let bytes = pdu.bytes ?? JSON.object(pdu.json).encoded()
        let client = ClientEventForm.json(of: pdu.json, eventID: pdu.eventID, roomID: roomID, unsigned: [:]).encoded()
        let row = RoomEventStore.EventRow(streamOrdering: position, eventID: pdu.eventID.rawValue, roomID: key, type: pdu.type,
                                          stateKey: pdu.stateKey, sender: pdu.sender.rawValue, depth: pdu.depth,
                                          stateGroup: 0, json: bytes, clientJSON: client)
        let newGroup = state.flatMap { $0.group == nil ? fullGroup($0.state, id: position) : nil }
        let group = state?.group ?? newGroup?.id
        try await context.database.write { db in
            try EventStateStore.deleteOutlier(db, eventID: row.eventID)
            try RoomEventStore.insertEvent(db, row)
            if let newGroup { try RoomEventStore.insertStateGroup(db, newGroup) }
            if let group { try EventStateStore.setStateGroup(db, eventID: row.eventID, roomID: key, group: group) }
            if let reason { try EventStateStore.markRejected(db, eventID: row.eventID, roomID: key, reason: reason) }
        }
    }

    func fullGroup(_ state: AuthState, id: Int64) -> RoomEventStore.StateGroup {
        RoomEventStore.StateGroup(id: id, roomID: roomID.rawValue, prevGroup: nil, deltaDepth: 0,
                                  entries: state.map { RoomEventStore.StateEntry(type: $0.key.type, stateKey: $0.key.stateKey,
                                                                                 eventID: $0.value.eventID.rawValue) })
    }

    /// A random negative position (events out of the timeline) or group id (states of
    /// events beside it): never after any sync token, never a timeline group's id.
    static func asidePosition() -> Int64 {
        var generator = SystemRandomNumberGenerator()
        return -Int64(generator.next(upperBound: UInt64(1) << 62)) - 1
    }
}
