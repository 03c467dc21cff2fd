import Actors
import Matrix
import Persistence
import Transport

/// A sync response before encoding: what `SyncBuilder` gathered, with the client bytes of
/// the events it names. `/sync` encodes it with `encoded(for:_:)` (stored bytes
/// concatenated, never parsed); `LegacySync` shapes the same parts its own way.
final class SyncResult {
    let rooms: [SyncBuilder.RoomPlan]
    /// Client bytes of the planned state events, by event id.
    let stateBytes: [String: [UInt8]]
    /// Global account data events.
    let accountData: [[UInt8]]
    let toDevice: [[UInt8]]
    let presence: [[UInt8]]
    let deviceLists: (changed: [String], left: [String])
    let keyCounts: KeyService.DeviceKeyCounts?
    let token: StreamToken

    /// A class, not a struct: the async frames a response passes through hold a reference,
    /// not its eight fields.
    init(rooms: [SyncBuilder.RoomPlan], stateBytes: [String: [UInt8]], accountData: [[UInt8]], toDevice: [[UInt8]],
         presence: [[UInt8]], deviceLists: (changed: [String], left: [String]), keyCounts: KeyService.DeviceKeyCounts?,
         token: StreamToken) {
        self.rooms = rooms
        self.stateBytes = stateBytes
        self.accountData = accountData
        self.toDevice = toDevice
        self.presence = presence
        self.deviceLists = deviceLists
        self.keyCounts = keyCounts
        self.token = token
    }

    /// The client bytes of a timeline event as `request`'s device sees them: with
    /// `unsigned.transaction_id` for the device that sent it.
    static func clientBytes(_ event: SyncBuilder.TimelineEvent, for request: Sync.Request) -> [UInt8] {
        guard let txn = event.txn, txn.userID == request.user.rawValue, txn.deviceID == request.device else { return event.bytes }
        return event.bytesForSender ?? PersistedEvent.withTransactionID(event.bytes, txn.txnID) ?? event.bytes
    }

    /// The planned state events' client bytes of `plan`, in plan order.
    func stateEvents(of plan: SyncBuilder.RoomPlan) -> [[UInt8]] { plan.stateIDs.compactMap { stateBytes[$0] } }

    // MARK: the /sync encoding

    /// The `/sync` response body.
    func encoded(for request: Sync.Request, _ filter: SyncFilter) -> [UInt8] {
        var capacity = 512
        for plan in rooms {
            capacity += 400 + plan.timeline.reduce(0) { $0 + $1.bytes.count + 1 }
            capacity += plan.stateIDs.reduce(0) { $0 + (stateBytes[$1]?.count ?? 0) + 1 }
        }
        var out = JSONStreamWriter(capacity: capacity)
        out.beginObject()
        out.value("next_batch", .string(token.serialized))
        if !rooms.isEmpty { writeRooms(&out, request, filter) }
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

    private static let sections: [(SyncBuilder.Section, String)] = [(.join, "join"), (.invite, "invite"),
                                                                    (.leave, "leave"), (.knock, "knock")]

    /// `rooms`: `join`, `invite`, `leave`, `knock`, each by room id.
    private func writeRooms(_ out: inout JSONStreamWriter, _ request: Sync.Request, _ filter: SyncFilter) {
        out.beginObject("rooms")
        for (section, name) in Self.sections {
            let members = rooms.filter { $0.section == section }
            if members.isEmpty { continue }
            out.beginObject(name)
            for plan in members {
                out.beginObject(plan.roomID)
                switch section {
                case .invite, .knock:
                    out.beginObject(section == .invite ? "invite_state" : "knock_state")
                    out.value("events", .array(plan.strippedState))
                    out.endObject()
                case .join, .leave:
                    writeRoom(&out, plan, joined: section == .join, request, filter)
                }
                out.endObject()
            }
            out.endObject()
        }
        out.endObject()
    }

    /// A joined or left room: timeline, state, account data; for a joined room also
    /// ephemeral events, the summary and the unread counts.
    private func writeRoom(_ out: inout JSONStreamWriter, _ plan: SyncBuilder.RoomPlan, joined: Bool,
                           _ request: Sync.Request, _ filter: SyncFilter) {
        out.beginObject("timeline")
        if filter.eventFields != nil {
            out.rawArray("events", plan.timeline.map { filter.applyingEventFields(Self.clientBytes($0, for: request)) })
        } else {
            out.rawArray("events", plan.timeline.lazy.map { Self.clientBytes($0, for: request) })
        }
        out.value("limited", .bool(plan.limited))
        out.value("prev_batch", .string("t\(plan.prevBatch)"))
        out.endObject()
        out.events("state", plan.stateIDs.lazy.compactMap { self.stateBytes[$0] }
            .map { filter.eventFields == nil ? $0 : filter.applyingEventFields($0) })
        out.events("account_data", plan.accountData)
        guard joined else { return }
        out.events("ephemeral", plan.ephemeral)
        if let summary = plan.summary { out.value("summary", summary) }
        if let unread = plan.unread { Self.writeUnread(&out, unread, threaded: filter.timeline.unreadThreadNotifications) }
    }

    /// Threads apart only for clients that ask (the timeline filter's
    /// `unread_thread_notifications`); otherwise one figure.
    private static func writeUnread(_ out: inout JSONStreamWriter, _ unread: UnreadCounts.RoomCounts, threaded: Bool) {
        let main = threaded ? unread.main : unread.total
        out.beginObject("unread_notifications")
        out.value("notification_count", .int(Int64(main.notify)))
        out.value("highlight_count", .int(Int64(main.highlight)))
        out.endObject()
        let threads = unread.threads.filter { $0.value.notify > 0 || $0.value.highlight > 0 }
        guard threaded && !threads.isEmpty else { return }
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
