import Actors
import Logging
import Matrix
import Persistence

/// The EDUs of an inbound transaction (server-server API "Transactions" and "EDUs"):
/// typing, receipts, presence, to-device messages and device list updates. Each is
/// checked against the transaction's origin: a server speaks only for its own users
/// (spec: "the origin server must be the sender's server"), and only in rooms where such a
/// user is joined. What does not pass is ignored, as Synapse does: one bad EDU does not
/// fail the transaction. Called by the `/send/{txnId}` handler with the authenticated
/// origin.
extension MyelinApp {
    /// EDUs accepted from one transaction, at most (spec: a transaction holds at most 100).
    static let maxInboundEDUs = 100
    /// Entries taken from one EDU's lists (receipt users, presence pushes, to-device targets).
    static let maxEDUEntries = 1_000
    /// How long a remote user's typing notice lasts without being re-sent (Synapse's
    /// federation typing timeout).
    static let remoteTypingMilliseconds: Int64 = 60_000

    func receiveEDUs(_ edus: [JSON], origin: ServerName) async {
        await roomService.federation.heardFrom(origin)
        for edu in edus.prefix(Self.maxInboundEDUs) {
            guard let type = edu["edu_type"]?.stringValue, let content = edu["content"]?.objectValue else { continue }
            do {
                switch type {
                case "m.typing": try await receiveTyping(content, origin: origin)
                case "m.receipt": try await receiveReceipts(content, origin: origin)
                case "m.presence": try await receivePresence(content, origin: origin)
                case "m.direct_to_device": try await receiveToDevice(content, origin: origin)
                case "m.device_list_update", "m.signing_key_update":
                    try await receiveKeyUpdate(type, content, origin: origin)
                default: continue
                }
            } catch {
                logger.info("EDU \(type.prefix(64)) from \(origin) ignored: \(error)")
            }
        }
    }

    /// The user named by `value`, if it parses and belongs to `origin`.
    private func remoteUser(_ value: JSON?, of origin: ServerName) -> UserID? {
        guard let text = value?.stringValue, let user = try? UserID(parsing: text), user.serverName == origin else { return nil }
        return user
    }

    private func isJoined(_ user: UserID, _ room: RoomID) async throws -> Bool {
        try await database.memberships.membership(of: user, in: room)?.membership == MembershipState.join
    }

    /// `m.typing` (spec: "Typing Notifications", federation).
    private func receiveTyping(_ content: [String: JSON], origin: ServerName) async throws {
        guard let user = remoteUser(content["user_id"], of: origin),
              let roomText = content["room_id"]?.stringValue, let room = try? RoomID(parsing: roomText),
              let typing = content["typing"]?.boolValue, try await isJoined(user, room),
              await serverAllowed(origin, in: room) else { return }
        // Remote typing expires after a minute unless the remote re-sends it, as Synapse's
        // does (its servers re-send every 40 s while the user keeps typing).
        let until: Int64? = typing ? Clock.nowMilliseconds() + Self.remoteTypingMilliseconds : nil
        if let position = roomService.typing.set(user, in: room, until: until) {
            await roomService.notifyMembers(of: room, StreamChange(.typing, position))
        }
    }

    /// `m.receipt`: `{room_id: {receipt_type: {user_id: {event_ids, data}}}}`.
    private func receiveReceipts(_ content: [String: JSON], origin: ServerName) async throws {
        var taken = 0
        for (roomText, byType) in content.prefix(Self.maxEDUEntries) {
            guard let room = try? RoomID(parsing: roomText), let byType = byType.objectValue,
                  await serverAllowed(origin, in: room) else { continue }
            // m.read.private never leaves its server.
            guard let byUser = byType[ReceiptType.read]?.objectValue else { continue }
            for (userText, receipt) in byUser {
                taken += 1
                if taken > Self.maxEDUEntries { return }
                guard let user = remoteUser(.string(userText), of: origin),
                      let eventID = receipt["event_ids"]?.arrayValue?.first?.stringValue,
                      (try? EventID(parsing: eventID)) != nil, try await isJoined(user, room) else { continue }
                let thread = receipt["data"]?["thread_id"]?.stringValue ?? ""
                guard thread.isEmpty || thread == "main" || (try? EventID(parsing: thread)) != nil else { continue }
                let ts = receipt["data"]?["ts"]?.intValue ?? Clock.nowMilliseconds()
                let row = ReceiptStore.Receipt(roomID: room.rawValue, type: ReceiptType.read, userID: user.rawValue,
                                               threadID: thread, eventID: eventID, ts: ts, streamID: 0)
                let position = try await roomService.receipts.put(row)
                await roomService.notifyMembers(of: room, StreamChange(.receipts, position))
            }
        }
    }

    /// `m.presence`: `{push: [{user_id, presence, last_active_ago, status_msg}]}`; ignored
    /// when presence is disabled here.
    private func receivePresence(_ content: [String: JSON], origin: ServerName) async throws {
        guard configuration.presence.enabled, let pushes = content["push"]?.arrayValue else { return }
        let states: Set<String> = ["online", "offline", "unavailable"]
        var changes: [(userID: UserID, presence: PresenceStore.Presence)] = []
        for push in pushes.prefix(Self.maxEDUEntries) {
            guard let user = remoteUser(push["user_id"], of: origin),
                  let state = push["presence"]?.stringValue, states.contains(state) else { continue }
            let ago = min(max(push["last_active_ago"]?.intValue ?? 0, 0), Int64(1) << 40)
            let message = push["status_msg"]?.stringValue.map { String($0.prefix(1024)) }
            changes.append((user, PresenceStore.Presence(state: state, statusMessage: message,
                                                         lastActiveTs: Clock.nowMilliseconds() - ago)))
        }
        // Only users someone here shares a room with (a server cannot fill our table with
        // presence of strangers).
        var shared: [(userID: UserID, presence: PresenceStore.Presence)] = []
        for change in changes.prefix(100) where try await sharesARoom(with: change.userID) {
            shared.append(change)
        }
        changes = shared
        guard !changes.isEmpty else { return }
        try await Presence.store(self, typed: changes)
    }

    /// `m.direct_to_device`: `{sender, type, message_id, messages: {user: {device: content}}}`
    /// for local users; stored once per (sender, message_id).
    private func receiveToDevice(_ content: [String: JSON], origin: ServerName) async throws {
        guard let sender = remoteUser(content["sender"], of: origin),
              let type = content["type"]?.stringValue, !type.isEmpty, type.utf8.count <= 255,
              let messageID = content["message_id"]?.stringValue, messageID.utf8.count <= 255,
              let messages = content["messages"]?.objectValue else { return }
        let local = try ServerName(parsing: configuration.serverName)
        var rows: [ToDeviceService.Message] = []
        for (target, byDevice) in messages.prefix(Self.maxEDUEntries) {
            guard let user = try? UserID(parsing: target), user.serverName == local,
                  let byDevice = byDevice.objectValue else { continue }
            for (device, message) in byDevice.prefix(Self.maxEDUEntries) where message.objectValue != nil {
                let event: JSON = ["type": .string(type), "sender": .string(sender.rawValue), "content": message]
                let devices = device == "*" ? try await database.devices.devices(of: user).map(\.deviceID) : [device]
                for device in devices { rows.append(.init(user: user, device: device, bytes: event.encoded())) }
            }
        }
        guard !rows.isEmpty else { return }
        // The message id is the transaction, per origin (spec: `message_id` is unique per
        // sending server; Synapse keys its inbox by (origin, message_id)): a retried
        // transaction or a replayed EDU stores nothing.
        if let position = try await roomService.toDevice.send(rows, from: sender, device: "",
                                                              txnID: "federation/" + origin.rawValue + "/" + messageID) {
            roomService.fanout.notify(Set(rows.map(\.user)), of: StreamChange(.toDevice, position))
        }
    }

    /// `m.device_list_update` and `m.signing_key_update`: the remote user's devices or
    /// cross-signing keys changed; the cache follows (`RemoteDeviceLists`) and local users
    /// sharing a room with them see the user in `device_lists.changed`.
    private func receiveKeyUpdate(_ type: String, _ content: [String: JSON], origin: ServerName) async throws {
        guard let user = remoteUser(content["user_id"], of: origin) else { return }
        if type == "m.device_list_update" {
            try await applyDeviceListUpdate(content, user: user)
        } else {
            try await applySigningKeyUpdate(content, user: user)
        }
    }
}
