import Actors
import Matrix
import Persistence

/// EDUs this server sends for its users (server-server API "EDUs"): queued on the
/// destinations of the remote servers with joined members in the room (typing, receipts)
/// or of the recipients (to-device, persisted before the client's send is answered).
/// Called by the client-server handlers after the local change; nothing happens before a
/// `FederationRequesting` is connected.
extension MyelinApp {
    /// The remote servers with joined members in `room`.
    func remoteServers(in room: RoomID) async -> Set<ServerName> {
        guard roomService.federation.isConnected,
              let servers = try? await FederationQueries.servers(of: room, self) else { return [] }
        return Set(servers.filter { $0.rawValue != configuration.serverName })
    }

    /// `m.typing` of a local user (coalesced per user and room, dropped when stale).
    func sendTypingEDU(_ user: UserID, in room: RoomID, typing: Bool) async {
        let servers = await remoteServers(in: room)
        guard !servers.isEmpty else { return }
        let edu: JSON = ["edu_type": "m.typing", "content": ["room_id": .string(room.rawValue),
                                                               "user_id": .string(user.rawValue), "typing": .bool(typing)]]
        await roomService.federation.enqueue(edu, key: .typing(room: room.rawValue, user: user.rawValue), to: servers)
    }

    /// A public `m.read` receipt of a local user.
    func sendReceiptEDU(_ user: UserID, in room: RoomID, eventID: String, thread: String) async {
        let servers = await remoteServers(in: room)
        guard !servers.isEmpty else { return }
        var data: [String: JSON] = ["ts": .int(Clock.nowMilliseconds())]
        if !thread.isEmpty { data["thread_id"] = .string(thread) }
        let receipt: JSON = ["event_ids": [.string(eventID)], "data": .object(data)]
        let edu: JSON = ["edu_type": "m.receipt",
                         "content": [room.rawValue: [ReceiptType.read: [user.rawValue: receipt]]]]
        await roomService.federation.enqueue(edu, key: .receipt(room: room.rawValue, type: ReceiptType.read,
                                                                user: user.rawValue, thread: thread), to: servers)
    }

    /// Persists `m.direct_to_device` EDUs for remote recipients (one per server), once per
    /// client transaction, then wakes their destinations.
    func sendToDeviceEDUs(from sender: UserID, device: String, txnID: String, type: String,
                          messages: [ServerName: [String: JSON]]) async throws {
        guard !messages.isEmpty else { return }
        let messageID = Self.toDeviceMessageID(sender: sender, device: device, txnID: txnID)
        let edus = messages.map { server, byUser -> (destination: ServerName, edu: JSON) in
            (server, ["edu_type": "m.direct_to_device",
                      "content": ["sender": .string(sender.rawValue), "type": .string(type),
                                  "message_id": .string(messageID), "messages": .object(byUser)]])
        }
        guard try await database.federationOutbox.queueToDevice(from: sender, device: device, txnID: txnID, edus: edus) else {
            return
        }
        await roomService.federation.wakeToDevice(Set(messages.keys))
    }

    /// The `message_id` of a client's to-device send: unique per origin (the receiver drops a
    /// second EDU with the same origin and id, as Synapse does, so two users' devices with the
    /// same id and transaction id must not collide), the same for a retried send, and short.
    static func toDeviceMessageID(sender: UserID, device: String, txnID: String) -> String {
        let digest = sha256(Array((sender.rawValue + "\u{0}" + device + "\u{0}" + txnID).utf8))
        let hex: [Character] = Array("0123456789abcdef")
        return String(digest.prefix(16).flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] })
    }

    /// `m.presence` of local users to the remote servers among `peers` (coalesced per user,
    /// dropped when stale). Presence of remote users is never relayed.
    func sendPresenceEDUs(typed changes: [(userID: UserID, presence: PresenceStore.Presence)], peers: Set<UserID>) async {
        guard configuration.presence.enabled, roomService.federation.isConnected else { return }
        let servers = Set(peers.map(\.serverName).filter { $0.rawValue != configuration.serverName })
        guard !servers.isEmpty else { return }
        let now = Clock.nowMilliseconds()
        for change in changes where change.userID.serverName.rawValue == configuration.serverName {
            var push: [String: JSON] = ["user_id": .string(change.userID.rawValue), "presence": .string(change.presence.state),
                                        "last_active_ago": .int(max(now - change.presence.lastActiveTs, 0)),
                                        "currently_active": .bool(change.presence.state == "online")]
            if let message = change.presence.statusMessage { push["status_msg"] = .string(message) }
            await roomService.federation.enqueue(["edu_type": "m.presence", "content": ["push": [.object(push)]]],
                                                 key: .presence(user: change.userID.rawValue), to: servers)
        }
    }
}
