import Actors
import Matrix
import Persistence
import Transport

/// `POST /rooms/{roomId}/upgrade` (spec: "Room Upgrades"), as Synapse performs it: a new room
/// of the requested version whose create event names its predecessor, the old room's
/// important state copied, the tombstone in the old room, the old room's power levels
/// restricted so ordinary members can no longer talk there, and local aliases and the
/// directory listing moved to the new room.
enum RoomUpgrade {
    /// State carried into the replacement room (Synapse's list).
    static let copiedTypes = [EventType.roomJoinRules, EventType.roomHistoryVisibility, EventType.roomGuestAccess, EventType.roomName,
                              EventType.roomTopic, EventType.roomAvatar, EventType.roomEncryption, EventType.roomServerACL]

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/rooms/{roomId}/upgrade", upgradeRoom)
    }

    /// `POST /rooms/{roomId}/upgrade` (spec: "Room Upgrades").
    static func upgradeRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let body = try await context.jsonObject()
        guard let versionID = body["new_version"]?.stringValue, let version = try? RoomVersion.named(versionID) else {
            throw MatrixError(.unsupportedRoomVersion, "Your homeserver does not support this room version", status: 400)
        }
        let replacement = try await upgrade(context.app, requester.userID, roomID, to: version)
        return .json(["replacement_room": .string(replacement.rawValue)])
    }

    /// Replaces `roomID` by a new room of `version` on behalf of `user`, who must be allowed
    /// to send the tombstone.
    static func upgrade(_ app: MyelinApp, _ user: UserID, _ roomID: RoomID, to version: RoomVersion) async throws -> RoomID {
        let service = app.roomService
        let actor = try await service.existingRoom(roomID)
        guard let state = await actor.currentState, let oldVersion = await actor.version else {
            throw MatrixError(.notFound, "Unknown room")
        }
        let power = PowerLevels(content: state[.powerLevels]?.content, roomVersion: oldVersion, create: state[.create])
        guard power.canSend(user.rawValue, eventType: EventType.roomTombstone, isState: true) else {
            throw MatrixError(.forbidden, "You don't have permission to upgrade the room")
        }
        let levels = replacementPowerLevels(state, user: user, version: version)
        var copiedState = copiedTypes.compactMap { type in state[StateKey(type, "")].map { (type, $0.content) } }
        if state[StateKey(EventType.roomGuestAccess, "")] == nil {
            // Always stated in the new room, as the creation presets do (SyTest waits for it):
            // guests may join an invite-only room they are invited to, not a public one.
            let joinRule = state[.joinRules]?.content["join_rule"]?.stringValue ?? "invite"
            copiedState.append((EventType.roomGuestAccess, ["guest_access": joinRule == "public" ? "forbidden" : "can_join"]))
        }
        let copied = copiedState
        let memberContent = try await service.memberContent(user, membership: MembershipState.join.rawValue)
        var predecessor: [String: JSON] = ["room_id": .string(roomID.rawValue)]
        // Before version 12 the new room's id can be chosen first, so the tombstone goes out
        // first and the predecessor names it (`event_id`, as Synapse; SyTest checks it).
        var chosen: RoomID?
        if !version.hashBasedRoomIDs {
            let id = try service.rooms.newOpaqueRoomID()
            predecessor["event_id"] = .string(try await sendTombstone(app, roomID, by: user, replacement: id))
            chosen = id
        }
        var createContent: [String: JSON] = ["predecessor": .object(predecessor)]
        if let type = state[.create]?.content["type"] { createContent["type"] = type }
        if let federate = state[.create]?.content["m.federate"] { createContent["m.federate"] = federate }
        let (newRoom, _) = try await service.rooms.createRoom(creator: user, version: version, createContent: createContent,
                                                              roomID: chosen) { _ in
            var events = [EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue, content: memberContent),
                          EventDraft(type: EventType.roomPowerLevels, sender: user, stateKey: "", content: levels)]
            for (type, content) in copied { events.append(EventDraft(type: type, sender: user, stateKey: "", content: content)) }
            return events
        }
        if chosen == nil { _ = try await sendTombstone(app, roomID, by: user, replacement: newRoom) }
        await restrictOldRoom(app, roomID, state, power, by: user)
        try await moveAliases(app, from: roomID, to: newRoom, state, by: user)
        return newRoom
    }

    /// The new room's power levels: the old ones, with the upgrader at the top (before
    /// version 12; from 12 the creator's power is implicit and must not be listed).
    static func replacementPowerLevels(_ state: AuthState, user: UserID, version: RoomVersion) -> [String: JSON] {
        var levels = state[.powerLevels]?.content ?? (PowerLevels.defaultContent(creator: user.rawValue, roomVersion: version).objectValue ?? [:])
        var users = levels["users"]?.objectValue ?? [:]
        if version.privilegedCreators {
            users[user.rawValue] = nil
        } else {
            let top = users.values.compactMap(\.intValue).max() ?? 100
            users[user.rawValue] = .int(max(top, 100))
        }
        levels["users"] = .object(users)
        return levels
    }

    /// The old room's tombstone naming its replacement; returns its event id.
    static func sendTombstone(_ app: MyelinApp, _ roomID: RoomID, by user: UserID, replacement newRoom: RoomID) async throws -> String {
        let event = try await app.roomService.send(EventDraft(type: EventType.roomTombstone, sender: user, stateKey: "",
                                                              content: ["body": "This room has been replaced",
                                                                        "replacement_room": .string(newRoom.rawValue)]), in: roomID)
        return event.eventID.rawValue
    }

    /// The old room restricted after its tombstone (Synapse: events and invites need
    /// max(50, users_default + 1)).
    static func restrictOldRoom(_ app: MyelinApp, _ roomID: RoomID, _ state: AuthState, _ power: PowerLevels,
                                by user: UserID) async {
        let service = app.roomService
        guard var restricted = state[.powerLevels]?.content else { return }
        // Saturating: room versions before 6 allow any 64-bit power level.
        let needed = max(50, power.usersDefault.addingReportingOverflow(1).overflow ? .max : power.usersDefault + 1)
        restricted["events_default"] = .int(max(restricted["events_default"]?.intValue ?? 0, needed))
        restricted["invite"] = .int(max(restricted["invite"]?.intValue ?? 0, needed))
        do {
            _ = try await service.send(EventDraft(type: EventType.roomPowerLevels, sender: user, stateKey: "", content: restricted),
                                       in: roomID)
        } catch {
            // The upgrade stands (the tombstone is sent); the old room stays unrestricted.
            app.logger.warning("upgrade of \(roomID): restricting the old room failed: \(error)")
        }
    }

    /// Local aliases and the canonical alias follow the room; so does the directory listing.
    static func moveAliases(_ app: MyelinApp, from roomID: RoomID, to newRoom: RoomID, _ state: AuthState,
                            by user: UserID) async throws {
        try await app.database.directory.moveRoom(from: roomID, to: newRoom)
        guard let canonical = state[StateKey(EventType.roomCanonicalAlias, "")]?.content, !canonical.isEmpty else { return }
        for (room, content) in [(roomID, [String: JSON]()), (newRoom, canonical)] {
            do {
                _ = try await app.roomService.send(EventDraft(type: EventType.roomCanonicalAlias, sender: user, stateKey: "",
                                                              content: content), in: room)
            } catch {
                app.logger.warning("upgrade of \(roomID): setting the canonical alias of \(room) failed: \(error)")
            }
        }
    }
}
