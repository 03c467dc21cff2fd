import Actors
import Matrix
import Persistence

/// The state before an event whose prev events this server cannot get (server-server API,
/// "Retrieving events" and "If the missing events cannot be retrieved..."): `GET /state_ids`
/// at the event from a server that has it, then the state events this server lacks, one by
/// one with `GET /event` when few, else all at once with `GET /state`; each verified
/// (signatures, content hash) and stored as an outlier. Bounded in ids read and events
/// fetched. Used by the inbound path (`FederationInbound`) and by backfill.
enum FederationGaps {
    /// State ids read from one answer at most.
    static let maxStateIDs = 20_000
    /// Missing state events fetched one by one at most; more take one `/state` request.
    static let maxEventFetches = 50

    /// For the events of `batch` (oldest first) whose prev events are neither in the batch
    /// nor in this server's timeline: the state before each (at most `limit` fetches).
    static func statesForGaps(_ batch: [PDU], roomID: RoomID, version: RoomVersion, server: ServerName, limit: Int,
                              actor: RoomActor, app: MyelinApp) async -> [EventID: [PDU]] {
        let inBatch = Set(batch.map(\.eventID))
        let prevs = Set(batch.flatMap(\.prevEvents)).subtracting(inBatch).map(\.rawValue)
        guard !prevs.isEmpty, let rows = try? await app.database.read({ db in try RoomEventStore.events(db, ids: prevs) }) else {
            return [:]
        }
        let timeline = Set(rows.filter { $0.roomID == roomID.rawValue && RoomEventStore.isTimeline($0.streamOrdering) }.map(\.eventID))
        // Concurrent events with the same prev events have the same state before them: one
        // fetch per set of prev events.
        var states: [EventID: [PDU]] = [:]
        var bySet: [[EventID]: [PDU]?] = [:]
        for pdu in batch.sorted(by: { $0.depth < $1.depth }) {
            let gap = pdu.prevEvents.contains { !inBatch.contains($0) && !timeline.contains($0.rawValue) }
            guard gap else { continue }
            let key = pdu.prevEvents.sorted { $0.rawValue < $1.rawValue }
            if bySet[key] == nil {
                guard bySet.count < limit else { continue }
                bySet[key] = .some(await stateBefore(pdu.eventID, roomID: roomID, version: version, server: server, actor: actor, app: app))
            }
            if let state = bySet[key] ?? nil { states[pdu.eventID] = state }
        }
        return states
    }

    /// The state before `eventID` as `server` has it, or nil when it cannot be had whole
    /// enough to authorise events (no `m.room.create`).
    static func stateBefore(_ eventID: EventID, roomID: RoomID, version: RoomVersion, server: ServerName, actor: RoomActor,
                            app: MyelinApp) async -> [PDU]? {
        let room = FederationLink.segment(roomID.rawValue), event = FederationLink.segment(eventID.rawValue)
        guard let answer = try? await app.federationLink.call(server, "GET", "/_matrix/federation/v1/state_ids/\(room)?event_id=\(event)")
        else { return nil }
        let ids = Set((answer["pdu_ids"]?.arrayValue ?? []).prefix(maxStateIDs).compactMap { $0.stringValue.flatMap { try? EventID(parsing: $0) } })
        guard !ids.isEmpty, let stored = try? await FederationPDUs.load(ids.map(\.rawValue), version: version, app: app) else {
            return nil
        }
        var state = stored.filter { $0.0.roomID == roomID.rawValue }.map(\.1)
        let missing = ids.subtracting(state.map(\.eventID))
        var fetched: [PDU] = []
        if missing.count <= maxEventFetches {
            for id in missing.sorted(by: { $0.rawValue < $1.rawValue }) {
                let path = "/_matrix/federation/v1/event/\(FederationLink.segment(id.rawValue))"
                guard let reply = try? await app.federationLink.call(server, "GET", path), let raw = reply["pdus"]?.arrayValue?.first,
                      let pdu = try? await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing),
                      pdu.eventID == id, pdu.effectiveRoomID == roomID else { continue }
                fetched.append(pdu)
            }
        } else if let reply = try? await app.federationLink.call(server, "GET", "/_matrix/federation/v1/state/\(room)?event_id=\(event)") {
            let raws = (reply["pdus"]?.arrayValue ?? []).prefix(maxStateIDs) + (reply["auth_chain"]?.arrayValue ?? []).prefix(maxStateIDs)
            for raw in raws {
                guard let pdu = try? await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing),
                      pdu.effectiveRoomID == roomID else { continue }
                fetched.append(pdu)
            }
        }
        if !fetched.isEmpty { try? await actor.storeOutliers(fetched) }
        state += fetched.filter { missing.contains($0.eventID) }
        guard state.contains(where: { $0.type == EventType.roomCreate && $0.stateKey == "" }) else { return nil }
        return state
    }
}
