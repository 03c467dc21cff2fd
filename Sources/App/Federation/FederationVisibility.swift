import Actors
import Matrix
import Persistence

/// What another server may read of a room's history (server-server API, "Retrieving events":
/// the server only gets events its users may see; Synapse's `filter_events_for_server`).
/// An event whose history visibility at it is `invited` or `joined` is served whole only when
/// the asking server had a member invited (for `invited`) or joined at it; otherwise redacted,
/// so that the DAG stays walkable. `shared` and `world_readable` events are served whole.
/// Used by `/backfill`, `/get_missing_events` and `/event`.
enum FederationVisibility {
    /// `events` as `server` may see them, in the same order.
    static func filter(_ events: [PDU], for server: ServerName, version: RoomVersion, app: MyelinApp) async throws -> [PDU] {
        guard !events.isEmpty else { return [] }
        let ids = events.map(\.eventID.rawValue)
        let suffix = ":" + server.rawValue
        let allowed = try await app.database.read { db -> [String: Bool] in
            var byGroup: [Int64: Bool] = [:]
            var result: [String: Bool] = [:]
            for row in try RoomEventStore.events(db, ids: ids) {
                if let known = byGroup[row.stateGroup] { result[row.eventID] = known; continue }
                let visible = try visibleAt(group: row.stateGroup, suffix: suffix, db)
                byGroup[row.stateGroup] = visible
                result[row.eventID] = visible
            }
            return result
        }
        return events.map { pdu in
            guard allowed[pdu.eventID.rawValue] == false,
                  let redacted = try? PDU(json: .object(Redaction.redact(pdu.json, roomVersion: version)), roomVersion: version,
                                          eventID: pdu.eventID) else { return pdu }
            return redacted
        }
    }

    /// Whether the state of `group` lets a server whose users' ids end in `suffix` see.
    static func visibleAt(group: Int64, suffix: String, _ db: any SQLConnection) throws -> Bool {
        let entries = try RoomEventStore.state(db, group: group).filter {
            ($0.type == EventType.roomHistoryVisibility && $0.stateKey.isEmpty)
                || ($0.type == EventType.roomMember && $0.stateKey.hasSuffix(suffix))
        }
        var visibility = HistoryVisibility.shared
        var memberships: [String] = []
        for row in try RoomEventStore.events(db, ids: entries.map(\.eventID)) {
            let content = try JSON.parse(row.json)["content"]
            if row.type == EventType.roomHistoryVisibility {
                visibility = HistoryVisibility(content: content?["history_visibility"]?.stringValue)
            } else if let membership = content?["membership"]?.stringValue {
                memberships.append(membership)
            }
        }
        switch visibility {
        case .worldReadable, .shared: return true
        case .invited: return memberships.contains(MembershipState.join.rawValue) || memberships.contains(MembershipState.invite.rawValue)
        case .joined: return memberships.contains(MembershipState.join.rawValue)
        }
    }
}
