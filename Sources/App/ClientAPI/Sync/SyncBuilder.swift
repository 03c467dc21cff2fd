import Transport
import Actors
import Matrix
import Persistence

/// Builds one sync response between `request.since` and `upTo` (see `Sync`). Rooms are
/// planned first (timeline from the room's ring or the store, which state to send), then
/// the client bytes of every state event needed are read in one query, then the response
/// is concatenated.
struct SyncBuilder {
    let app: MyelinApp
    let request: Sync.Request
    let filter: SyncFilter
    let upTo: StreamToken

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

    /// The response, or nil when it would be empty and `allowEmpty` is false (the caller
    /// waits for more).
    func build(allowEmpty: Bool) async throws -> [UInt8]? {
        let since = request.since
        let full = since == nil || request.fullState
        let sinceEvents = since?[.roomEvents] ?? 0
        let user = request.user
        let memberships = try await service.memberships(of: user)

        // Account data (global and per room) when the stream moved.
        var globalAccountData: [[UInt8]] = []
        var roomAccountData: [String: [[UInt8]]] = [:]
        if full || upTo[.accountData] > since![.accountData] {
            let changes = try await app.database.accountData.accountDataChanges(userID: user,
                                                                              since: full ? 0 : since![.accountData])
            for change in changes {
                var event = RawJSONObject()
                event.value("type", .string(change.type))
                event.raw("content", Array(change.content.utf8))
                if let room = change.roomID, !room.isEmpty {
                    guard filter.roomAccountData.allows(type: change.type, sender: "") else { continue }
                    roomAccountData[room, default: []].append(event.finish())
                } else {
                    guard filter.accountData.allows(type: change.type, sender: "") else { continue }
                    globalAccountData.append(event.finish())
                }
            }
        }

        // Receipts of joined rooms when the stream moved.
        var receipts: [String: [ReceiptStore.Receipt]] = [:]
        let joinedRooms = memberships.values.filter { $0.membership == "join" }.map(\.roomID)
        if full || upTo[.receipts] > since![.receipts] {
            let after = full ? 0 : since![.receipts]
            let bound = upTo[.receipts]
            let rows = try await app.database.receipts.receipts(rooms: joinedRooms, after: after, upTo: bound)
            for row in rows where row.type != "m.read.private" || row.userID == user.rawValue {
                receipts[row.roomID, default: []].append(row)
            }
        }

        var plans: [RoomPlan] = []
        for membership in memberships.values.sorted(by: { $0.roomID < $1.roomID }) {
            guard filter.rooms.allowsRoom(membership.roomID), membership.streamOrdering <= upTo[.roomEvents] else { continue }
            let changed = membership.streamOrdering > sinceEvents
            switch membership.membership {
            case "join":
                let newlyJoined = since != nil && changed
                if let plan = try await joinedRoom(membership.roomID, full: full || newlyJoined, after: newlyJoined ? 0 : sinceEvents,
                                                   upper: upTo[.roomEvents], membershipAt: membership.streamOrdering,
                                                   receipts: receipts[membership.roomID],
                                                   accountData: roomAccountData[membership.roomID]) {
                    plans.append(plan)
                }
            case "invite", "knock":
                guard since == nil || changed else { continue }
                plans.append(try await strippedRoom(membership, section: membership.membership == "invite" ? .invite : .knock))
            case "leave", "ban":
                guard (since != nil && changed) || (filter.includeLeave && (since == nil || changed)) else { continue }
                // A leave that ends an invite or a knock (never joined): the leave event alone,
                // no room state or history the user never had access to.
                let leaveRow = try await app.database.roomEvents.event(membership.eventID)
                if let leaveRow,
                   (try? JSON.parse(leaveRow.clientJSON))?["unsigned"]?["prev_content"]?["membership"]?.stringValue != "join" {
                    var plan = RoomPlan(roomID: membership.roomID, section: .leave)
                    plan.timeline = [TimelineEvent(position: leaveRow.streamOrdering, eventID: leaveRow.eventID, type: leaveRow.type,
                                                   stateKey: leaveRow.stateKey, sender: leaveRow.sender, bytes: leaveRow.clientJSON)]
                    plan.prevBatch = leaveRow.streamOrdering - 1
                    plans.append(plan)
                    continue
                }
                if var plan = try await joinedRoom(membership.roomID, full: true, after: sinceEvents,
                                                   upper: membership.streamOrdering, membershipAt: membership.streamOrdering,
                                                   receipts: nil, accountData: nil) {
                    plan.section = .leave
                    plan.ephemeral = []
                    plan.unread = nil
                    plan.summary = nil
                    plans.append(plan)
                }
            default:
                continue
            }
        }

        // To-device: acknowledge what `since` covers, then deliver the rest (at least once).
        var toDevice: [[UInt8]] = []
        var toDeviceNext = upTo[.toDevice]
        let deviceKey = user.rawValue + "|" + request.device
        let acknowledged = since?[.toDevice] ?? 0
        let lastAcknowledged = service.toDeviceAcknowledged.withLock { $0[deviceKey] }
        if !request.device.isEmpty,
           full || upTo[.toDevice] > acknowledged || lastAcknowledged == nil || acknowledged > lastAcknowledged! {
            let bound = upTo[.toDevice]
            // Never past what this server has handed out: a token from the future (or from
            // before a restart that reused positions) must not delete unsent messages.
            let rows = try await app.database.toDevice.deliver(to: user, device: request.device,
                                                               acknowledged: min(acknowledged, bound), upTo: bound,
                                                               limit: SendToDevice.maxMessagesPerSync)
            toDevice = rows.map(\.1)
            service.toDeviceAcknowledged.withLock { $0[deviceKey] = acknowledged }
            // A full batch: the token stops at its last message so the rest follows.
            if rows.count == SendToDevice.maxMessagesPerSync, let last = rows.last { toDeviceNext = last.0 }
        }

        // Presence of the user and their room peers, when the stream moved.
        var presence: [[UInt8]] = []
        if app.configuration.presence.enabled, full || upTo[.presence] > since![.presence] {
            let rows = try await app.database.presence.changes(seenBy: user, after: full ? 0 : since![.presence],
                                                               upTo: upTo[.presence])
            let now = Clock.nowMilliseconds()
            for (peer, state, message, lastActive) in rows where filter.presence.allows(type: "m.presence", sender: peer) {
                let ago = max(0, now - lastActive)
                var content: [String: JSON] = ["presence": .string(state), "last_active_ago": .int(ago),
                                               "currently_active": .bool(state == "online" && ago < Presence.currentlyActiveMs)]
                if let message { content["status_msg"] = .string(message) }
                presence.append(JSON.object(["type": "m.presence", "sender": .string(peer), "content": .object(content)]).encoded())
            }
        }

        // Device lists: whose keys to re-fetch or stop tracking (incremental syncs only). The
        // membership part runs only when a room's membership may have moved.
        var deviceLists: (changed: [String], left: [String]) = ([], [])
        if let since {
            let membershipsMoved = plans.contains { plan in
                plan.section == .leave || plan.limited || !plan.stateIDs.isEmpty
                    || plan.timeline.contains { $0.type == "m.room.member" }
            }
            deviceLists = try await app.keys.changes(for: user, since: since, upTo: upTo, membershipsMoved: membershipsMoved)
        }

        if !allowEmpty && plans.isEmpty && globalAccountData.isEmpty && toDevice.isEmpty && presence.isEmpty
            && deviceLists.changed.isEmpty && deviceLists.left.isEmpty { return nil }

        var keyCounts: KeyService.DeviceKeyCounts?
        if !request.device.isEmpty { keyCounts = try await app.keys.counts(of: user, device: request.device) }

        // One read for every state event's client bytes.
        let stateIDs = plans.flatMap(\.stateIDs)
        var stateBytes: [String: [UInt8]] = [:]
        if !stateIDs.isEmpty {
            let rows = try await app.database.roomEvents.events(ids: stateIDs)
            for row in rows { stateBytes[row.eventID] = row.clientJSON }
        }
        var token = upTo
        token[.toDevice] = toDeviceNext
        return assemble(plans, stateBytes: stateBytes, accountData: globalAccountData, toDevice: toDevice,
                        presence: presence, deviceLists: deviceLists, keyCounts: keyCounts, token: token)
    }

    // MARK: joined (and left) rooms

    /// `membershipAt` is the position of the user's current membership event: events before
    /// it may be hidden from them by a history visibility of the time.
    func joinedRoom(_ room: String, full: Bool, after: Int64, upper: Int64, membershipAt: Int64,
                    receipts: [ReceiptStore.Receipt]?, accountData: [[UInt8]]?) async throws -> RoomPlan? {
        let roomID = try RoomID(parsing: room)
        let since = request.since
        var typers: [UserID]?
        if let since, !full {
            typers = service.typing.typers(in: roomID, since: since[.typing] > upTo[.typing] ? 0 : since[.typing])
        } else {
            typers = service.typing.typers(in: roomID, since: 0)
        }
        if !full {
            // Nothing new here: skip without waking the room's actor.
            let last = service.index.lastPosition(of: room)
            if let last, last <= after, typers == nil, receipts == nil, accountData == nil { return nil }
        }
        // The room's actor only when memory here cannot answer (a hop to the registry and to
        // the room, which every member's sync would otherwise queue on).
        var resolvedActor: RoomActor?
        func actor() async throws -> RoomActor {
            if let resolvedActor { return resolvedActor }
            let found = try await service.rooms.room(roomID)
            resolvedActor = found
            // Known from now on, so later syncs skip this room while it stays idle.
            service.index.notePosition(await found.lastStreamOrdering, of: room)
            return found
        }
        let limit = filter.timeline.limit ?? Sync.defaultTimelineLimit
        let timelineFilter = filter.timeline
        let include: (PersistedEvent) -> Bool = { event in
            timelineFilter.passesAll || timelineFilter.allows(type: event.type, sender: event.sender, clientBytes: event.clientBytes)
        }
        var events: [TimelineEvent]
        var limited: Bool
        var ring = service.index.timeline(room, after: after, upTo: upper, limit: limit, include: include)
        if ring == nil { ring = try await actor().timeline(after: after, upTo: upper, limit: limit, include: include) }
        if let fromRing = ring {
            events = fromRing.events.map { TimelineEvent(position: $0.streamOrdering, eventID: $0.eventID.rawValue, type: $0.type,
                                                          stateKey: $0.stateKey, sender: $0.sender, bytes: $0.clientBytes,
                                                          txn: $0.txn, bytesForSender: $0.clientBytesForSender,
                                                          replacesState: $0.replacesState) }
            limited = fromRing.limited
        } else {
            (events, limited) = try await storedTimeline(room, after: after, upper: upper, limit: limit)
        }
        // Rooms whose history is only visible to members since they joined or were invited.
        var historyVisibility = service.index.historyVisibility(of: room)
        if historyVisibility == nil, !events.isEmpty {
            let value = try await actor().stateEvent(StateKey("m.room.history_visibility", ""))?
                .content["history_visibility"]?.stringValue ?? "shared"
            service.index.setHistoryVisibility(value, of: room)
            historyVisibility = value
        }
        var contiguous = timelineFilter.passesAll
        // Checked per event when the room's setting is restrictive now, or when the timeline
        // reaches back before the user's membership (a setting of that time may hide those
        // events even if the room is `shared` now — as `/messages` would hide them). A
        // caught-up sync only carries events after the membership and skips this.
        if historyVisibility == "joined" || historyVisibility == "invited" || (events.first.map { $0.position < membershipAt } ?? false),
           !events.isEmpty {
            let visible = try await visibleOnly(room, events)
            if visible.count != events.count { contiguous = false }
            events = visible
        }
        if !full && events.isEmpty && typers == nil && receipts == nil && accountData == nil { return nil }

        var plan = RoomPlan(roomID: room, section: .join)
        plan.timeline = events
        plan.limited = limited
        plan.prevBatch = (events.first?.position ?? (upper + 1)) - 1
        plan.accountData = accountData ?? []

        // State: everything at the timeline's start (initial, full state, newly joined), the
        // difference since the last sync after a gap, nothing otherwise.
        var currentState: AuthState?
        if full || limited {
            let current = try await actor().stateWithPosition
            currentState = current?.state
            let start = try await stateAtTimelineStart(current, room, events: events, upper: upper,
                                                       contiguous: contiguous)
            var chosen: [StateKey: String] = start
            if !full, let since {
                let sinceState = try await storedState(room, atOrBefore: since[.roomEvents])
                chosen = start.filter { sinceState[$0.key] != $0.value }
            }
            let senders = Set(events.map(\.sender))
            let lazy = filter.lazyLoadMembers
            plan.stateIDs = chosen.filter { key, _ in
                if key.type == "m.room.member" && lazy && !(senders.contains(key.stateKey) || key.stateKey == request.user.rawValue) {
                    return false
                }
                return filter.state.allows(type: key.type, sender: "")
            }.map(\.value)
        }

        // Ephemeral events.
        if let typers, filter.ephemeral.allows(type: "m.typing", sender: "") {
            var typing = RawJSONObject()
            typing.value("type", "m.typing")
            typing.value("content", ["user_ids": .array(typers.map { .string($0.rawValue) })])
            plan.ephemeral.append(typing.finish())
        }
        if let receipts, !receipts.isEmpty, filter.ephemeral.allows(type: "m.receipt", sender: "") {
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
            event.value("type", "m.receipt")
            event.value("content", .object(content))
            plan.ephemeral.append(event.finish())
        }

        // Summary when members may have changed.
        if full || events.contains(where: { $0.type == "m.room.member" }) {
            let state: AuthState
            if let currentState { state = currentState } else { state = try await actor().currentState ?? [:] }
            plan.summary = summary(state)
        }
        plan.unread = try await app.unreadCounts.counts(app, user: request.user, roomID: roomID, actor: actor,
                                                       timeline: events, limited: limited, upper: upper)
        return plan
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

    func visibleOnly(_ room: String, _ events: [TimelineEvent]) async throws -> [TimelineEvent] {
        let user = request.user.rawValue
        let ids = events.map { $0.position }
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
        return events.filter { visible.contains($0.position) }
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
        for (key, pdu) in state where key.type == "m.room.member" {
            switch pdu.membership {
            case "join"?: joined += 1
            case "invite"?: invited += 1
            default: continue
            }
            if key.stateKey != request.user.rawValue { heroes.append(key.stateKey) }
        }
        var out: [String: JSON] = ["m.joined_member_count": .int(Int64(joined)), "m.invited_member_count": .int(Int64(invited))]
        if state[StateKey("m.room.name", "")] == nil && state[StateKey("m.room.canonical_alias", "")] == nil {
            out["m.heroes"] = .array(heroes.sorted().prefix(5).map { .string($0) })
        }
        return .object(out)
    }

    // MARK: invites and knocks

    func strippedRoom(_ membership: MembershipStore.Membership, section: Section) async throws -> RoomPlan {
        let roomID = try RoomID(parsing: membership.roomID)
        let actor = try await service.rooms.room(roomID)
        let state = await actor.currentState ?? [:]
        var stripped: [JSON] = []
        let keys = ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias",
                    "m.room.encryption", "m.room.topic"].map { StateKey($0, "") } + [.member(request.user.rawValue)]
        for key in keys {
            guard let pdu = state[key] else { continue }
            stripped.append(["type": .string(pdu.type), "state_key": .string(pdu.stateKey ?? ""),
                             "content": .object(pdu.content), "sender": .string(pdu.sender.rawValue)])
        }
        var plan = RoomPlan(roomID: membership.roomID, section: section)
        plan.strippedState = stripped
        return plan
    }

    // MARK: assembly

    func assemble(_ plans: [RoomPlan], stateBytes: [String: [UInt8]], accountData: [[UInt8]], toDevice: [[UInt8]],
                  presence: [[UInt8]], deviceLists: (changed: [String], left: [String]) = ([], []),
                  keyCounts: KeyService.DeviceKeyCounts? = nil, token: StreamToken) -> [UInt8] {
        var capacity = 512
        for plan in plans {
            capacity += 400 + plan.timeline.reduce(0) { $0 + $1.bytes.count + 1 }
            capacity += plan.stateIDs.reduce(0) { $0 + (stateBytes[$1]?.count ?? 0) + 1 }
        }
        var out = JSONStreamWriter(capacity: capacity)
        out.beginObject()
        out.value("next_batch", .string(token.serialized))
        if !plans.isEmpty {
            out.beginObject("rooms")
            for section in [Section.join, .invite, .leave, .knock] {
                let members = plans.filter { $0.section == section }
                if members.isEmpty { continue }
                switch section {
                case .join: out.beginObject("join")
                case .invite: out.beginObject("invite")
                case .leave: out.beginObject("leave")
                case .knock: out.beginObject("knock")
                }
                for plan in members {
                    out.beginObject(plan.roomID)
                    switch section {
                    case .invite, .knock:
                        out.beginObject(section == .invite ? "invite_state" : "knock_state")
                        out.value("events", .array(plan.strippedState))
                        out.endObject()
                    case .join, .leave:
                        out.beginObject("timeline")
                        if filter.eventFields != nil {
                            out.rawArray("events", plan.timeline.map { filter.applyingEventFields(clientBytes($0)) })
                        } else {
                            out.rawArray("events", plan.timeline.lazy.map(clientBytes))
                        }
                        out.value("limited", .bool(plan.limited))
                        out.value("prev_batch", .string("t\(plan.prevBatch)"))
                        out.endObject()
                        out.events("state", plan.stateIDs.lazy.compactMap { stateBytes[$0] }
                            .map { filter.eventFields == nil ? $0 : filter.applyingEventFields($0) })
                        out.events("account_data", plan.accountData)
                        if section == .join {
                            out.events("ephemeral", plan.ephemeral)
                            if let summary = plan.summary { out.value("summary", summary) }
                            if let unread = plan.unread {
                                // Threads apart only for clients that ask (the timeline filter's
                                // `unread_thread_notifications`); otherwise one figure.
                                let threaded = filter.timeline.unreadThreadNotifications
                                let main = threaded ? unread.main : unread.total
                                out.beginObject("unread_notifications")
                                out.value("notification_count", .int(Int64(main.notify)))
                                out.value("highlight_count", .int(Int64(main.highlight)))
                                out.endObject()
                                let threads = unread.threads.filter { $0.value.notify > 0 || $0.value.highlight > 0 }
                                if threaded && !threads.isEmpty {
                                    out.beginObject("unread_thread_notifications")
                                    for (root, counts) in threads.sorted(by: { $0.key < $1.key }) {
                                        out.beginObject(root)
                                        out.value("notification_count", .int(Int64(counts.notify)))
                                        out.value("highlight_count", .int(Int64(counts.highlight)))
                                        out.endObject()
                                    }
                                    out.endObject()
                                }
                            }
                        }
                    }
                    out.endObject()
                }
                out.endObject()
            }
            out.endObject()
        }
        if !presence.isEmpty { out.events("presence", presence) }
        if !accountData.isEmpty { out.events("account_data", accountData) }
        if !toDevice.isEmpty { out.events("to_device", toDevice) }
        if !deviceLists.changed.isEmpty || !deviceLists.left.isEmpty {
            out.beginObject("device_lists")
            if !deviceLists.changed.isEmpty { out.value("changed", .array(deviceLists.changed.map { .string($0) })) }
            if !deviceLists.left.isEmpty { out.value("left", .array(deviceLists.left.map { .string($0) })) }
            out.endObject()
        }
        // Always present, as in Synapse (clients decide from it whether to upload more keys).
        let counts = keyCounts?.oneTimeKeys ?? ["signed_curve25519": 0]
        out.value("device_one_time_keys_count", .object(counts.mapValues { .int(Int64($0)) }))
        let fallback = JSON.array((keyCounts?.unusedFallbackTypes ?? []).map { .string($0) })
        out.value("device_unused_fallback_key_types", fallback)
        out.value("org.matrix.msc2732.device_unused_fallback_key_types", fallback)
        out.endObject()
        return out.bytes
    }

    /// The stored client bytes, with `unsigned.transaction_id` for the device that sent it.
    func clientBytes(_ event: TimelineEvent) -> [UInt8] {
        guard let txn = event.txn, txn.userID == request.user.rawValue, txn.deviceID == request.device else { return event.bytes }
        return event.bytesForSender ?? PersistedEvent.withTransactionID(event.bytes, txn.txnID) ?? event.bytes
    }
}
