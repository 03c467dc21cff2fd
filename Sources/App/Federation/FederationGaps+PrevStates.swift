import Actors
import Matrix
import Persistence

extension FederationGaps {
    /// For the prev events of the `pulled` events (fetched with `get_missing_events`; the
    /// events pushed to this server get none: as Synapse, a pushed event must come with its
    /// history, SyTest "Federation rejects inbound events where the prev_events cannot be
    /// found") that stay unknown here (neither in the `batch`, nor in
    /// the timeline, nor stored with a state of their own): the state *before* each as
    /// `server` has it (`GET /state_ids` at that prev event, as Synapse's
    /// `_get_state_ids_after_missing_prev_event`), with the prev event itself fetched
    /// (`GET /event`) and stored as an outlier. The room then resolves the state before an
    /// event citing it from the states after all its prev events (server-server API, "If the
    /// missing events cannot be retrieved..."). At most `limit` prev events are asked about;
    /// a prev event whose state or whose event cannot be had is left out.
    static func statesAtMissingPrevs(of pulled: [PDU], batch: [PDU], roomID: RoomID, version: RoomVersion, server: ServerName,
                                     limit: Int, actor: RoomActor, app: MyelinApp) async -> [EventID: StateMap] {
        let inBatch = Set(batch.map(\.eventID))
        let prevs = Set(pulled.flatMap(\.prevEvents)).subtracting(inBatch).map(\.rawValue)
        guard !prevs.isEmpty else { return [:] }
        let key = roomID.rawValue
        guard let (rows, recorded) = try? await app.database.read({ db in
            (try RoomEventStore.events(db, ids: prevs), try EventStateStore.stateGroups(db, ids: prevs))
        }) else { return [:] }
        let inRoom = rows.filter { $0.roomID == key }
        let withState = Set(inRoom.filter { RoomEventStore.isTimeline($0.streamOrdering) || recorded[$0.eventID] != nil }.map(\.eventID))
        let stored = Set(inRoom.map(\.eventID))
        var states: [EventID: StateMap] = [:]
        let missing = prevs.filter { !withState.contains($0) }.sorted().prefix(limit)
        for raw in missing {
            guard let prev = try? EventID(parsing: raw),
                  let state = await stateBefore(prev, roomID: roomID, version: version, server: server, actor: actor, app: app)
            else { continue }
            if !stored.contains(raw) {
                // The room adds the prev event to the state before it: it must be stored.
                let path = "/_matrix/federation/v1/event/\(FederationLink.segment(raw))"
                guard let reply = try? await app.federationLink.call(server, "GET", path), let json = reply["pdus"]?.arrayValue?.first,
                      let pdu = try? await FederationPDUs.verifyPDUSignatures(json, version: version, keyRing: app.keyRing),
                      pdu.eventID == prev, pdu.effectiveRoomID == roomID,
                      (try? await actor.storeOutliers([pdu])) != nil else { continue }
            }
            var map: StateMap = [:]
            for event in state { if let entry = event.stateEntry { map[entry] = event.eventID } }
            states[prev] = map
        }
        return states
    }
}
