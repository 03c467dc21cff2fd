import Transport
import Actors
import Logging
import Matrix
import Persistence

/// Server notices (Synapse: docs/admin_api/server_notices.md and docs/server_notices.md):
/// `POST /_synapse/admin/v1/send_server_notice` and its idempotent `PUT .../{txnId}` send an
/// event as the system user (`server_notices.system_mxid_localpart`, created on first use,
/// with no password) into the user's server-notices room. The room is created on the first
/// notice (private, named `server_notices.room_name`, the user invited — or joined with
/// `auto_join`), tagged `m.server_notice` for the user, and remembered in
/// `server_notice_rooms`; a user who left it is invited again.
enum AdminServerNotices {
    static let v1 = "/_synapse/admin/v1"
    static let tag = "m.server_notice"

    static func register(_ routes: inout RouteBuilder) {
        routes.post("\(v1)/send_server_notice", send)
        routes.put("\(v1)/send_server_notice/{txnId}", send)
    }

    static func send(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let app = context.app
        let settings = app.configuration.serverNotices
        guard settings.enabled else { throw MatrixError(.unknown, "Server notices are not enabled on this server", status: 400) }
        let txn = try context.parameters["txnId"].map(RoomEvents.transactionID)
        let body = try await context.jsonObject()
        guard let target = body["user_id"]?.stringValue else { throw MatrixError(.badJSON, "user_id is required") }
        let user = try UserID(parsing: target)
        guard user.serverName == app.localServer else {
            throw MatrixError(.unknown, "Server notices can only be sent to local users", status: 400)
        }
        guard let record = try await app.database.accounts.user(id: user), !record.deactivated else {
            throw MatrixError(.notFound, "User not found")
        }
        guard let content = body["content"]?.objectValue else { throw MatrixError(.badJSON, "content must be an object") }
        let type = body["type"]?.stringValue ?? EventType.roomMessage
        guard !type.isEmpty, type.utf8.count <= 255 else { throw MatrixError(.badJSON, "type is invalid") }
        let stateKey = body["state_key"]?.stringValue
        let system = try await systemUser(app)
        let scope = "server_notice/\(user.rawValue)"
        let device = "\(admin.userID.rawValue)|\(admin.deviceID ?? "")"
        if let txn, let existing = try await app.database.eventTxns.event(ofTransaction: txn, by: system, device: device, scope: scope) {
            return .json(["event_id": .string(existing.eventID)])
        }
        let roomID = try await noticeRoom(app, for: user, system: system)
        let ref = txn.map { TransactionRef(userID: system.rawValue, deviceID: device, scope: scope, txnID: $0) }
        let event = try await app.roomService.send(EventDraft(type: type, sender: system, stateKey: stateKey, content: content, txn: ref),
                                                   in: roomID)
        return .json(["event_id": .string(event.eventID.rawValue)])
    }

    /// The system user, created (without a password: nobody logs in as it) when missing.
    static func systemUser(_ app: MyelinApp) async throws -> UserID {
        let settings = app.configuration.serverNotices
        let user = try UserID(parsing: "@\(settings.systemMXIDLocalpart):\(app.configuration.serverName)")
        if try await app.database.accounts.user(id: user) == nil {
            _ = try await app.database.accounts.createUser(UserRecord(userID: user.rawValue, displayname: settings.systemMXIDDisplayName,
                                                                      avatarURL: settings.systemMXIDAvatarURL))
        }
        return user
    }

    /// The user's notices room, created or the user invited back when needed.
    static func noticeRoom(_ app: MyelinApp, for user: UserID, system: UserID) async throws -> RoomID {
        let service = app.roomService
        let settings = app.configuration.serverNotices
        if let known = try await app.database.adminRooms.serverNoticeRoom(for: user), let roomID = try? RoomID(parsing: known),
           (try? await service.existingRoom(roomID)) != nil {
            let membership = try await service.membership(user, in: roomID)?.membership
            if membership == MembershipState.join.rawValue || membership == MembershipState.invite.rawValue { return roomID }
            try await invite(app, user, to: roomID, system: system)
            return roomID
        }
        var creation: [String: JSON] = [
            "preset": "private_chat", "name": .string(settings.roomName),
            // Only the system user speaks there (Synapse: users_default -10).
            "power_level_content_override": ["users_default": -10],
        ]
        if let topic = settings.roomTopic { creation["topic"] = .string(topic) }
        if let avatar = settings.roomAvatarURL {
            creation["initial_state"] = [["type": .string(EventType.roomAvatar), "state_key": "", "content": ["url": .string(avatar)]]]
        }
        let roomID = try await RoomCreation.create(app, system, creation)
        try await app.database.adminRooms.setServerNoticeRoom(roomID, for: user)
        try await AccountData.updateTags(app.accounts, user: user, room: roomID) { $0[tag] = .object([:]) }
        service.fanout.notify([user], of: StreamChange(.accountData, app.accounts.accountDataStream.visiblePosition))
        try await invite(app, user, to: roomID, system: system)
        return roomID
    }

    static func invite(_ app: MyelinApp, _ user: UserID, to roomID: RoomID, system: UserID) async throws {
        let service = app.roomService
        let content = try await service.memberContent(user, membership: MembershipState.invite.rawValue)
        _ = try await service.send(EventDraft(type: EventType.roomMember, sender: system, stateKey: user.rawValue, content: content), in: roomID)
        if app.configuration.serverNotices.autoJoin {
            let join = try await service.memberContent(user, membership: MembershipState.join.rawValue)
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue, content: join), in: roomID)
        }
    }
}
