import Actors
import Matrix
import Persistence

/// Checks and lookups of PDUs for the federation handlers and the joining side: signatures
/// and content hashes of received events (server-server API, "Checks performed on receipt
/// of a PDU", steps 1-2), server ACLs, the auth chain and the state at an event, and the
/// bounded walk backwards through `prev_events` that serves `get_missing_events` and
/// `backfill`.
enum FederationPDUs {
    /// Auth chains and state answers hold at most this many events.
    static let maxChainEvents = 50_000

    // MARK: Receipt checks

    /// Parses a received event for `version` and verifies the signatures it needs (the key
    /// ring's `verify(pdu:roomVersion:)`: format, required signers with keys valid at the
    /// event's time, content hash). A wrong content hash yields the redacted event, as the
    /// specification says.
    static func verifyPDUSignatures(_ json: JSON, version: RoomVersion, keyRing: ServerKeyRing) async throws -> PDU {
        try await keyRing.verify(pdu: json, roomVersion: version).pdu
    }

    /// Adds this server's signature to an event another server built (invites received,
    /// restricted joins authorised here).
    static func countersigned(_ json: JSON, version: RoomVersion, app: MyelinApp) throws -> JSON {
        try app.signingKey.sign(event: json, roomVersion: version, serverName: app.localServer.rawValue)
    }

    /// Whether the room's `m.room.server_acl` lets `server` take part (server-server API,
    /// "Server Access Control Lists"); no ACL allows everyone.
    static func aclAllows(_ server: ServerName, state: AuthState?) -> Bool {
        guard let content = state?[StateKey(EventType.roomServerACL, "")]?.content else { return true }
        return ServerACL(content: content).allows(server)
    }

    /// Refuses a server the room's ACL denies (403).
    static func requireACL(_ server: ServerName, _ actor: RoomActor) async throws {
        guard aclAllows(server, state: await actor.currentState) else {
            throw MatrixError(.forbidden, "Server is banned from this room")
        }
    }

    // MARK: Lookups

    /// Events by id with their rows, parsed for `version`; unknown ones skipped.
    static func load(_ ids: [String], version: RoomVersion, app: MyelinApp) async throws -> [(RoomEventStore.EventRow, PDU)] {
        guard !ids.isEmpty else { return [] }
        let rows = try await app.database.read { db in try RoomEventStore.events(db, ids: ids) }
        return rows.compactMap { row in
            guard let id = try? EventID(parsing: row.eventID), let pdu = try? PDU(bytes: row.json, roomVersion: version, eventID: id)
            else { return nil }
            return (row, pdu)
        }
    }

    /// The auth chain of `events` (their auth events, recursively), bounded.
    static func authChain(of events: [PDU], roomID: RoomID, version: RoomVersion, app: MyelinApp) async throws -> [PDU] {
        var seen: Set<EventID> = Set(events.map(\.eventID))
        var chain: [PDU] = []
        var wanted = Set(events.flatMap(\.authEvents))
        while !wanted.isEmpty && chain.count < maxChainEvents {
            let loaded = try await load(wanted.map(\.rawValue), version: version, app: app)
            wanted = []
            for (row, pdu) in loaded where row.roomID == roomID.rawValue && !chain.contains(where: { $0.eventID == pdu.eventID }) {
                chain.append(pdu)
                seen.insert(pdu.eventID)
                for auth in pdu.authEvents where !seen.contains(auth) { wanted.insert(auth) }
            }
            if loaded.isEmpty { break }
        }
        return chain
    }

    /// The state of the room before `eventID` (the state after it, with the event's own entry
    /// replaced by the one it replaced, as Synapse answers `/state_ids`), or nil if unknown.
    static func stateBefore(_ eventID: EventID, roomID: RoomID, version: RoomVersion, app: MyelinApp) async throws -> [PDU]? {
        let key = roomID.rawValue
        let entries = try await app.database.read { db -> [RoomEventStore.StateEntry]? in
            guard let row = try RoomEventStore.event(db, eventID: eventID.rawValue), row.roomID == key, RoomEventStore.isTimeline(row.streamOrdering) else {
                return nil
            }
            var entries = try RoomEventStore.state(db, group: row.stateGroup)
            if let stateKey = row.stateKey, let index = entries.firstIndex(where: { $0.type == row.type && $0.stateKey == stateKey }),
               entries[index].eventID == row.eventID {
                let replaced = (try? JSON.parse(row.clientJSON))?["unsigned"]?["replaces_state"]?.stringValue
                if let replaced { entries[index].eventID = replaced } else { entries.remove(at: index) }
            }
            return entries
        }
        guard let entries else { return nil }
        return try await load(entries.map(\.eventID), version: version, app: app).map(\.1)
    }

    /// Walks back from `latest` through `prev_events`, breadth first, not past `earliest`
    /// nor below `minDepth`: at most `limit` events, oldest first (`get_missing_events`,
    /// `backfill`).
    static func walkBack(from latest: [EventID], earliest: Set<EventID>, minDepth: Int64, limit: Int, includeLatest: Bool,
                         roomID: RoomID, version: RoomVersion, app: MyelinApp) async throws -> [PDU] {
        var seen = earliest.union(latest)
        var found: [PDU] = []
        var frontier: [EventID]
        if includeLatest {
            let start = try await load(latest.map(\.rawValue), version: version, app: app)
                .filter { $0.0.roomID == roomID.rawValue && RoomEventStore.isTimeline($0.0.streamOrdering) }.map(\.1)
            found = Array(start.prefix(limit))
            frontier = start.flatMap(\.prevEvents)
        } else {
            frontier = try await load(latest.map(\.rawValue), version: version, app: app)
                .filter { $0.0.roomID == roomID.rawValue }.flatMap(\.1.prevEvents)
        }
        while !frontier.isEmpty && found.count < limit {
            let next = frontier.filter { seen.insert($0).inserted }
            frontier = []
            for (row, pdu) in try await load(next.map(\.rawValue), version: version, app: app)
            where row.roomID == roomID.rawValue && RoomEventStore.isTimeline(row.streamOrdering) && pdu.depth >= minDepth && found.count < limit {
                found.append(pdu)
                frontier.append(contentsOf: pdu.prevEvents)
            }
        }
        return found.sorted { $0.depth < $1.depth }
    }

    /// The federation form of events for an answer.
    static func wire(_ pdus: [PDU]) -> JSON {
        .array(pdus.map { pdu in pdu.bytes.flatMap { try? JSON.parse($0) } ?? .object(pdu.json) })
    }
}
