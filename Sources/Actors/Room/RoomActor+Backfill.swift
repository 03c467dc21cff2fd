import Matrix
import Persistence

/// History another server sent for this room (`GET /backfill`), verified by the caller
/// (signatures and content hashes), with the state before the events whose prev events are
/// neither in the batch nor in this server's timeline (fetched with `/state_ids`).
public struct BackfillBatch: Sendable {
    public var events: [PDU]
    public var statesBefore: [EventID: [PDU]]
    public init(events: [PDU], statesBefore: [EventID: [PDU]] = [:]) {
        self.events = events
        self.statesBefore = statesBefore
    }
}

/// What became of a backfilled batch: events placed in the history, refused by the auth
/// rules, left out for want of their state or auth events (a later backfill may retry them),
/// or already known.
public struct BackfillOutcome: Sendable, Equatable {
    public var stored = 0
    public var rejected = 0
    public var skipped = 0
    public var known = 0
    public init() {}
}

/// Backfilled history (server-server API, "Backfilling and retrieving missing events"): each
/// event is checked against its auth events and against the state before it (the state after
/// its prev events, resolved when they differ; or the state another server gave for a gap),
/// then stored below everything this server holds of any room (`RoomEventStore.backfillCeiling`),
/// oldest lowest, with a state group for the state after it, so that `/messages` pages into it
/// in order and history visibility applies as to live events. Nothing of the room's current
/// state, forward extremities, membership table or streams changes: backfilled events are
/// never news to `/sync` nor sent to other servers. Called by the App's `FederationBackfill`.
extension RoomActor {
    /// A batch's events in an order where every prev event in the batch comes first (by depth,
    /// then the origin's timestamp, then id, among the ready ones: concurrent events have no
    /// order of their own).
    static func topologicalOrder(_ pdus: [PDU]) -> [PDU] {
        var byID: [EventID: PDU] = [:]
        for pdu in pdus where byID[pdu.eventID] == nil { byID[pdu.eventID] = pdu }
        var waiting: [EventID: Int] = [:]
        var children: [EventID: [EventID]] = [:]
        for pdu in byID.values {
            let inBatch = Set(pdu.prevEvents).filter { byID[$0] != nil }
            waiting[pdu.eventID] = inBatch.count
            for prev in inBatch { children[prev, default: []].append(pdu.eventID) }
        }
        func before(_ a: PDU, _ b: PDU) -> Bool {
            if a.depth != b.depth { return a.depth < b.depth }
            if a.originServerTS != b.originServerTS { return a.originServerTS < b.originServerTS }
            return a.eventID.rawValue < b.eventID.rawValue
        }
        var ready = byID.values.filter { waiting[$0.eventID] == 0 }.sorted(by: before)
        var order: [PDU] = []
        while !ready.isEmpty {
            let next = ready.removeFirst()
            order.append(next)
            for child in children[next.eventID] ?? [] {
                waiting[child, default: 1] -= 1
                if waiting[child] == 0, let pdu = byID[child] {
                    let index = ready.firstIndex { before(pdu, $0) } ?? ready.endIndex
                    ready.insert(pdu, at: index)
                }
            }
        }
        // A cycle (impossible for genuine events) leaves its members out.
        return order
    }

    /// One event to write: where its state group comes from.
    private struct BackfillPlan {
        var pdu: PDU
        var clientJSON: [UInt8]
        /// The group of the state after it: a stored group, or the group another planned
        /// event (by index) starts.
        var group: GroupRef
        /// The group the event starts, if it starts one: its base group and entries (a full
        /// snapshot when there is no base).
        var newGroup: (base: GroupRef?, deltaDepth: Int, entries: [RoomEventStore.StateEntry])?
    }

    private enum GroupRef { case stored(Int64), planned(Int) }

    /// A state with the group that holds it, when one does, and that group's delta depth.
    private struct KnownState {
        var state: AuthState
        var group: GroupRef?
        var deltaDepth = 0
    }

    /// Checks and stores a batch of backfilled events (see the extension's comment).
    public func storeBackfill(_ batch: BackfillBatch) async throws -> BackfillOutcome {
        guard let version = room?.version else { throw MatrixError(.notFound, "Unknown room") }
        let ordered = Self.topologicalOrder(batch.events.filter { $0.effectiveRoomID == roomID && $0.roomVersion.id == version.id })
        var outcome = BackfillOutcome()
        guard !ordered.isEmpty else { return outcome }
        var known: [EventID: PDU] = [:]
        for pdu in ordered { known[pdu.eventID] = pdu }
        for pdus in batch.statesBefore.values { for pdu in pdus { known[pdu.eventID] = pdu } }
        let ids = Array(Set(ordered.flatMap { $0.prevEvents + $0.authEvents + [$0.eventID] }).map(\.rawValue))
        let rows = try await context.database.read { db in try RoomEventStore.events(db, ids: ids) }
        var stored: [EventID: RoomEventStore.EventRow] = [:]
        for row in rows where row.roomID == roomID.rawValue {
            guard let id = try? EventID(parsing: row.eventID) else { continue }
            stored[id] = row
            if known[id] == nil, let pdu = try? PDU(bytes: row.json, roomVersion: version, eventID: id) { known[id] = pdu }
        }
        var after: [EventID: KnownState] = [:]
        var plans: [BackfillPlan] = []
        for pdu in ordered {
            if let row = stored[pdu.eventID], RoomEventStore.isTimeline(row.streamOrdering) {
                outcome.known += 1
                continue
            }
            var sets: [KnownState] = []
            for prev in pdu.prevEvents {
                if let state = after[prev] {
                    sets.append(state)
                } else if let row = stored[prev], RoomEventStore.isTimeline(row.streamOrdering) {
                    let state = try await storedState(group: row.stateGroup, version: version, known: &known)
                    after[prev] = state
                    sets.append(state)
                }
            }
            guard let before = try await stateBefore(pdu, after: sets, given: batch.statesBefore[pdu.eventID], version: version) else {
                outcome.skipped += 1
                continue
            }
            let authEvents = pdu.authEvents.compactMap { known[$0] }
            guard authEvents.count == pdu.authEvents.count else { outcome.skipped += 1; continue }
            do {
                try EventAuth.checkAuthEvents(pdu, authEvents: authEvents)
                try EventAuth.authorize(pdu, against: before.state)
            } catch {
                // Rejected events never change state; their children see the state before them.
                outcome.rejected += 1
                after[pdu.eventID] = before
                continue
            }
            let plan = plan(pdu, index: plans.count, before: before)
            after[pdu.eventID] = plan.1
            plans.append(plan.0)
        }
        guard !plans.isEmpty else { return outcome }
        outcome.stored = try await writeBackfill(plans)
        outcome.known += plans.count - outcome.stored
        return outcome
    }

    /// The state before `pdu`: the one given for a gap, else the state after its known prev
    /// events (resolved when they differ); nil when nothing is known of it.
    private func stateBefore(_ pdu: PDU, after sets: [KnownState], given: [PDU]?, version: RoomVersion) async throws -> KnownState? {
        if let given {
            var state: AuthState = [:]
            for event in given { if let key = event.stateEntry { state[key] = event } }
            return KnownState(state: state)
        }
        if let first = sets.first, Set(sets.map { $0.state.mapValues(\.eventID) }).count == 1 { return first }
        // The room's first event (m.room.create): nothing before it.
        if pdu.prevEvents.isEmpty { return KnownState(state: [:]) }
        guard sets.count > 1 else { return nil }
        return KnownState(state: try await resolveStates(sets.map { $0.state.mapValues(\.eventID) }, version: version,
                                                         known: sets.flatMap { Array($0.state.values) }))
    }

    /// The client form of `pdu`, the group of the state after it, and that state.
    private func plan(_ pdu: PDU, index: Int, before: KnownState) -> (BackfillPlan, KnownState) {
        var unsigned: [String: JSON] = [:]
        if let entry = pdu.stateEntry, let previous = before.state[entry] {
            unsigned["replaces_state"] = .string(previous.eventID.rawValue)
            unsigned["prev_content"] = .object(previous.content)
            unsigned["prev_sender"] = .string(previous.sender.rawValue)
        }
        let client = ClientEventForm.json(of: pdu.json, eventID: pdu.eventID, roomID: roomID, unsigned: unsigned).encoded()
        // A message shares the group of the state before it.
        if pdu.stateEntry == nil, let group = before.group {
            return (BackfillPlan(pdu: pdu, clientJSON: client, group: group, newGroup: nil), before)
        }
        var state = before.state
        if let entry = pdu.stateEntry { state[entry] = pdu }
        let newGroup: (base: GroupRef?, deltaDepth: Int, entries: [RoomEventStore.StateEntry])
        if let base = before.group, let entry = pdu.stateEntry, !Self.snapshotDue(deltaDepth: before.deltaDepth, stateCount: state.count) {
            newGroup = (base, before.deltaDepth + 1,
                        [RoomEventStore.StateEntry(type: entry.type, stateKey: entry.stateKey, eventID: pdu.eventID.rawValue)])
        } else {
            newGroup = (nil, 0, state.map { RoomEventStore.StateEntry(type: $0.key.type, stateKey: $0.key.stateKey,
                                                                      eventID: $0.value.eventID.rawValue) })
        }
        return (BackfillPlan(pdu: pdu, clientJSON: client, group: .planned(index), newGroup: newGroup),
                KnownState(state: state, group: .planned(index), deltaDepth: newGroup.deltaDepth))
    }

    /// Loads a stored state group as events (cached in `known`), with its delta depth.
    private func storedState(group: Int64, version: RoomVersion, known: inout [EventID: PDU]) async throws -> KnownState {
        let (entries, depth) = try await context.database.read { db in
            (try RoomEventStore.state(db, group: group), try RoomEventStore.deltaDepth(db, group: group))
        }
        let missing = entries.compactMap { try? EventID(parsing: $0.eventID) }.filter { known[$0] == nil }.map(\.rawValue)
        if !missing.isEmpty {
            for row in try await context.database.read({ db in try RoomEventStore.events(db, ids: missing) }) {
                if let id = try? EventID(parsing: row.eventID), let pdu = try? PDU(bytes: row.json, roomVersion: version, eventID: id) {
                    known[id] = pdu
                }
            }
        }
        var state: AuthState = [:]
        for entry in entries {
            if let id = try? EventID(parsing: entry.eventID), let pdu = known[id] { state[StateKey(entry.type, entry.stateKey)] = pdu }
        }
        // A group that does not exist (an outlier's 0) cannot be a delta's base.
        return KnownState(state: state, group: depth == nil ? nil : .stored(group), deltaDepth: depth ?? 0)
    }

    /// Writes the plans at fresh backfill positions, oldest lowest, in one transaction
    /// (retried when another process took the same positions); returns the events written.
    private func writeBackfill(_ plans: [BackfillPlan]) async throws -> Int {
        let key = roomID.rawValue
        var attempt = 0
        while true {
            do {
                return try await context.database.write { db in
                    let positions = try RoomEventStore.allocateBackfill(db, count: plans.count)
                    func resolve(_ ref: GroupRef) -> Int64 {
                        switch ref {
                        case .stored(let id): return id
                        case .planned(let index): return positions[index]
                        }
                    }
                    var written = 0
                    for (index, plan) in plans.enumerated() {
                        let position = positions[index]
                        if let group = plan.newGroup {
                            try RoomEventStore.insertStateGroup(db, RoomEventStore.StateGroup(
                                id: position, roomID: key, prevGroup: group.base.map(resolve), deltaDepth: group.deltaDepth,
                                entries: group.entries))
                        }
                        let pdu = plan.pdu
                        let row = RoomEventStore.EventRow(streamOrdering: position, eventID: pdu.eventID.rawValue, roomID: key,
                                                          type: pdu.type, stateKey: pdu.stateKey, sender: pdu.sender.rawValue,
                                                          depth: pdu.depth, stateGroup: resolve(plan.group),
                                                          json: pdu.bytes ?? JSON.object(pdu.json).encoded(), clientJSON: plan.clientJSON)
                        if try RoomEventStore.insertBackfilled(db, row) { written += 1 }
                    }
                    return written
                }
            } catch let error as DatabaseError where error.kind == .uniqueViolation && attempt < 3 {
                attempt += 1
            }
        }
    }
}
