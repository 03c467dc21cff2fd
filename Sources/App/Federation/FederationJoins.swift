import Actors
import Matrix
import Persistence

/// Membership over federation, joining side: joining a room of another server
/// (`make_join` then `send_join` v2, the answer verified and persisted, this server then
/// resident), inviting a user of another server (`invite` v2), leaving or rejecting an invite
/// of a room this server is not resident in (`make_leave`/`send_leave` v2). Called by the
/// client membership handlers.
enum FederationJoins {
    /// Servers tried for one join, and events a `send_join` answer may carry.
    static let maxServersTried = 5
    static let maxAnswerEvents = 100_000

    /// The servers to ask for a room: the request's `server_name`/`via` values, the server
    /// of a pending invite's sender, then the room id's server (room versions before 12),
    /// never this server.
    static func candidateServers(_ roomID: RoomID, via: [String], invitee: UserID, app: MyelinApp) async -> [ServerName] {
        var out: [ServerName] = []
        for name in via.prefix(maxServersTried) {
            if let server = try? ServerName(parsing: name), !out.contains(server) { out.append(server) }
        }
        // An invite received over federation names the room's way in: its sender's server (a
        // client joins an invite by room id alone, and room ids carry no server from v12 on).
        if let invite = try? await FederationInboundStore(database: app.database)
               .invite(roomID: roomID.rawValue, userID: invitee.rawValue),
           let event = try? JSON.parse(invite.eventJSON), let sender = event["sender"]?.stringValue,
           let server = (try? UserID(parsing: sender))?.serverName, !out.contains(server) {
            out.append(server)
        }
        if let server = roomID.serverName, !out.contains(server) { out.append(server) }
        return out.filter { $0 != app.localServer }
    }

    /// Joins `user` to a room of another server through the first of `servers` that agrees.
    /// Alias resolution (`query/directory`, helper "dest") plugs in before: it yields the
    /// room id and the servers to try.
    static func join(_ user: UserID, roomID: RoomID, servers: [ServerName], content: [String: JSON], app: MyelinApp) async throws {
        var lastError: any Error = MatrixError(.notFound, "No known servers", status: 404)
        for server in servers.prefix(maxServersTried) {
            do {
                try await join(user, roomID: roomID, through: server, content: content, app: app)
                return
            } catch {
                app.logger.info("federation: join of \(roomID) through \(server) failed: \(error)")
                lastError = error
            }
        }
        throw lastError
    }

    static func join(_ user: UserID, roomID: RoomID, through server: ServerName, content: [String: JSON], app: MyelinApp) async throws {
        let versions = RoomVersion.all.map { "ver=\($0.id)" }.joined(separator: "&")
        let room = FederationLink.segment(roomID.rawValue)
        let made = try await app.federationLink.call(
            server, "GET", "/_matrix/federation/v1/make_join/\(room)/\(FederationLink.segment(user.rawValue))?\(versions)")
        let version = try RoomVersion.named(made["room_version"]?.stringValue ?? "1")
        let (joinJSON, join) = try complete(made["event"], user: user, roomID: roomID, membership: .join, content: content,
                                            version: version, app: app)
        let answer = try await FederationV1Invite.sendJoin(server, roomID: roomID, eventID: join.eventID, event: joinJSON, app: app)
        var joinEvent = join
        if let returned = answer["event"], let pdu = try? PDU(json: returned, roomVersion: version), pdu.eventID == join.eventID {
            joinEvent = pdu  // Countersigned by the resident server (restricted joins).
        }
        let (state, chain) = try await verifiedAnswer(answer, roomID: roomID, version: version, app: app)
        let actor = try await app.roomService.rooms.room(roomID)
        let outcome = try await actor.becomeResident(version: version, state: state, authChain: chain, join: joinEvent)
        if case .rejected(let reason) = outcome { throw MatrixError(.forbidden, reason) }
    }

    /// A template from `make_*` checked (our user, this room, this membership), completed
    /// with our content, timestamp, hashes and signature.
    static func complete(_ template: JSON?, user: UserID, roomID: RoomID, membership: MembershipState, content: [String: JSON],
                         version: RoomVersion, app: MyelinApp) throws -> (JSON, PDU) {
        guard var event = template?.objectValue, event["type"]?.stringValue == EventType.roomMember,
              event["state_key"]?.stringValue == user.rawValue, event["sender"]?.stringValue == user.rawValue,
              event["room_id"]?.stringValue == roomID.rawValue,
              event["content"]?["membership"]?.stringValue == membership.rawValue else {
            throw MatrixError(.unknown, "The resident server sent an unusable template", status: 502)
        }
        var merged = event["content"]?.objectValue ?? [:]
        for (key, value) in content where key != "join_authorised_via_users_server" { merged[key] = value }
        event["content"] = .object(merged)
        event["origin_server_ts"] = .int(Clock.nowMilliseconds())
        event["origin"] = .string(app.localServer.rawValue)
        for field in ["signatures", "hashes", "unsigned"] { event[field] = nil }
        if version.eventIDFormat == .opaqueWithDomain {
            // Room versions 1-2: the event ID names the server that made the event, whose
            // signature the event must carry; the resident server's template ID is not ours.
            event["event_id"] = .string("$\(Base64.encodeURLSafe(Sodium.randomBytes(12))):\(app.localServer.rawValue)")
        }
        let signed = try app.signingKey.sign(event: .object(event), roomVersion: version, serverName: app.localServer.rawValue)
        return (signed, try PDU(json: signed, roomVersion: version))
    }

    /// The state and auth chain of a `send_join` answer, each event verified (signatures,
    /// hashes) and checked against its auth events in depth order; events failing either are
    /// left out. `M_BAD_JSON` without a create event.
    static func verifiedAnswer(_ answer: [String: JSON], roomID: RoomID, version: RoomVersion,
                               app: MyelinApp) async throws -> (state: [PDU], chain: [PDU]) {
        let rawState = (answer["state"]?.arrayValue ?? []).prefix(maxAnswerEvents)
        let rawChain = (answer["auth_chain"]?.arrayValue ?? []).prefix(maxAnswerEvents)
        var byID: [EventID: PDU] = [:]
        for raw in rawState + rawChain {
            guard let pdu = try? await FederationPDUs.verifyPDUSignatures(raw, version: version, keyRing: app.keyRing),
                  pdu.effectiveRoomID == roomID else { continue }
            byID[pdu.eventID] = pdu
        }
        var accepted: [EventID: PDU] = [:]
        // Room version 12 leaves the create event out of `auth_events` (MSC4291): it joins
        // every auth state here.
        let create = byID.values.first { $0.type == EventType.roomCreate && $0.stateKey == "" }
        for pdu in byID.values.sorted(by: { $0.depth < $1.depth }) {
            let auth = pdu.authEvents.compactMap { accepted[$0] }
            guard auth.count == pdu.authEvents.count, (try? EventAuth.checkAuthEvents(pdu, authEvents: auth)) != nil else { continue }
            if pdu.type != EventType.roomCreate {
                var authState: AuthState = [:]
                if let create, let accepted = accepted[create.eventID] { authState[.create] = accepted }
                for event in auth { if let key = event.stateEntry { authState[key] = event } }
                guard (try? EventAuth.authorize(pdu, against: authState)) != nil else { continue }
            }
            accepted[pdu.eventID] = pdu
        }
        let stateIDs = Set(rawState.compactMap { try? PDU(json: $0, roomVersion: version).eventID })
        let state = accepted.values.filter { stateIDs.contains($0.eventID) && $0.isState }
        guard state.contains(where: { $0.type == EventType.roomCreate }) else {
            throw MatrixError(.badJSON, "The join answer has no valid m.room.create", status: 502)
        }
        return (state, accepted.values.filter { !stateIDs.contains($0.eventID) })
    }

    // MARK: Invites

    /// Stores an invite received for a local user, at a new position of the room-events
    /// stream, and wakes the user's long-polls.
    static func storeInvite(_ invite: FederationInboundStore.Invite, invitee: UserID, app: MyelinApp) async throws {
        let context = app.roomService.rooms.context
        let allocation = context.events.allocate()
        do {
            try await app.database.write { db in try FederationInboundStore.storeInvite(db, invite, position: allocation.position) }
        } catch {
            context.events.abort(allocation)
            throw error
        }
        context.memberships.apply([MembershipStore.Membership(roomID: invite.roomID, userID: invite.userID,
                                                              membership: MembershipState.invite.rawValue,
                                                              eventID: invite.eventID, streamOrdering: allocation.position)])
        context.events.commit(allocation)
        app.roomService.fanout.notify([invitee], of: StreamChange(.roomEvents, context.events.visiblePosition))
    }

    /// Invites a user of another server: the event is built on the room's state, signed here,
    /// sent to the invitee's server (`PUT /_matrix/federation/v2/invite`), and the event it
    /// returns (with its signature) is received into the room like any remote event.
    static func inviteRemote(_ invitee: UserID, by sender: UserID, roomID: RoomID, content: [String: JSON], app: MyelinApp) async throws {
        let actor = try await app.roomService.existingRoom(roomID)
        guard let version = await actor.version else { throw MatrixError(.notFound, "Unknown room") }
        var template = try await actor.eventTemplate(type: EventType.roomMember, sender: sender, stateKey: invitee.rawValue,
                                                     content: content)
        template["origin"] = .string(app.localServer.rawValue)
        let signed = try app.signingKey.sign(event: .object(template), roomVersion: version, serverName: app.localServer.rawValue)
        let pdu = try PDU(json: signed, roomVersion: version)
        let stripped = FederationMembershipEndpoints.strippedState(await actor.currentState ?? [:])
        let answer = try await FederationV1Invite.send(invitee.serverName, roomID: roomID, eventID: pdu.eventID, event: signed,
                                                       version: version, strippedState: stripped, app: app)
        guard let returned = answer["event"] else { throw MatrixError(.unknown, "The invitee's server sent no event", status: 502) }
        let countersigned = try await FederationPDUs.verifyPDUSignatures(returned, version: version, keyRing: app.keyRing)
        guard countersigned.eventID == pdu.eventID, returned["signatures"]?[invitee.serverName.rawValue] != nil else {
            throw MatrixError(.unknown, "The invitee's server did not sign the invite", status: 502)
        }
        let outcome = try await actor.receive([countersigned])[pdu.eventID]
        if case .rejected(let reason) = outcome { throw MatrixError(.forbidden, reason) }
        if case .softFailed(let reason) = outcome { throw MatrixError(.forbidden, reason) }
    }

    /// Rejects an invite to a room this server is not resident in: `make_leave`/`send_leave`
    /// through the inviting server, then the membership becomes `leave` here.
    static func rejectRemoteInvite(_ user: UserID, roomID: RoomID, invite: FederationInboundStore.Invite, app: MyelinApp) async throws {
        let version = try RoomVersion.named(invite.roomVersion)
        let inviteEvent = try PDU(bytes: invite.eventJSON, roomVersion: version)
        let server = inviteEvent.sender.serverName
        let room = FederationLink.segment(roomID.rawValue)
        var leaveEvent: PDU?
        do {
            let made = try await app.federationLink.call(
                server, "GET", "/_matrix/federation/v1/make_leave/\(room)/\(FederationLink.segment(user.rawValue))")
            let (json, leave) = try complete(made["event"], user: user, roomID: roomID, membership: .leave, content: [:],
                                             version: version, app: app)
            _ = try await app.federationLink.call(
                server, "PUT", "/_matrix/federation/v2/send_leave/\(room)/\(FederationLink.segment(leave.eventID.rawValue))", json)
            leaveEvent = leave
        } catch {
            // As Synapse does, the invite is rejected locally even when its server is gone.
            app.logger.info("federation: rejecting the invite to \(roomID) through \(server) failed: \(error)")
        }
        let leave = try leaveEvent ?? outOfBandLeave(user, invite: inviteEvent, version: version, app: app)
        let leaveID = leave.eventID.rawValue
        // The leave is kept as an outlier (no timeline position, no state): `/sync` shows it
        // in `rooms.leave` and `/event` knows it.
        var generator = SystemRandomNumberGenerator()
        let leaveRow = RoomEventStore.EventRow(
            streamOrdering: -Int64(generator.next(upperBound: UInt64(1) << 62)) - 1, eventID: leaveID, roomID: roomID.rawValue,
            type: leave.type, stateKey: leave.stateKey, sender: leave.sender.rawValue, depth: leave.depth, stateGroup: 0,
            json: leave.bytes ?? JSON.object(leave.json).encoded(),
            clientJSON: ClientEventForm.json(of: leave.json, eventID: leave.eventID, roomID: roomID, unsigned: [:]).encoded())
        let context = app.roomService.rooms.context
        let allocation = context.events.allocate()
        let membership = MembershipStore.Membership(roomID: roomID.rawValue, userID: user.rawValue,
                                                    membership: MembershipState.leave.rawValue, eventID: leaveID,
                                                    streamOrdering: allocation.position)
        do {
            try await app.database.write { db in
                if try RoomEventStore.event(db, eventID: leaveID) == nil { try RoomEventStore.insertEvent(db, leaveRow) }
                try MembershipStore.setMembership(db, membership)
            }
        } catch {
            context.events.abort(allocation)
            throw error
        }
        context.memberships.apply([membership])
        context.events.commit(allocation)
        app.roomService.fanout.notify([user], of: StreamChange(.roomEvents, context.events.visiblePosition))
    }

    /// The leave of an invite whose server could not be reached: built and signed here on the
    /// invite alone (its prev and auth event), never sent; as Synapse's out-of-band leave.
    static func outOfBandLeave(_ user: UserID, invite: PDU, version: RoomVersion, app: MyelinApp) throws -> PDU {
        let reference: JSON = version.eventIDFormat == .opaqueWithDomain
            ? .array([.string(invite.eventID.rawValue), .object(["sha256": invite.json["hashes"]?["sha256"] ?? .string("")])]) : .string(invite.eventID.rawValue)
        var event: [String: JSON] = [
            "type": .string(EventType.roomMember), "room_id": .string(invite.effectiveRoomID.rawValue),
            "sender": .string(user.rawValue), "state_key": .string(user.rawValue),
            "content": .object(["membership": MembershipState.leave.json]),
            "prev_events": .array([reference]), "auth_events": .array([reference]),
            "depth": .int(invite.depth + 1), "origin_server_ts": .int(Clock.nowMilliseconds()),
            "origin": .string(app.localServer.rawValue)]
        if version.eventIDFormat == .opaqueWithDomain {
            event["event_id"] = .string("$\(Base64.encodeURLSafe(Sodium.randomBytes(12))):\(app.localServer.rawValue)")
        }
        let signed = try app.signingKey.sign(event: .object(event), roomVersion: version, serverName: app.localServer.rawValue)
        return try PDU(json: signed, roomVersion: version)
    }
}
