import Transport
import Actors
import Logging
import Matrix
import Persistence

/// Deleting and shutting down rooms (Synapse: docs/admin_api/rooms.md, "Delete Room API";
/// the seed: `DELETE /_synapse/admin/v1/rooms/{roomId}`, `POST .../shutdown_room`).
///
/// A shutdown makes every local member (joined, invited, knocking) leave with their own
/// leave event, moves them into a new room owned by `new_room_user_id` (with `message` sent
/// there) when asked, moves or removes the local aliases, unlists the room, optionally blocks
/// it (no local user joins it again) and optionally purges it: the room's actor is closed
/// (sends already queued finish first, later ones find no room) and the store forgets the
/// room in one transaction. v1 answers when done; v2 answers a `delete_id` at once and runs
/// in the background, its status kept in `admin_room_tasks`.
enum AdminRoomDeletion {
    static let v1 = "/_synapse/admin/v1"
    static let v2 = "/_synapse/admin/v2"
    static let logger = Logger(label: "myelin.admin.rooms")
    static let taskKind = "delete_room"

    static func register(_ routes: inout RouteBuilder) {
        routes.delete("\(v1)/rooms/{roomId}", deleteNow)
        // Synapse's former `POST .../rooms/{roomId}/delete`.
        routes.post("\(v1)/rooms/{roomId}/delete", deleteNow)
        routes.delete("\(v2)/rooms/{roomId}", deleteInBackground)
        routes.get("\(v2)/rooms/{roomId}/delete_status", statusOfRoom)
        routes.get("\(v2)/rooms/delete_status/{deleteId}", statusOfDeletion)
        routes.post("\(v1)/shutdown_room", shutdownSeed)
        routes.post("\(v1)/shutdown_room/{roomId}", shutdownLegacy)
    }

    /// What a deletion does, from its body.
    struct Options: Sendable {
        var block = false
        var purge = true
        var forcePurge = false
        var newRoomUser: UserID?
        var roomName = "Content Violation Notification"
        var message = "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."

        init(_ body: [String: JSON], app: MyelinApp, purgeByDefault: Bool = true, blockByDefault: Bool = false,
             roomNameKey: String = "room_name") throws {
            func flag(_ key: String, _ fallback: Bool) throws -> Bool {
                guard let value = body[key] else { return fallback }
                guard let bool = value.boolValue else { throw MatrixError(.badJSON, "\(key) must be a boolean") }
                return bool
            }
            block = try flag("block", blockByDefault)
            purge = try flag("purge", purgeByDefault)
            forcePurge = try flag("force_purge", false)
            if let value = body["new_room_user_id"], value != .null {
                guard let text = value.stringValue else { throw MatrixError(.badJSON, "new_room_user_id must be a string") }
                let user = try UserID(parsing: text)
                guard user.serverName == app.localServer else {
                    throw MatrixError(.invalidParam, "User must be our own: \(text)", status: 400)
                }
                newRoomUser = user
            }
            for key in [roomNameKey, "room_name"] {
                if let value = body[key], value != .null {
                    guard let text = value.stringValue, text.utf8.count <= 255 else {
                        throw MatrixError(.badJSON, "\(key) must be a string of at most 255 bytes")
                    }
                    roomName = text
                    break
                }
            }
            if let value = body["message"], value != .null {
                guard let text = value.stringValue, text.utf8.count <= 65_536 / 2 else {
                    throw MatrixError(.badJSON, "message must be a string")
                }
                message = text
            }
        }
    }

    /// What a shutdown did (Synapse's `shutdown_room` results).
    struct Outcome: Sendable {
        var kicked: [String] = []
        var failed: [String] = []
        var aliases: [String] = []
        var newRoomID: String?

        var json: [String: JSON] {
            ["kicked_users": .array(kicked.map { .string($0) }), "failed_to_kick_users": .array(failed.map { .string($0) }),
             "local_aliases": .array(aliases.map { .string($0) }), "new_room_id": newRoomID.map { .string($0) } ?? .null]
        }
    }

    // MARK: handlers

    /// `DELETE /_synapse/admin/v1/rooms/{roomId}`: the deletion, answered when done.
    static func deleteNow(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let options = try Options(try await Membership.optionalBody(context), app: context.app)
        var body = try await shutdown(context.app, roomID, options, admin: admin.userID).json
        body["deleted"] = true  // the seed's answer
        return .json(.object(body))
    }

    /// `POST /_synapse/admin/v1/shutdown_room` (the seed): `room_id` in the body; blocks the
    /// room, makes its members leave, keeps its history (no purge).
    static func shutdownSeed(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let body = try await context.jsonObject()
        guard let text = body["room_id"]?.stringValue else { throw MatrixError(.badJSON, "room_id is required") }
        let roomID = try RoomID(parsing: text)
        let options = try Options(body, app: context.app, purgeByDefault: false, blockByDefault: true, roomNameKey: "new_room_name")
        return .json(.object(try await shutdown(context.app, roomID, options, admin: admin.userID).json))
    }

    /// `POST /_synapse/admin/v1/shutdown_room/{roomId}` (Synapse's former API): as the seed's.
    static func shutdownLegacy(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let options = try Options(try await Membership.optionalBody(context), app: context.app, purgeByDefault: false,
                                  blockByDefault: true)
        return .json(.object(try await shutdown(context.app, roomID, options, admin: admin.userID).json))
    }

    /// `DELETE /_synapse/admin/v2/rooms/{roomId}`: schedules the deletion; `{"delete_id"}`.
    static func deleteInBackground(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let app = context.app
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let options = try Options(try await Membership.optionalBody(context), app: app)
        try await settleInterruptedTasks(app)
        if try await app.database.adminRooms.tasks(room: roomID, kind: taskKind)
            .contains(where: { $0.status == "scheduled" || $0.status == "active" }) {
            throw MatrixError(.unknown, "History purge already in progress for \(roomID)", status: 400)
        }
        if !options.block, try await app.database.roomEvents.roomVersion(of: roomID) == nil {
            throw MatrixError(.invalidParam, "Unknown room id \(roomID)", status: 400)
        }
        let id = SHA256Hasher.hex(Sodium.randomBytes(12))
        let store = app.database.adminRooms
        try await store.createTask(id: id, kind: taskKind, room: roomID, status: "scheduled", ts: Clock.nowMilliseconds())
        let adminID = admin.userID
        Task.detached {
            do {
                try await store.updateTask(id: id, status: "active", ts: Clock.nowMilliseconds())
                let outcome = try await shutdown(app, roomID, options, admin: adminID)
                try await store.updateTask(id: id, status: "complete", result: JSON.object(outcome.json).encodedString,
                                           ts: Clock.nowMilliseconds())
            } catch {
                let message = (error as? MatrixError)?.message ?? "Internal error"
                logger.error("deleting \(roomID) failed: \(error)")
                try? await store.updateTask(id: id, status: "failed", error: message, ts: Clock.nowMilliseconds())
            }
        }
        return .json(["delete_id": .string(id)])
    }

    /// Tasks a previous run of the server left unfinished are failed, not `active` forever.
    static func settleInterruptedTasks(_ app: MyelinApp) async throws {
        try await app.database.adminRooms.failTasksInterrupted(before: app.startedAt, ts: Clock.nowMilliseconds())
    }

    static func statusJSON(_ task: AdminRoomStore.Task, withID: Bool) -> JSON {
        var object: [String: JSON] = ["status": .string(task.status), "room_id": .string(task.roomID)]
        if withID { object["delete_id"] = .string(task.id) }
        if let error = task.error { object["error"] = .string(error) }
        let result = task.result.flatMap { try? JSON.parse(Array($0.utf8)) } ?? .object(Outcome().json)
        object["shutdown_room"] = result
        return .object(object)
    }

    /// `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`: every deletion of the room.
    static func statusOfRoom(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        try await settleInterruptedTasks(context.app)
        let tasks = try await context.app.database.adminRooms.tasks(room: roomID, kind: taskKind)
        guard !tasks.isEmpty else { throw MatrixError(.notFound, "No delete task for room_id '\(roomID)' found") }
        return .json(["results": .array(tasks.map { statusJSON($0, withID: true) })])
    }

    /// `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`: one deletion.
    static func statusOfDeletion(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let id = context.parameter("deleteId")
        try await settleInterruptedTasks(context.app)
        guard id.utf8.count <= 64, let task = try await context.app.database.adminRooms.task(id: id, kind: taskKind) else {
            throw MatrixError(.notFound, "delete id '\(id)' not found")
        }
        return .json(statusJSON(task, withID: false))
    }

    // MARK: the shutdown

    /// Shuts the room down as `options` say; see the type's comment.
    static func shutdown(_ app: MyelinApp, _ roomID: RoomID, _ options: Options, admin: UserID) async throws -> Outcome {
        let service = app.roomService
        let store = app.database.adminRooms
        if options.block { try await store.setBlocked(roomID, true, by: admin, ts: Clock.nowMilliseconds()) }
        var outcome = Outcome()
        guard try await app.database.roomEvents.roomVersion(of: roomID) != nil, !service.rooms.isClosed(roomID) else {
            // Synapse blocks a room it does not know (so it can never be joined here); without
            // `block` an unknown room is a bad request.
            if options.block { return outcome }
            throw MatrixError(.invalidParam, "Unknown room id \(roomID)", status: 400)
        }
        var newRoom: RoomID?
        if let owner = options.newRoomUser {
            // The moved users may read, not speak (Synapse's `users_default: -10`).
            let created = try await RoomCreation.create(app, owner, ["preset": "public_chat", "name": .string(options.roomName),
                                                                     "power_level_content_override": ["users_default": -10]])
            newRoom = created
            outcome.newRoomID = created.rawValue
            _ = try await service.send(EventDraft(type: EventType.roomMessage, sender: owner, stateKey: nil,
                                                  content: ["msgtype": "m.text", "body": .string(options.message)]), in: created)
        }
        let members = try await app.database.memberships.members(of: roomID)
        let localSuffix = ":" + app.configuration.serverName
        var leaves: [String] = []
        for member in members.sorted(by: { $0.userID < $1.userID }) where member.userID.hasSuffix(localSuffix) {
            guard [MembershipState.join.rawValue, MembershipState.invite.rawValue, MembershipState.knock.rawValue]
                .contains(member.membership), let user = try? UserID(parsing: member.userID) else { continue }
            do {
                let left = try await service.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue,
                                                             content: ["membership": MembershipState.leave.json]), in: roomID)
                leaves.append(left.eventID.rawValue)
                if let newRoom, member.membership == MembershipState.join.rawValue {
                    let content = try await service.memberContent(user, membership: MembershipState.join.rawValue)
                    _ = try await service.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue,
                                                          content: content), in: newRoom)
                }
                outcome.kicked.append(user.rawValue)
            } catch {
                logger.warning("shutting down \(roomID): \(user) could not leave: \(error)")
                outcome.failed.append(user.rawValue)
            }
        }
        outcome.aliases = try await app.database.directory.aliases(of: roomID).sorted()
        if let newRoom {
            try await app.database.directory.moveRoom(from: roomID, to: newRoom)
        } else {
            try await app.database.directory.removeRoom(roomID)
        }
        try await app.database.directory.setVisibility("private", of: roomID)
        guard options.purge else { return outcome }
        if !outcome.failed.isEmpty && !options.forcePurge {
            throw MatrixError(.unknown, "Users are still joined to this room: \(outcome.failed.joined(separator: ", "))", status: 400)
        }
        try await purge(app, roomID, keptLeaves: leaves)
        return outcome
    }

    /// Closes the room's actor, then removes the room from the store; cached memberships of
    /// its members are dropped so that their next `/sync` reads the store.
    static func purge(_ app: MyelinApp, _ roomID: RoomID, keptLeaves: [String]) async throws {
        let service = app.roomService
        let members = try await app.database.memberships.members(of: roomID)
        await service.rooms.close(roomID)
        try await app.database.adminRooms.purgeRoom(roomID, keptLeaves: keptLeaves)
        for member in members {
            if let user = try? UserID(parsing: member.userID) { service.membershipService.forget(user) }
        }
        logger.info("room \(roomID) purged")
    }
}
