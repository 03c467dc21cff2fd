import Transport
import Actors
import Matrix
import Persistence

/// Builds one sync response between `request.since` and `upTo` (see `Sync`), in named steps:
/// account data, receipts, one plan per room (timeline from the ring its actor published,
/// the actor or the store; which state to send), to-device, presence, device lists, then the
/// client bytes of every state event needed in one query. The result (`SyncResult`) is
/// encoded by its caller: `/sync` concatenates it, the legacy endpoints reshape it.
struct SyncBuilder {
    let app: MyelinApp
    let request: Sync.Request
    let filter: SyncFilter
    let upTo: StreamToken
    /// Users in the requester's `m.ignored_user_list`: their non-state events and their
    /// invites are left out (spec: "Ignoring Users"). Read by `build`.
    var ignored: Set<String> = []

    /// One room's part of the response before its state bytes are known.
    struct RoomPlan {
        var roomID: String
        var section: Section
        var timeline: [TimelineEvent] = []
        var limited = false
        var prevBatch: Int64 = 0
        var stateIDs: [String] = []
        var strippedState: [JSON] = []
        var ephemeral: [[UInt8]] = []
        var accountData: [[UInt8]] = []
        var summary: JSON?
        var unread: UnreadCounts.RoomCounts?
    }

    enum Section { case join, invite, leave, knock }

    struct TimelineEvent {
        var position: Int64
        var eventID: String
        var type: String
        var stateKey: String?
        var sender: String
        var bytes: [UInt8]
        var txn: TransactionRef?
        var bytesForSender: [UInt8]?
        var replacesState: String?
    }

    var service: RoomService { app.roomService }
    var since: StreamToken? { request.since }
    /// An initial or full-state sync: everything, not only what changed.
    var full: Bool { request.since == nil || request.fullState }

    /// The response, or nil when it would be empty and `allowEmpty` is false (the caller
    /// waits for more).
    func build(allowEmpty: Bool) async throws -> SyncResult? {
        var builder = self
        builder.ignored = try await ignoredUsers()
        return try await builder.buildWithIgnored(allowEmpty: allowEmpty)
    }

    /// The users of the requester's `m.ignored_user_list` account data (cached by
    /// `SyncService` until the account-data stream moves).
    func ignoredUsers() async throws -> Set<String> {
        try await app.sync.ignoredUsers(app, request.user, upTo: upTo[.accountData])
    }

    private func buildWithIgnored(allowEmpty: Bool) async throws -> SyncResult? {
        let memberships = try await service.memberships(of: request.user)
        let (globalAccountData, roomAccountData) = try await accountData()
        let receipts = try await receipts(joinedTo: memberships)
        let plans = try await roomPlans(memberships, receipts: receipts, accountData: roomAccountData)
        let (toDevice, toDeviceNext) = try await toDeviceMessages()
        let presence = try await presenceEvents()
        let deviceLists = try await deviceListChanges(plans)
        if !allowEmpty && plans.isEmpty && globalAccountData.isEmpty && toDevice.isEmpty && presence.isEmpty
            && deviceLists.changed.isEmpty && deviceLists.left.isEmpty { return nil }
        var keyCounts: KeyService.DeviceKeyCounts?
        if !request.device.isEmpty { keyCounts = try await app.keys.counts(of: request.user, device: request.device) }
        var token = upTo
        token[.toDevice] = toDeviceNext
        return SyncResult(rooms: plans, stateBytes: try await stateEventBytes(plans), accountData: globalAccountData,
                          toDevice: toDevice, presence: presence, deviceLists: deviceLists, keyCounts: keyCounts,
                          token: token)
    }

    // MARK: the steps of `build`

    /// Account data (global, and per room by room id) when the stream moved.
    func accountData() async throws -> (global: [[UInt8]], rooms: [String: [[UInt8]]]) {
        var global: [[UInt8]] = []
        var rooms: [String: [[UInt8]]] = [:]
        guard full || upTo[.accountData] > since![.accountData] else { return (global, rooms) }
        let changes = try await app.database.accountData.accountDataChanges(userID: request.user,
                                                                          since: full ? 0 : since![.accountData])
        var sentPushRules = false
        for change in changes {
            var event = RawJSONObject()
            event.value("type", .string(change.type))
            event.raw("content", Array(change.content.utf8))
            if let room = change.roomID, !room.isEmpty {
                guard filter.roomAccountData.allows(type: change.type, sender: "") else { continue }
                rooms[room, default: []].append(event.finish())
            } else {
                guard filter.accountData.allows(type: change.type, sender: "") else { continue }
                if change.type == PushRulesService.accountDataType {
                    sentPushRules = true
                    global.append(try await pushRulesEvent())
                    continue
                }
                global.append(event.finish())
            }
        }
        // Push rules are always in an initial sync, the server defaults if nothing is stored
        // (as Synapse); stored ones go out merged with today's defaults (`PushRulesService`).
        if full && !sentPushRules && filter.accountData.allows(type: PushRulesService.accountDataType, sender: "") {
            global.append(try await pushRulesEvent())
        }
        return (global, rooms)
    }

    /// The user's `m.push_rules` event: their rules as `GET /pushrules/` shows them.
    func pushRulesEvent() async throws -> [UInt8] {
        var event = RawJSONObject()
        event.value("type", .string(PushRulesService.accountDataType))
        let rules = try await app.pushRules.ruleSet(for: request.user).clientJSON
        event.raw("content", JSON.object(["global": .object(rules)]).encoded())
        return event.finish()
    }

    /// Receipts of joined rooms by room id, when the stream moved.
    func receipts(joinedTo memberships: [String: MembershipStore.Membership]) async throws
        -> [String: [ReceiptStore.Receipt]] {
        guard full || upTo[.receipts] > since![.receipts] else { return [:] }
        let joinedRooms = memberships.values.filter { $0.membership == MembershipState.join }.map(\.roomID)
        let rows = try await service.receipts.receipts(in: joinedRooms, after: full ? 0 : since![.receipts],
                                                       upTo: upTo[.receipts])
        var receipts: [String: [ReceiptStore.Receipt]] = [:]
        for row in rows where row.type != ReceiptType.readPrivate || row.userID == request.user.rawValue {
            receipts[row.roomID, default: []].append(row)
        }
        return receipts
    }

    /// One plan per room the response mentions, in room id order.
    func roomPlans(_ memberships: [String: MembershipStore.Membership], receipts: [String: [ReceiptStore.Receipt]],
                   accountData: [String: [[UInt8]]]) async throws -> [RoomPlan] {
        let sinceEvents = since?[.roomEvents] ?? 0
        var plans: [RoomPlan] = []
        for membership in memberships.values.sorted(by: { $0.roomID < $1.roomID }) {
            guard filter.rooms.allowsRoom(membership.roomID), membership.streamOrdering <= upTo[.roomEvents] else { continue }
            let changed = membership.streamOrdering > sinceEvents
            switch membership.membership {
            case MembershipState.join.rawValue:
                // A new member event that was a join already (a display name or avatar
                // change) does not make the room new to the client.
                var newlyJoined = since != nil && changed
                if newlyJoined, try await rejoinedFromJoin(membership.eventID) { newlyJoined = false }
                if let plan = try await joinedRoom(membership.roomID, full: full || newlyJoined, after: newlyJoined ? 0 : sinceEvents,
                                                   upper: upTo[.roomEvents], membershipAt: membership.streamOrdering,
                                                   receipts: receipts[membership.roomID],
                                                   accountData: accountData[membership.roomID]) {
                    plans.append(plan)
                }
            case MembershipState.invite.rawValue, MembershipState.knock.rawValue:
                guard since == nil || changed else { continue }
                if !ignored.isEmpty, try await invitedByIgnored(membership) { continue }
                plans.append(try await strippedRoom(membership, section: membership.membership == MembershipState.invite ? .invite : .knock))
            case MembershipState.leave.rawValue, MembershipState.ban.rawValue:
                guard (since != nil && changed) || (filter.includeLeave && (since == nil || changed)) else { continue }
                if let plan = try await leftRoom(membership, after: sinceEvents) { plans.append(plan) }
            default:
                continue
            }
        }
        return plans
    }

    /// A room the user left or was banned from.
    func leftRoom(_ membership: MembershipStore.Membership, after: Int64) async throws -> RoomPlan? {
        // A leave that ends an invite or a knock (never joined): the leave event alone,
        // no room state or history the user never had access to.
        let leaveRow = try await app.database.roomEvents.event(membership.eventID)
        if leaveRow == nil, let purged = try await app.database.adminRooms.purgedLeave(membership.eventID) {
            // An admin deleted and purged the room: only the user's own leave is left.
            return purgedLeave(membership, purged.position, purged.clientJSON)
        }
        if let leaveRow,
           (try? JSON.parse(leaveRow.clientJSON))?["unsigned"]?["prev_content"]?["membership"]?.stringValue != MembershipState.join {
            return leaveAlone(leaveRow)
        }
        // Joined at the last sync: the state changes since then only, as for a joined room;
        // else (an initial sync, or joined and left in between) the state at the leave. A room
        // an admin is deleting (closed, being purged) has no history left to read: the leave
        // alone, from the event or, once purged, from the purge's copy.
        let roomID = try RoomID(parsing: membership.roomID)
        if !service.rooms.isClosed(roomID) {
            let joinedAtSince = since != nil ? try await wasJoined(membership.roomID, at: after) : false
            let found: RoomPlan?
            do {
                found = try await joinedRoom(membership.roomID, full: !joinedAtSince, after: after,
                                             upper: membership.streamOrdering, membershipAt: membership.streamOrdering,
                                             membershipIsJoin: false, receipts: nil, accountData: nil)
            } catch where service.rooms.isClosed(roomID) {
                found = nil
            }
            // Built while the room was being closed: it may have read a half-purged room.
            if var plan = found, !service.rooms.isClosed(roomID) {
                plan.section = .leave
                plan.ephemeral = []
                plan.unread = nil
                plan.summary = nil
                return plan
            }
            if !service.rooms.isClosed(roomID) { return nil }
        }
        if let row = try await app.database.roomEvents.event(membership.eventID) { return leaveAlone(row) }
        if let purged = try await app.database.adminRooms.purgedLeave(membership.eventID) {
            return purgedLeave(membership, purged.position, purged.clientJSON)
        }
        return nil
    }

    /// The leave section of a room with only the leave event in its timeline.
    func leaveAlone(_ row: RoomEventStore.EventRow) -> RoomPlan {
        var plan = RoomPlan(roomID: row.roomID, section: .leave)
        plan.timeline = [TimelineEvent(position: row.streamOrdering, eventID: row.eventID, type: row.type,
                                       stateKey: row.stateKey, sender: row.sender, bytes: row.clientJSON)]
        plan.prevBatch = row.streamOrdering - 1
        return plan
    }

    /// `leaveAlone` for a purged room's leave, which the user sent themselves.
    func purgedLeave(_ membership: MembershipStore.Membership, _ position: Int64, _ bytes: [UInt8]) -> RoomPlan {
        leaveAlone(RoomEventStore.EventRow(streamOrdering: position, eventID: membership.eventID, roomID: membership.roomID,
                                           type: EventType.roomMember, stateKey: membership.userID, sender: membership.userID,
                                           depth: 0, stateGroup: 0, json: [], clientJSON: bytes))
    }

    /// To-device: acknowledge what `since` covers, then deliver the rest (at least once).
    /// Returns the messages and the stream position the next token carries.
    func toDeviceMessages() async throws -> ([[UInt8]], Int64) {
        let user = request.user
        var toDevice: [[UInt8]] = []
        var toDeviceNext = upTo[.toDevice]
        // The device's session remembers what its last sync acknowledged, so a sync with
        // nothing new skips the store.
        let session = app.accounts.sessions.resident(user, deviceID: request.device)
        let acknowledged = since?[.toDevice] ?? 0
        let lastAcknowledged = session?.toDeviceAcknowledged
        if !request.device.isEmpty,
           full || upTo[.toDevice] > acknowledged || lastAcknowledged == nil || acknowledged > lastAcknowledged! {
            let bound = upTo[.toDevice]
            // Never past what this server has handed out: a token from the future (or from
            // before a restart that reused positions) must not delete unsent messages.
            let rows = try await app.database.toDevice.deliver(to: user, device: request.device,
                                                               acknowledged: min(acknowledged, bound), upTo: bound,
                                                               limit: SendToDevice.maxMessagesPerSync)
            toDevice = rows.map(\.1)
            session?.recordToDeviceAcknowledged(acknowledged)
            // A full batch: the token stops at its last message so the rest follows.
            if rows.count == SendToDevice.maxMessagesPerSync, let last = rows.last { toDeviceNext = last.0 }
        }
        return (toDevice, toDeviceNext)
    }

    /// Presence of the user and their room peers, when the stream moved and the filter lets
    /// presence through at all (the read joins the memberships of every shared room: in a room
    /// of thousands, each member's sync would otherwise read thousands of rows to drop them).
    func presenceEvents() async throws -> [[UInt8]] {
        guard app.configuration.presence.enabled, full || upTo[.presence] > since![.presence],
              !filter.presence.excludesEveryEvent(ofType: EventType.presence) else { return [] }
        let rows = try await app.database.presence.changes(seenBy: request.user, after: full ? 0 : since![.presence],
                                                           upTo: upTo[.presence])
        let now = Clock.nowMilliseconds()
        var presence: [[UInt8]] = []
        for (peer, state, message, lastActive) in rows where filter.presence.allows(type: EventType.presence, sender: peer) {
            let ago = max(0, now - lastActive)
            var content: [String: JSON] = ["presence": .string(state), "last_active_ago": .int(ago),
                                           "currently_active": .bool(state == "online" && ago < Presence.currentlyActiveMs)]
            if let message { content["status_msg"] = .string(message) }
            presence.append(JSON.object(["type": .string(EventType.presence), "sender": .string(peer), "content": .object(content)]).encoded())
        }
        return presence
    }

    /// Whether the user's invite was sent by someone they ignore.
    func invitedByIgnored(_ membership: MembershipStore.Membership) async throws -> Bool {
        guard let row = try await app.database.roomEvents.event(membership.eventID) else { return false }
        return ignored.contains(row.sender)
    }

    /// Whether a member event of the user replaced a join (a profile change, not a join).
    func rejoinedFromJoin(_ eventID: String) async throws -> Bool {
        guard let row = try await app.database.roomEvents.event(eventID) else { return false }
        return (try? JSON.parse(row.clientJSON))?["unsigned"]?["prev_content"]?["membership"]?.stringValue == MembershipState.join.rawValue
    }

    /// Whether the user was joined to `room` at stream position `position`.
    func wasJoined(_ room: String, at position: Int64) async throws -> Bool {
        let state = try await app.database.roomEvents.state(of: try RoomID(parsing: room), atOrBefore: position)
        guard let entry = state.first(where: { $0.type == EventType.roomMember && $0.stateKey == request.user.rawValue }),
              let row = try await app.database.roomEvents.event(entry.eventID) else { return false }
        return (try? JSON.parse(row.clientJSON))?["content"]?["membership"]?.stringValue == MembershipState.join.rawValue
    }

    /// Device lists: whose keys to re-fetch or stop tracking (incremental syncs only). The
    /// membership part runs only when a room's membership may have moved.
    func deviceListChanges(_ plans: [RoomPlan]) async throws -> (changed: [String], left: [String]) {
        guard let since else { return ([], []) }
        let membershipsMoved = plans.contains { plan in
            plan.section == .leave || plan.limited || !plan.stateIDs.isEmpty
                || plan.timeline.contains { $0.type == EventType.roomMember }
        }
        return try await app.keys.changes(for: request.user, since: since, upTo: upTo, membershipsMoved: membershipsMoved)
    }

    /// Every planned state event's client bytes, in one read.
    func stateEventBytes(_ plans: [RoomPlan]) async throws -> [String: [UInt8]] {
        let stateIDs = plans.flatMap(\.stateIDs)
        var stateBytes: [String: [UInt8]] = [:]
        if !stateIDs.isEmpty {
            let rows = try await app.database.roomEvents.events(ids: stateIDs)
            for row in rows { stateBytes[row.eventID] = row.clientJSON }
        }
        return stateBytes
    }

    // MARK: joined (and left) rooms

    /// A room's actor, resolved through the registry on first use only: a sync asks it only
    /// when the published timeline cannot answer (a hop to the registry and to the room,
    /// which every member's sync would otherwise queue on).
    final class LazyRoomActor {
        let roomID: RoomID
        let rooms: Rooms
        private var resolved: RoomActor?

        init(_ roomID: RoomID, _ rooms: Rooms) { self.roomID = roomID; self.rooms = rooms }

        func get() async throws -> RoomActor {
            if let resolved { return resolved }
            let found = try await rooms.room(roomID)
            resolved = found
            return found
        }
    }

    /// `membershipAt` is the position of the user's current membership event: events before
    /// it may be hidden from them by a history visibility of the time. When that membership is
    /// a join (`membershipIsJoin`), the user has been joined at every event since, so those are
    /// visible whatever the setting and only the earlier ones are checked.
    func joinedRoom(_ room: String, full: Bool, after: Int64, upper: Int64, membershipAt: Int64, membershipIsJoin: Bool = true,
                    receipts: [ReceiptStore.Receipt]?, accountData: [[UInt8]]?) async throws -> RoomPlan? {
        let roomID = try RoomID(parsing: room)
        let typers = typers(in: roomID, full: full)
        let quiet = typers == nil && receipts == nil && accountData == nil
        // Nothing new here: skip without waking the room's actor.
        if !full, quiet, let last = service.timelines.lastPosition(of: roomID), last <= after { return nil }
        let actor = LazyRoomActor(roomID, service.rooms)
        let published = service.timelines.timeline(of: roomID)
        var (events, limited) = try await timeline(room, published, actor, after: after, upper: upper)
        var contiguous = filter.timeline.passesAll
        if try await mayHideHistory(published, actor, events, membershipAt: membershipAt) {
            let visible = try await visibleOnly(room, events, before: membershipIsJoin ? membershipAt : nil)
            if visible.count != events.count { contiguous = false }
            events = visible
        }
        if !full && events.isEmpty && quiet { return nil }

        var plan = RoomPlan(roomID: room, section: .join)
        plan.timeline = events
        plan.limited = limited
        plan.prevBatch = (events.first?.position ?? (upper + 1)) - 1
        plan.accountData = accountData ?? []
        // State: everything at the timeline's start (initial, full state, newly joined), the
        // difference since the last sync after a gap, nothing otherwise.
        var currentState: AuthState?
        if full || limited {
            currentState = try await planState(&plan, room, actor, full: full, upper: upper, contiguous: contiguous)
        }
        plan.ephemeral = ephemeral(typers: typers, receipts: receipts)
        // Summary when members may have changed.
        if full || events.contains(where: { $0.type == EventType.roomMember }) {
            let state: AuthState
            if let currentState { state = currentState } else { state = try await actor.get().currentState ?? [:] }
            plan.summary = summary(state)
        }
        plan.unread = try await app.sync.unreadCounts.counts(app, user: request.user, roomID: roomID, actor: { try await actor.get() },
                                                             timeline: events, limited: limited, upper: upper)
        return plan
    }

    /// The room's typers if its typing changed since the token (all of them when `full`).
    func typers(in roomID: RoomID, full: Bool) -> [UserID]? {
        if let since, !full {
            return service.typing.typers(in: roomID, since: since[.typing] > upTo[.typing] ? 0 : since[.typing])
        }
        return service.typing.typers(in: roomID, since: 0)
    }

    /// The newest events in `(after, upper]` passing the timeline filter: from the ring the
    /// room's actor published, else from the actor, else from the store.
    func timeline(_ room: String, _ published: RoomTimeline?, _ actor: LazyRoomActor,
                  after: Int64, upper: Int64) async throws -> ([TimelineEvent], Bool) {
        let limit = filter.timeline.limit ?? Sync.defaultTimelineLimit
        let timelineFilter = filter.timeline
        let ignored = self.ignored
        let include: (PersistedEvent) -> Bool = { event in
            if !ignored.isEmpty && event.stateKey == nil && ignored.contains(event.sender) { return false }
            return timelineFilter.passesAll || timelineFilter.allows(type: event.type, sender: event.sender, clientBytes: event.clientBytes)
        }
        var ring = published?.newest(after: after, upTo: upper, limit: limit, include: include)
        if ring == nil { ring = try await actor.get().timeline(after: after, upTo: upper, limit: limit, include: include) }
        guard let fromRing = ring else { return try await storedTimeline(room, after: after, upper: upper, limit: limit) }
        let events = fromRing.events.map {
            TimelineEvent(position: $0.streamOrdering, eventID: $0.eventID.rawValue, type: $0.type, stateKey: $0.stateKey,
                          sender: $0.sender, bytes: $0.clientBytes, txn: $0.txn, bytesForSender: $0.clientBytesForSender,
                          replacesState: $0.replacesState)
        }
        return (events, fromRing.limited)
    }

    /// Whether the timeline's events must be checked one by one against the history
    /// visibility: when the room's setting is restrictive now (`joined`, `invited`), or when
    /// the timeline reaches back before the user's membership (a setting of that time may
    /// hide those events even if the room is `shared` now — as `/messages` would hide them).
    /// A caught-up sync only carries events after the membership and skips this.
    func mayHideHistory(_ published: RoomTimeline?, _ actor: LazyRoomActor, _ events: [TimelineEvent],
                        membershipAt: Int64) async throws -> Bool {
        guard let first = events.first else { return false }
        if first.position < membershipAt { return true }
        var historyVisibility = published?.historyVisibility
        if historyVisibility == nil {
            historyVisibility = try await actor.get().stateEvent(StateKey(EventType.roomHistoryVisibility, ""))?
                .content["history_visibility"]?.stringValue ?? "shared"
        }
        return historyVisibility == "joined" || historyVisibility == "invited"
    }

    /// Chooses the state events to send (their ids into `plan.stateIDs`): everything at the
    /// timeline's start, or only what differs from the state at `since` on an incremental
    /// sync after a gap. Returns the room's current state, read on the way.
    func planState(_ plan: inout RoomPlan, _ room: String, _ actor: LazyRoomActor, full: Bool, upper: Int64,
                   contiguous: Bool) async throws -> AuthState? {
        let current = try await actor.get().stateWithPosition
        let start = try await stateAtTimelineStart(current, room, events: plan.timeline, upper: upper, contiguous: contiguous)
        var chosen: [StateKey: String] = start
        if !full, let since {
            let sinceState = try await storedState(room, atOrBefore: since[.roomEvents])
            chosen = start.filter { sinceState[$0.key] != $0.value }
        }
        let senders = Set(plan.timeline.map(\.sender))
        let lazy = filter.lazyLoadMembers
        plan.stateIDs = chosen.filter { key, _ in
            if key.type == EventType.roomMember && lazy && !(senders.contains(key.stateKey) || key.stateKey == request.user.rawValue) {
                return false
            }
            return filter.state.allows(type: key.type, sender: "")
        }.map(\.value)
        return current?.state
    }

    /// The room's ephemeral events: typing and receipts, as the filter allows.
    func ephemeral(typers: [UserID]?, receipts: [ReceiptStore.Receipt]?) -> [[UInt8]] {
        var ephemeral: [[UInt8]] = []
        if let typers, filter.ephemeral.allows(type: EventType.typing, sender: "") {
            var typing = RawJSONObject()
            typing.value("type", .string(EventType.typing))
            typing.value("content", ["user_ids": .array(typers.map { .string($0.rawValue) })])
            ephemeral.append(typing.finish())
        }
        if let receipts, !receipts.isEmpty, filter.ephemeral.allows(type: EventType.receipt, sender: "") {
            var content: [String: JSON] = [:]
            for receipt in receipts {
                var entry: [String: JSON] = ["ts": .int(receipt.ts)]
                if !receipt.threadID.isEmpty { entry["thread_id"] = .string(receipt.threadID) }
                var byEvent = content[receipt.eventID]?.objectValue ?? [:]
                var byType = byEvent[receipt.type]?.objectValue ?? [:]
                byType[receipt.userID] = .object(entry)
                byEvent[receipt.type] = .object(byType)
                content[receipt.eventID] = .object(byEvent)
            }
            var event = RawJSONObject()
            event.value("type", .string(EventType.receipt))
            event.value("content", .object(content))
            ephemeral.append(event.finish())
        }
        return ephemeral
    }

    func storedTimeline(_ room: String, after: Int64, upper: Int64, limit: Int) async throws -> ([TimelineEvent], Bool) {
        let timelineFilter = filter.timeline
        return try await app.database.read { db in
            var out: [RoomEventStore.EventRow] = []
            var cursor = upper
            var limited = false
            while true {
                let batch = try RoomEventStore.events(db, roomID: room, after: after, upTo: cursor, backwards: true,
                                                       limit: max(limit + 1, 50))
                for row in batch {
                    cursor = row.streamOrdering - 1
                    guard timelineFilter.passesAll || timelineFilter.allows(type: row.type, sender: row.sender,
                                                                            clientBytes: row.clientJSON) else { continue }
                    if !ignored.isEmpty && row.stateKey == nil && ignored.contains(row.sender) { continue }
                    if out.count == limit { limited = true; break }
                    out.append(row)
                }
                if limited || batch.count < max(limit + 1, 50) { break }
            }
            let txns = try EventTxnStore.txns(db, eventIDs: out.map(\.eventID))
            return (out.reversed().map { row in
                TimelineEvent(position: row.streamOrdering, eventID: row.eventID, type: row.type, stateKey: row.stateKey,
                              sender: row.sender,
                              bytes: row.clientJSON,
                              txn: txns[row.eventID].map { TransactionRef(userID: row.sender, deviceID: $0.deviceID, scope: $0.scope, txnID: $0.txnID) },
                              replacesState: row.stateKey == nil ? nil
                                  : (try? JSON.parse(row.clientJSON))?["unsigned"]?["replaces_state"]?.stringValue)
            }, limited)
        }
    }

    /// The events the user may see, checked one by one against the history visibility of
    /// their time; with `before`, only those before that position are checked (the others
    /// are visible: see `joinedRoom`), so a timeline that reaches back only to the room's
    /// creation reads one row, not the whole timeline and a state per event.
    func visibleOnly(_ room: String, _ events: [TimelineEvent], before: Int64? = nil) async throws -> [TimelineEvent] {
        let user = request.user.rawValue
        let ids = events.map(\.position).filter { position in before.map { position < $0 } ?? true }
        if ids.isEmpty { return events }
        let visible = try await app.database.read { db -> Set<Int64> in
            var visibility = RoomService.Visibility(user: user, joinedNow: true)
            var out = Set<Int64>()
            let lower = (ids.min() ?? 1) - 1, upper = ids.max() ?? 0
            for row in try RoomEventStore.events(db, roomID: room, after: lower, upTo: upper, backwards: false, limit: ids.count + 1)
            where try visibility.visible(row, db) {
                out.insert(row.streamOrdering)
            }
            return out
        }
        return events.filter { event in visible.contains(event.position) || before.map { event.position >= $0 } ?? false }
    }

    /// The state at the start of the timeline as (type, state_key) → event id.
    /// The state at the start of the timeline as (type, state_key) → event id: the room's
    /// current state with the timeline's state events rolled back through their
    /// `replaces_state` (no store read), or the stored state group when the room has moved
    /// past `upper` since.
    func stateAtTimelineStart(_ current: (position: Int64, state: AuthState)?, _ room: String, events: [TimelineEvent],
                              upper: Int64, contiguous: Bool) async throws -> [StateKey: String] {
        // Only when the timeline holds every event from its start to the room's newest.
        guard let current, contiguous, current.position <= upper,
              events.last.map({ $0.position == current.position }) ?? true else {
            let boundary = events.first.map { $0.position - 1 } ?? upper
            return try await storedState(room, atOrBefore: boundary)
        }
        var state = current.state.mapValues(\.eventID.rawValue)
        for event in events.reversed() {
            guard let stateKey = event.stateKey else { continue }
            let key = StateKey(event.type, stateKey)
            guard state[key] == event.eventID else { continue }
            state[key] = event.replacesState
        }
        return state
    }

    func storedState(_ room: String, atOrBefore position: Int64) async throws -> [StateKey: String] {
        try await app.database.read { db in
            guard let group = try RoomEventStore.stateGroup(db, roomID: room, atOrBefore: position) else { return [:] }
            var out: [StateKey: String] = [:]
            for entry in try RoomEventStore.state(db, group: group) { out[StateKey(entry.type, entry.stateKey)] = entry.eventID }
            return out
        }
    }

    /// `m.heroes` and member counts (spec: "Room summary").
    func summary(_ state: AuthState) -> JSON {
        var joined = 0, invited = 0
        var heroes: [String] = []
        for (key, pdu) in state where key.type == EventType.roomMember {
            switch pdu.membership {
            case MembershipState.join.rawValue: joined += 1
            case MembershipState.invite.rawValue: invited += 1
            default: continue
            }
            if key.stateKey != request.user.rawValue { heroes.append(key.stateKey) }
        }
        var out: [String: JSON] = ["m.joined_member_count": .int(Int64(joined)), "m.invited_member_count": .int(Int64(invited))]
        if state[StateKey(EventType.roomName, "")] == nil && state[StateKey(EventType.roomCanonicalAlias, "")] == nil {
            out["m.heroes"] = .array(heroes.sorted().prefix(5).map { .string($0) })
        }
        return .object(out)
    }

    // MARK: invites and knocks

    func strippedRoom(_ membership: MembershipStore.Membership, section: Section) async throws -> RoomPlan {
        let roomID = try RoomID(parsing: membership.roomID)
        var stripped: [JSON] = []
        if section == .invite, try await service.database.roomEvents.roomVersion(of: roomID) == nil {
            // An invite by another server to a room not resident here: the state it sent.
            let invite = try await FederationInboundStore(database: service.database)
                .invite(roomID: membership.roomID, userID: request.user.rawValue)
            var plan = RoomPlan(roomID: membership.roomID, section: section)
            plan.strippedState = invite.flatMap { try? JSON.parse($0.strippedStateJSON).arrayValue } ?? []
            return plan
        }
        let actor = try await service.rooms.room(roomID)
        let state = await actor.currentState ?? [:]
        let keys = [EventType.roomCreate, EventType.roomJoinRules, EventType.roomName, EventType.roomAvatar, EventType.roomCanonicalAlias,
                    EventType.roomEncryption, EventType.roomTopic].map { StateKey($0, "") } + [.member(request.user.rawValue)]
        for key in keys {
            guard let pdu = state[key] else { continue }
            stripped.append(["type": .string(pdu.type), "state_key": .string(pdu.stateKey ?? ""),
                             "content": .object(pdu.content), "sender": .string(pdu.sender.rawValue)])
        }
        var plan = RoomPlan(roomID: membership.roomID, section: section)
        plan.strippedState = stripped
        return plan
    }
}
