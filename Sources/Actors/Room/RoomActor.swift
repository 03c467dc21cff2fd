import Matrix
import Persistence

/// The single writer of one room (key: room id). Every new event of the room goes through
/// its pipeline: `prev_events` from the forward extremities, `auth_events`, `depth`,
/// authorization against the current state, hash, signature, event id (all by
/// `EventBuilder`); then event + state group + extremities + stream position in one
/// transaction; only then the acknowledgement and the publication.
///
/// Sends queue in FIFO order and are group-committed: while one transaction is in flight
/// the next sends gather, and are built one on top of the other and written in the next
/// transaction. The in-memory state is replaced only after a commit, so a failed write
/// leaves it as the store has it. Acknowledgement order is the room's event order.
///
/// Holds the current state, the forward extremities, the room version and a ring of
/// recent events with their bytes. Activated by `Rooms` through a `Registry`; on
/// re-activation everything is rebuilt from the store.
public actor RoomActor: RegistryMember {
    public nonisolated let roomID: RoomID
    let context: RoomContext

    /// The room as the store has it; nil while the room does not exist yet.
    var room: RoomState?
    var queue: [Pending] = []
    /// Sends waiting for the room's writer, at most.
    static let maxQueuedSends = 1024
    var draining = false
    var closed = false
    var drainWaiters: [CheckedContinuation<Void, Never>] = []

    /// Deltas stacked on a full snapshot before the next full snapshot: at least 32, and a
    /// quarter of the state's size beyond that. Reading any state then costs at most 1.25
    /// snapshots, and each state event writes a constant number of rows on average (a fixed
    /// interval made N state events cost ~N²/32 rows: a room of 10,000 members rewrote its
    /// whole state every 32 joins).
    static let maxStateDeltaDepth = 32

    static func snapshotDue(deltaDepth: Int, stateCount: Int) -> Bool {
        deltaDepth >= max(maxStateDeltaDepth, stateCount / 4)
    }

    struct RoomState: Sendable {
        var version: RoomVersion
        var state: AuthState
        var stateGroup: Int64
        var stateDeltaDepth: Int
        var extremities: [EventID]
        var maxDepth: Int64
        var lastStreamOrdering: Int64
        var recent: [PersistedEvent]
        /// The newest position of this room not in `recent` (0: the ring holds the room's
        /// whole history): the ring is complete after it.
        var recentFloor: Int64
        /// Joined and invited users, the audience of a publication; nil after a member event
        /// until the next publication recomputes it (so a message costs no scan of the state).
        var audience: Set<UserID>? = nil
        /// The joined members as the push pipeline needs them; nil as `audience`.
        var pushMembers: PushMembers? = nil

        /// What the timeline service holds of this room: the ring itself (shared storage).
        var timeline: RoomTimeline {
            RoomTimeline(recent: recent, floor: recentFloor, lastPosition: lastStreamOrdering,
                         historyVisibility: state[StateKey(EventType.roomHistoryVisibility, "")]?
                             .content["history_visibility"]?.stringValue ?? "shared")
        }
    }

    struct Pending {
        var draft: EventDraft
        var continuation: CheckedContinuation<PersistedEvent, any Error>
    }

    init(roomID: RoomID, context: RoomContext, room: RoomState?) {
        self.roomID = roomID
        self.context = context
        self.room = room
    }

    /// Rebuilds a room actor from the store (a room not yet created yields an empty actor).
    public static func activate(_ roomID: RoomID, context: RoomContext) async throws -> RoomActor {
        let limit = context.recentEventsLimit
        let key = roomID.rawValue
        let loaded = try await context.database.read { db -> (String, [String], [RoomEventStore.EventRow], [RoomEventStore.StateEntry], [RoomEventStore.EventRow], Int, [String: (deviceID: String, scope: String, txnID: String)])? in
            guard let version = try RoomEventStore.roomVersion(db, roomID: key) else { return nil }
            let extremities = try RoomEventStore.extremities(db, roomID: key)
            // One more than the ring holds, to know where the ring starts.
            let latest = try RoomEventStore.latestEvents(db, roomID: key, limit: limit + 1)
            guard let last = latest.last else { return nil }
            let entries = try RoomEventStore.state(db, group: last.stateGroup)
            let stateEvents = try RoomEventStore.events(db, ids: entries.map(\.eventID) + extremities)
            let deltaDepth = try RoomEventStore.deltaDepth(db, group: last.stateGroup) ?? 0
            let txns = try EventTxnStore.txns(db, eventIDs: latest.map(\.eventID))
            return (version, extremities, latest, entries, stateEvents, deltaDepth, txns)
        }
        guard let (versionID, extremityIDs, latest, entries, rows, deltaDepth, txns) = loaded, let last = latest.last else {
            return RoomActor(roomID: roomID, context: context, room: nil)
        }
        let version = try RoomVersion.named(versionID)
        var byID: [String: RoomEventStore.EventRow] = [:]
        for row in rows { byID[row.eventID] = row }
        var state: AuthState = [:]
        for entry in entries {
            guard let row = byID[entry.eventID] else { throw MatrixError(.unknown, "state event \(entry.eventID) missing") }
            state[StateKey(entry.type, entry.stateKey)] = try PDU(bytes: row.json, roomVersion: version,
                                                                   eventID: try EventID(parsing: row.eventID))
        }
        let extremities = try extremityIDs.map { try EventID(parsing: $0) }
        let maxDepth = extremityIDs.compactMap { byID[$0]?.depth }.max() ?? last.depth
        let floor = latest.count > limit ? latest[latest.count - limit - 1].streamOrdering : 0
        let recent = try latest.suffix(limit).map { row in
            var event = PersistedEvent(eventID: try EventID(parsing: row.eventID), streamOrdering: row.streamOrdering,
                                       depth: row.depth, type: row.type, stateKey: row.stateKey, bytes: row.json,
                                       sender: row.sender, clientBytes: row.clientJSON,
                                       txn: txns[row.eventID].map { TransactionRef(userID: row.sender, deviceID: $0.deviceID,
                                                                                   scope: $0.scope, txnID: $0.txnID) })
            if let txn = event.txn { event.clientBytesForSender = PersistedEvent.withTransactionID(row.clientJSON, txn.txnID) }
            if row.stateKey != nil {
                event.replacesState = (try? JSON.parse(row.clientJSON))?["unsigned"]?["replaces_state"]?.stringValue
            }
            return event
        }
        let room = RoomState(version: version, state: state, stateGroup: last.stateGroup, stateDeltaDepth: deltaDepth,
                             extremities: extremities, maxDepth: maxDepth, lastStreamOrdering: last.streamOrdering,
                             recent: recent, recentFloor: floor)
        let actor = RoomActor(roomID: roomID, context: context, room: room)
        // Everything loaded is committed and visible: readers may use the ring at once.
        context.timelines.publish(roomID, room.timeline, owner: ObjectIdentifier(actor))
        return actor
    }

    // MARK: Reads

    /// The current state, extremities and next depth; nil if the room does not exist.
    public var snapshot: RoomSnapshot? {
        guard let room else { return nil }
        return RoomSnapshot(roomVersion: room.version.id, state: room.state.mapValues(\.eventID),
                            extremities: room.extremities, nextDepth: room.maxDepth + 1,
                            lastStreamOrdering: room.lastStreamOrdering)
    }

    /// The current state event of `key`.
    public func stateEvent(_ key: StateKey) -> PDU? { room?.state[key] }

    /// The current state with the position it is the state after, in one hop (sync).
    public var stateWithPosition: (position: Int64, state: AuthState)? {
        room.map { ($0.lastStreamOrdering, $0.state) }
    }

    /// The whole current state; nil if the room does not exist.
    public var currentState: AuthState? { room?.state }

    /// The room version; nil if the room does not exist.
    public var version: RoomVersion? { room?.version }

    /// The stream position of the room's newest event (0 if it does not exist).
    public var lastStreamOrdering: Int64 { room?.lastStreamOrdering ?? 0 }

    /// Events of the ring after `streamOrdering`, oldest first; nil if the ring does not
    /// reach back that far (the caller reads the store instead).
    public func recentEvents(after streamOrdering: Int64) -> [PersistedEvent]? {
        guard let room else { return [] }
        guard streamOrdering >= room.recentFloor else { return nil }
        return room.recent.filter { $0.streamOrdering > streamOrdering }
    }

    /// The newest events with positions in `(after, upTo]` that pass `include`, oldest
    /// first: at most `limit`, and whether older matching ones exist in that range. Nil when
    /// the ring cannot tell (it does not reach back to `after` and holds fewer than `limit`
    /// matches): the caller reads the store.
    public func timeline(after: Int64, upTo: Int64, limit: Int,
                         include: (PersistedEvent) -> Bool = { _ in true }) -> (events: [PersistedEvent], limited: Bool)? {
        guard let room else { return ([], false) }
        return PersistedEvent.newest(in: room.recent, floor: room.recentFloor, after: after, upTo: upTo, limit: limit,
                                     include: include)
    }

    // MARK: Writes

    /// Creates the room with `create` (already built and signed; for room version 12 it
    /// determines this room's id) followed by `initial` events, in one transaction.
    func create(version: RoomVersion, create: PDU, initial: [EventDraft]) async throws -> [PersistedEvent] {
        guard room == nil, !closed, !draining else { throw MatrixError(.roomInUse, "Room already exists") }
        guard create.effectiveRoomID == roomID else { throw MatrixError(.invalidParam, "create event of another room") }
        draining = true
        defer { finishDrain() }
        var working = RoomState(version: version, state: [:], stateGroup: 0, stateDeltaDepth: 0, extremities: [],
                                maxDepth: 0, lastStreamOrdering: 0, recent: [], recentFloor: 0)
        var built = [create]
        let builder = EventBuilder(roomVersion: version, signingKey: context.signingKey, serverName: context.serverName)
        let now = currentTimeMillis()
        var allocations: [StreamTracker.Allocation] = []
        var writes: [Write] = []
        var first = true
        // Apply the create event, then build each initial event on the state so far.
        for index in 0...initial.count {
            let pdu: PDU
            if index == 0 {
                pdu = create
            } else {
                let draft = initial[index - 1]
                pdu = try builder.build(type: draft.type, sender: draft.sender, stateKey: draft.stateKey,
                                        content: draft.content, roomID: roomID,
                                        prevEvents: working.extremities, depth: working.maxDepth + 1,
                                        originServerTS: now, state: working.state, redacts: draft.redacts)
                built.append(pdu)
            }
            let allocation = context.events.allocate()
            allocations.append(allocation)
            writes.append(apply(pdu, at: allocation.position, to: &working, fullSnapshot: first))
            first = false
        }
        let (events, _) = try await persist(writes, allocations: allocations, createdTS: now, version: version)
        makeVisible(writes, working, allocations)
        room = working
        publish(events, working)
        return events
    }

    /// Builds, authorizes, signs and persists one event; returns once it is committed.
    /// Throws `M_FORBIDDEN` if the auth rules reject it, `M_NOT_FOUND` if the room does
    /// not exist, `RoomActorUnavailable` if this actor was deactivated meanwhile.
    public func send(_ draft: EventDraft) async throws -> PersistedEvent {
        guard !closed else { throw RoomActorUnavailable() }
        guard room != nil else { throw MatrixError(.notFound, "Unknown room") }
        // A bounded mailbox: past it the sender is told to come back (a room cannot take
        // more than its writer commits; an ever-growing queue only adds latency for all).
        guard queue.count < Self.maxQueuedSends else {
            throw MatrixError(.limitExceeded, "Too many events are waiting in this room; try again shortly",
                              extra: ["retry_after_ms": .int(1000)])
        }
        return try await withCheckedThrowingContinuation { continuation in
            queue.append(Pending(draft: draft, continuation: continuation))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    /// Stops accepting sends, lets the queued ones finish, then returns. Nothing is lost:
    /// whatever was acknowledged is committed.
    public func deactivate() async {
        closed = true
        while draining {
            await withCheckedContinuation { drainWaiters.append($0) }
        }
        context.timelines.retire(roomID, owner: ObjectIdentifier(self))
    }

    func finishDrain() {
        draining = false
        let waiters = drainWaiters
        drainWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    func drain() async {
        while !queue.isEmpty, var working = room {
            let batch = queue
            queue = []
            let builder = EventBuilder(roomVersion: working.version, signingKey: context.signingKey,
                                       serverName: context.serverName)
            let now = currentTimeMillis()
            var accepted: [Pending] = []
            var allocations: [StreamTracker.Allocation] = []
            var writes: [Write] = []
            // A transaction id seen before (committed, or earlier in this batch) yields that event.
            var duplicates: [(Pending, Int)] = []
            var batchTxns: [TransactionRef: Int] = [:]
            for pending in batch {
                let draft = pending.draft
                if let txn = draft.txn {
                    if let event = committedTxns[txn] {
                        pending.continuation.resume(returning: event)
                        continue
                    }
                    if let index = batchTxns[txn] {
                        duplicates.append((pending, index))
                        continue
                    }
                }
                do {
                    let pdu = try builder.build(type: draft.type, sender: draft.sender, stateKey: draft.stateKey,
                                                content: draft.content, roomID: roomID, prevEvents: Self.prevEvents(citing: working.extremities),
                                                depth: working.maxDepth + 1, originServerTS: now,
                                                state: working.state, redacts: draft.redacts)
                    // Client-server API "Size limits": the whole event at most 64 KiB.
                    if (pdu.bytes?.count ?? 0) > PDU.maxSize - 1024 { try pdu.checkSizeLimits() }
                    let allocation = context.events.allocate()
                    allocations.append(allocation)
                    writes.append(apply(pdu, at: allocation.position, to: &working, fullSnapshot: false, txn: draft.txn))
                    if let txn = draft.txn { batchTxns[txn] = accepted.count }
                    accepted.append(pending)
                } catch {
                    pending.continuation.resume(throwing: error)
                }
            }
            if accepted.isEmpty { continue }
            do {
                let (events, redacted) = try await persist(writes, allocations: allocations, createdTS: nil, version: working.version)
                for index in working.recent.indices {
                    if let bytes = redacted[working.recent[index].eventID.rawValue] {
                        working.recent[index].clientBytes = bytes
                        working.recent[index].clientBytesForSender = nil
                    }
                }
                makeVisible(writes, working, allocations)
                room = working
                for (pending, event) in zip(accepted, events) {
                    if let txn = event.txn { remember(txn, event) }
                    pending.continuation.resume(returning: event)
                }
                for (pending, index) in duplicates { pending.continuation.resume(returning: events[index]) }
                publish(events, working)
            } catch {
                // The store is the truth and the memory was not touched: the batch failed as
                // a whole; later sends retry on the unchanged state.
                for pending in accepted { pending.continuation.resume(throwing: error) }
                for (pending, _) in duplicates { pending.continuation.resume(throwing: error) }
            }
        }
        // Sends that raced a close are refused, never dropped silently.
        if room == nil || closed {
            for pending in queue { pending.continuation.resume(throwing: RoomActorUnavailable()) }
            queue = []
        }
        finishDrain()
    }

    /// Transactions committed lately, for duplicates that arrive while the first is in memory
    /// (older ones are found in `event_txns` by the caller before sending).
    private var committedTxns: [TransactionRef: PersistedEvent] = [:]
    private var committedTxnOrder: [TransactionRef] = []

    private func remember(_ txn: TransactionRef, _ event: PersistedEvent) {
        committedTxns[txn] = event
        committedTxnOrder.append(txn)
        if committedTxnOrder.count > 1024 {
            for old in committedTxnOrder.prefix(512) { committedTxns[old] = nil }
            committedTxnOrder.removeFirst(512)
        }
    }

    /// One event's rows.
    struct Write: Sendable {
        var event: RoomEventStore.EventRow
        var group: RoomEventStore.StateGroup?
        var extremities: [String]
        var persisted: PersistedEvent
        var membership: MembershipStore.Membership?
        /// A redaction's target and whether the sender may redact others' events.
        var redacts: (target: String, sender: String, anySender: Bool)?
        var redactionClientJSON: JSON?
        var relation: RelationStore.Relation?
        var searchable: (key: String, text: String)?
        /// A remote event's own state when it is not the room's (`EventStateStore`), and
        /// whether the event replaces a stored outlier of itself.
        var eventState: RoomEventStore.StateGroup? = nil
        var replacesOutlier = false
    }

    /// Applies `pdu` to the working copy of the room and returns the rows to write.
    func apply(_ pdu: PDU, at position: Int64, to working: inout RoomState, fullSnapshot: Bool,
               txn: TransactionRef? = nil, remote: RemoteApplication? = nil) -> Write {
        let key = roomID.rawValue
        var group: RoomEventStore.StateGroup?
        var unsigned: [String: JSON] = [:]
        if let entry = pdu.stateEntry, let previous = working.state[entry] {
            unsigned["replaces_state"] = .string(previous.eventID.rawValue)
            unsigned["prev_content"] = .object(previous.content)
            unsigned["prev_sender"] = .string(previous.sender.rawValue)
        }
        let client = ClientEventForm.json(of: pdu.json, eventID: pdu.eventID, roomID: roomID, unsigned: unsigned)
        var redacts: (String, String, Bool)?
        if let target = pdu.redacts {
            let power = PowerLevels(content: working.state[.powerLevels]?.content, roomVersion: working.version,
                                    create: working.state[.create])
            redacts = (target.rawValue, pdu.sender.rawValue, power.level(of: pdu.sender.rawValue) >= power.redact)
        }
        var membership: MembershipStore.Membership?
        if pdu.type == EventType.roomMember, let stateKey = pdu.stateKey, let value = pdu.membership {
            membership = MembershipStore.Membership(roomID: key, userID: stateKey, membership: value,
                                                    eventID: pdu.eventID.rawValue, streamOrdering: position)
        }
        if let resolved = remote?.resolvedState {
            // A remote event beside other forward extremities: the room's state is the
            // resolution of the branches, stored whole (server-server API, "Room State Resolution").
            working.audience = nil
            working.pushMembers = nil
            working.state = resolved
            group = RoomEventStore.StateGroup(
                id: position, roomID: key, prevGroup: nil, deltaDepth: 0,
                entries: working.state.map { RoomEventStore.StateEntry(type: $0.key.type, stateKey: $0.key.stateKey,
                                                                       eventID: $0.value.eventID.rawValue) })
            working.stateDeltaDepth = 0
            working.stateGroup = position
        } else if let entry = pdu.stateEntry {
            if entry.type == EventType.roomMember {
                working.audience = nil
                working.pushMembers = nil
            }
            working.state[entry] = pdu
            if fullSnapshot || Self.snapshotDue(deltaDepth: working.stateDeltaDepth, stateCount: working.state.count) {
                group = RoomEventStore.StateGroup(
                    id: position, roomID: key, prevGroup: nil, deltaDepth: 0,
                    entries: working.state.map { RoomEventStore.StateEntry(type: $0.key.type, stateKey: $0.key.stateKey,
                                                                           eventID: $0.value.eventID.rawValue) })
                working.stateDeltaDepth = 0
            } else {
                group = RoomEventStore.StateGroup(
                    id: position, roomID: key, prevGroup: working.stateGroup, deltaDepth: working.stateDeltaDepth + 1,
                    entries: [RoomEventStore.StateEntry(type: entry.type, stateKey: entry.stateKey, eventID: pdu.eventID.rawValue)])
                working.stateDeltaDepth += 1
            }
            working.stateGroup = position
        }
        // A local event cites at most `maxPrevEvents` extremities; the others stay.
        working.extremities = remote?.extremities ?? (working.extremities.filter { !pdu.prevEvents.contains($0) } + [pdu.eventID])
        working.maxDepth = max(remote == nil ? 0 : working.maxDepth, pdu.depth)
        working.lastStreamOrdering = position
        let bytes = pdu.bytes ?? JSON.object(pdu.json).encoded()
        let clientBytes = client.encoded()
        var persisted = PersistedEvent(eventID: pdu.eventID, streamOrdering: position, depth: pdu.depth,
                                       type: pdu.type, stateKey: pdu.stateKey, bytes: bytes, sender: pdu.sender.rawValue,
                                       clientBytes: clientBytes, txn: txn)
        persisted.replacesState = unsigned["replaces_state"]?.stringValue
        if let txn {
            var withTxn = client
            var u = unsigned
            u["transaction_id"] = .string(txn.txnID)
            withTxn["unsigned"] = .object(u)
            persisted.clientBytesForSender = withTxn.encoded()
        }
        working.recent.append(persisted)
        if working.recent.count > context.recentEventsLimit {
            let excess = working.recent.count - context.recentEventsLimit
            working.recentFloor = working.recent[excess - 1].streamOrdering
            working.recent.removeFirst(excess)
        }
        let row = RoomEventStore.EventRow(streamOrdering: position, eventID: pdu.eventID.rawValue, roomID: key,
                                          type: pdu.type, stateKey: pdu.stateKey, sender: pdu.sender.rawValue,
                                          depth: pdu.depth, stateGroup: working.stateGroup, json: bytes,
                                          clientJSON: clientBytes)
        var relation: RelationStore.Relation?
        if let relatesTo = pdu.content["m.relates_to"]?.objectValue, let target = relatesTo["event_id"]?.stringValue,
           let relType = relatesTo["rel_type"]?.stringValue {
            relation = RelationStore.Relation(eventID: pdu.eventID.rawValue, relatesTo: target, relType: relType, roomID: key,
                                              type: pdu.type, sender: pdu.sender.rawValue, streamOrdering: position)
        }
        var texts: [String: String] = [:]
        for field in ["body", "name", "topic"] { if let text = pdu.content[field]?.stringValue { texts[field] = text } }
        return Write(event: row, group: group, extremities: working.extremities.map(\.rawValue), persisted: persisted,
                     membership: membership, redacts: redacts, redactionClientJSON: redacts == nil ? nil : client,
                     relation: relation, searchable: SearchStore.searchable(type: pdu.type, content: texts),
                     eventState: remote?.eventState, replacesOutlier: remote?.replacesOutlier ?? false)
    }

    /// Writes the batch in one transaction (its positions aborted if it fails; the caller
    /// commits them with `makeVisible`). Redactions rewrite their target's client form in the same transaction; the new forms
    /// are returned by event id so the ring can follow.
    func persist(_ writes: [Write], allocations: [StreamTracker.Allocation], createdTS: Int64?,
                         version: RoomVersion) async throws -> ([PersistedEvent], [String: [UInt8]]) {
        let key = roomID.rawValue
        let room = roomID
        let redacted: [String: [UInt8]]
        do {
            redacted = try await context.database.write { db in
                if let createdTS { try RoomEventStore.insertRoom(db, roomID: key, roomVersion: version.id, createdTS: createdTS) }
                var redacted: [String: [UInt8]] = [:]
                for write in writes {
                    if let group = write.group { try RoomEventStore.insertStateGroup(db, group) }
                    if write.replacesOutlier { try EventStateStore.deleteOutlier(db, eventID: write.event.eventID) }
                    try RoomEventStore.insertEvent(db, write.event)
                    if let own = write.eventState {
                        try RoomEventStore.insertStateGroup(db, own)
                        try EventStateStore.setStateGroup(db, eventID: write.event.eventID, roomID: key, group: own.id)
                    }
                    if let membership = write.membership { try MembershipStore.setMembership(db, membership) }
                    if let relation = write.relation { try RelationStore.insert(db, relation) }
                    if let (searchKey, text) = write.searchable {
                        try SearchStore.insert(db, eventID: write.event.eventID, roomID: key, streamOrdering: write.event.streamOrdering,
                                               key: searchKey, text: text)
                    }
                    if let txn = write.persisted.txn {
                        try EventTxnStore.insertTxn(db, userID: txn.userID, deviceID: txn.deviceID, scope: txn.scope, txnID: txn.txnID,
                                                      roomID: key, eventID: write.event.eventID)
                    }
                    if let (target, sender, anySender) = write.redacts, let because = write.redactionClientJSON,
                       let row = try RoomEventStore.event(db, eventID: target), row.roomID == key,
                       anySender || row.sender == sender,
                       let original = try? JSON.parse(row.json).objectValue, let id = try? EventID(parsing: row.eventID) {
                        var unsigned: [String: JSON] = ["redacted_because": because]
                        // Synapse names the redaction in `unsigned.redacted_by` too; SyTest reads it.
                        if let by = because["event_id"] { unsigned["redacted_by"] = by }
                        if let old = try? JSON.parse(row.clientJSON)["unsigned"]?.objectValue {
                            for name in ["replaces_state", "prev_sender"] { if let v = old[name] { unsigned[name] = v } }
                        }
                        let form = ClientEventForm.json(of: Redaction.redact(original, roomVersion: version), eventID: id,
                                                        roomID: room, unsigned: unsigned).encoded()
                        try RoomEventStore.setRedacted(db, eventID: target, clientJSON: form)
                        try SearchStore.delete(db, eventID: target)
                        redacted[target] = form
                    }
                }
                if let last = writes.last { try RoomEventStore.setExtremities(db, roomID: key, last.extremities) }
                return redacted
            }
        } catch {
            for allocation in allocations { context.events.abort(allocation) }
            throw error
        }
        return (writes.map(\.persisted), redacted)
    }

    /// After a durable batch: the services that answer readers without this actor (the
    /// ring, the memberships) learn of it first, then its positions become visible, so a
    /// reader of a visible position never finds them behind.
    func makeVisible(_ writes: [Write], _ working: RoomState, _ allocations: [StreamTracker.Allocation]) {
        context.memberships.apply(writes.compactMap(\.membership))
        context.timelines.publish(roomID, working.timeline, owner: ObjectIdentifier(self))
        for allocation in allocations { context.events.commit(allocation) }
    }

    func publish(_ events: [PersistedEvent], _ room: RoomState) {
        var users: Set<UserID>
        if let audience = room.audience {
            users = audience
        } else {
            users = []
            for (key, pdu) in room.state where key.type == EventType.roomMember {
                if let membership = pdu.membership, membership == MembershipState.join || membership == MembershipState.invite,
                   let user = try? UserID(parsing: key.stateKey) {
                    users.insert(user)
                }
            }
            self.room?.audience = users
        }
        for event in events where event.type == EventType.roomMember {
            if let key = event.stateKey, let user = try? UserID(parsing: key) { users.insert(user) }
        }
        // Readers are woken once the batch is visible: a lower position of another room may
        // still be in flight, and waking them before would let them wait past these events.
        if let fanout = context.fanout {
            let published = PublishedEvents(roomID: roomID, events: events, interestedUsers: users,
                                            visiblePosition: context.events.visiblePosition)
            context.events.whenVisible(events.map(\.streamOrdering).max() ?? 0) { visible in
                var ready = published
                ready.visiblePosition = max(ready.visiblePosition, visible)
                fanout.publish(ready)
            }
        }
        context.federation?.published(roomID, events: events, state: room.state)
        if let push = context.push {
            let members = room.pushMembers ?? PushMembers(room.state, localServer: context.serverName)
            if room.pushMembers == nil { self.room?.pushMembers = members }
            push.published(roomID, events: events, state: room.state, members: members)
        }
    }
}
