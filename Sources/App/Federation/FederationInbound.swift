import Actors
import Matrix
import Persistence

/// Received PDUs on their way into a room (server-server API, "Transactions" and "Checks
/// performed on receipt of a PDU"): signatures and hashes, the room's ACL, missing prev
/// events fetched with `get_missing_events` (bounded), then the room's `RoomActor.receive`.
/// Called by `/send` and by the membership handlers.
enum FederationInbound {
    /// `get_missing_events` rounds per batch, and events asked per round.
    static let maxMissingRounds = 3
    static let missingEventsLimit = 20
    /// Gaps per batch whose state is fetched with `/state_ids`.
    static let maxGapStates = 3

    /// Applies PDUs of one room sent by `origin`; returns the per-PDU results of `/send`
    /// (`{}` on success, `{"error": ...}` otherwise) by event id.
    static func receive(_ raws: [JSON], roomID: RoomID, origin: ServerName, app: MyelinApp) async -> [String: JSON] {
        var results: [String: JSON] = [:]
        func failAll(_ message: String) -> [String: JSON] {
            for raw in raws { if let id = eventID(of: raw, app: app) { results[id] = ["error": .string(message)] } }
            return results
        }
        guard let actor = try? await app.roomService.existingRoom(roomID), let version = await actor.version else {
            return failAll("Unknown room \(roomID)")
        }
        guard FederationPDUs.aclAllows(origin, state: await actor.currentState) else { return failAll("Server is banned from this room") }
        var verified: [PDU] = []
        for raw in raws {
            do {
                verified.append(try await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing))
            } catch {
                if let id = try? PDU(json: raw, roomVersion: version).eventID.rawValue {
                    results[id] = ["error": .string((error as? MatrixError)?.message ?? "invalid event")]
                }
            }
        }
        do {
            let missing = await fetchMissing(verified, actor: actor, roomID: roomID, version: version, origin: origin, app: app)
            try await fetchMissingAuthEvents(missing + verified, actor: actor, roomID: roomID, version: version, origin: origin, app: app)
            // Prev events still unknown: the state at each of them, from the origin.
            let gaps = await FederationGaps.statesAtMissingPrevs(of: missing, batch: missing + verified, roomID: roomID, version: version,
                                                                 server: origin, limit: maxGapStates, actor: actor, app: app)
            let outcomes = try await actor.receive((missing + verified).sorted { $0.depth < $1.depth }, statesAtPrevs: gaps)
            let stored = try await storedRejections(verified, outcomes: outcomes, app: app)
            for pdu in verified {
                switch outcomes[pdu.eventID] {
                case .rejected(let reason) where !stored.contains(pdu.eventID.rawValue):
                    results[pdu.eventID.rawValue] = ["error": .string(reason)]
                default: results[pdu.eventID.rawValue] = .object([:])
                }
            }
        } catch {
            app.logger.warning("federation: PDUs of \(roomID) from \(origin) failed: \(error)")
            for pdu in verified { results[pdu.eventID.rawValue] = ["error": "internal error"] }
        }
        return results
    }

    /// The PDUs of `batch` rejected *and stored as rejected* (they failed the auth rules): the
    /// transaction handled them, so their result is `{}` as Synapse answers; only PDUs that
    /// could not be processed at all (unknown room, bad signature, unknown state) carry an
    /// error (server-server API, "Transactions": errors are for PDUs not processed).
    static func storedRejections(_ batch: [PDU], outcomes: [EventID: ReceivedPDUOutcome], app: MyelinApp) async throws -> Set<String> {
        let ids = batch.compactMap { pdu -> String? in
            if case .rejected = outcomes[pdu.eventID] { return pdu.eventID.rawValue }
            return nil
        }
        guard !ids.isEmpty else { return [] }
        return try await app.database.read { db in try EventStateStore.rejected(db, ids: ids) }
    }

    /// The event id of a raw PDU for the results, when it can be computed.
    static func eventID(of raw: JSON, app: MyelinApp) -> String? {
        if let id = raw["event_id"]?.stringValue { return id }
        return try? EventHashing.eventID(of: raw, roomVersion: .v10).rawValue
    }

    /// Prev events neither stored nor in the batch, fetched from `origin` with
    /// `get_missing_events` between the forward extremities and the batch: at most
    /// `maxMissingRounds` rounds of `missingEventsLimit` events, each verified. Events that
    /// stay missing leave their dependants to be checked on the prev events that are known.
    static func fetchMissing(_ batch: [PDU], actor: RoomActor, roomID: RoomID, version: RoomVersion, origin: ServerName,
                             app: MyelinApp) async -> [PDU] {
        var have = Set(batch.map(\.eventID))
        var fetched: [PDU] = []
        let earliest = await actor.forwardExtremities
        let minDepth = max(0, (batch.map(\.depth).min() ?? 0) - 100)
        for _ in 0..<maxMissingRounds {
            let prevs = Set((batch + fetched).flatMap(\.prevEvents)).subtracting(have)
            guard !prevs.isEmpty else { break }
            guard let stored = try? await FederationPDUs.load(prevs.map(\.rawValue), version: version, app: app) else { break }
            for (_, pdu) in stored { have.insert(pdu.eventID) }
            let unknown = prevs.subtracting(stored.map(\.1.eventID))
            guard !unknown.isEmpty else { break }
            let latest = (batch + fetched).filter { pdu in pdu.prevEvents.contains(where: unknown.contains) }.map(\.eventID.rawValue)
            let body: JSON = ["earliest_events": .array(earliest.map { .string($0.rawValue) }),
                              "latest_events": .array(latest.prefix(20).map { .string($0) }),
                              "limit": .int(Int64(missingEventsLimit)), "min_depth": .int(minDepth)]
            let path = "/_matrix/federation/v1/get_missing_events/\(FederationLink.segment(roomID.rawValue))"
            guard let answer = try? await app.federationLink.call(origin, "POST", path, body) else { break }
            var added = 0
            for raw in (answer["events"]?.arrayValue ?? []).prefix(missingEventsLimit) {
                guard let pdu = try? await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing),
                      pdu.effectiveRoomID == roomID, have.insert(pdu.eventID).inserted else { continue }
                fetched.append(pdu)
                added += 1
            }
            if added == 0 { break }
        }
        return fetched
    }

    /// Auth events neither stored nor in the batch, fetched one by one from `origin` with
    /// `GET /event/{eventId}` (at most `maxAuthFetches` per batch), verified and stored as
    /// outliers so that the events naming them can be checked.
    static let maxAuthFetches = 20

    static func fetchMissingAuthEvents(_ batch: [PDU], actor: RoomActor, roomID: RoomID, version: RoomVersion,
                                       origin: ServerName, app: MyelinApp) async throws {
        let inBatch = Set(batch.map(\.eventID))
        let wanted = Set(batch.flatMap(\.authEvents)).subtracting(inBatch)
        guard !wanted.isEmpty else { return }
        let stored = Set(try await FederationPDUs.load(wanted.map(\.rawValue), version: version, app: app).map(\.1.eventID))
        var fetched: [PDU] = []
        for id in wanted.subtracting(stored).sorted(by: { $0.rawValue < $1.rawValue }).prefix(maxAuthFetches) {
            let path = "/_matrix/federation/v1/event/\(FederationLink.segment(id.rawValue))"
            guard let answer = try? await app.federationLink.call(origin, "GET", path),
                  let raw = answer["pdus"]?.arrayValue?.first,
                  let pdu = try? await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing),
                  pdu.eventID == id, pdu.effectiveRoomID == roomID else { continue }
            fetched.append(pdu)
        }
        if !fetched.isEmpty { try await actor.storeOutliers(fetched) }
    }
}
