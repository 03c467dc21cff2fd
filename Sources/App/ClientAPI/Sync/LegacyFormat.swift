import Matrix
import Persistence

/// The shapes of the legacy endpoints (`/initialSync`, `/rooms/{roomId}/initialSync`,
/// `/events`) that differ from `/sync`, as Synapse still serves them: events carry `user_id`
/// (the sender, the v1 client format), and presence lists the user and every member of
/// their rooms, `offline` when nothing is stored, with `user_id` in the content.
enum LegacyFormat {
    /// Users whose presence one legacy answer lists at most.
    static let maxPresenceUsers = 1000

    /// An encoded event with `user_id` added (its sender); unchanged when it has none.
    static func withUserID(_ event: [UInt8]) -> [UInt8] {
        guard case .object(var object)? = try? JSON.parse(event), let sender = object["sender"], object["user_id"] == nil else {
            return event
        }
        object["user_id"] = sender
        return JSON.object(object).encoded()
    }

    /// Presence events of `user` and the joined members of `rooms`.
    static func presence(_ app: MyelinApp, _ user: UserID, rooms: [String]) async throws -> [[UInt8]] {
        guard app.configuration.presence.enabled else { return [] }
        var users: Set<String> = [user.rawValue]
        for room in rooms {
            guard users.count < maxPresenceUsers, let roomID = try? RoomID(parsing: room) else { break }
            for member in try await app.database.memberships.members(of: roomID)
            where member.membership == MembershipState.join.rawValue && users.count < maxPresenceUsers {
                users.insert(member.userID)
            }
        }
        let ids = users.sorted().compactMap { try? UserID(parsing: $0) }
        let stored = try await app.database.presence.presences(of: ids)
        let now = Clock.nowMilliseconds()
        return ids.map { id in
            let found = stored[id]
            var content: [String: JSON] = ["user_id": .string(id.rawValue), "presence": .string(found?.state ?? "offline"),
                                           "status_msg": found?.statusMessage.map(JSON.string) ?? .null]
            if let found {
                let ago = max(0, now - found.lastActiveTs)
                content["last_active_ago"] = .int(ago)
                content["currently_active"] = .bool(found.state == "online" && ago < Presence.currentlyActiveMs)
            }
            return JSON.object(["type": .string(EventType.presence), "sender": .string(id.rawValue),
                                "content": .object(content)]).encoded()
        }
    }
}
