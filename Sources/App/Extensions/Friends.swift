import Actors
import Matrix
import Persistence
import Transport

/// The friend system behind both client APIs (`FriendsClientEndpoints`, `FriendsEnhancedEndpoints`)
/// and the federation one (`FriendsFederationEndpoints`): requests and their state machine,
/// the direct room made on acceptance (marked in `m.direct` for both), and the `m.friends`
/// account data that carries every change to the user's other devices. docs/extensions.md,
/// "Friends".
enum Friends {
    /// The global account data type rewritten on every friend change of a user.
    static let accountDataType = "m.friends"
    /// The most rows one listing returns.
    static let listLimit = 1000
    /// Seed: a note is at most 1000 characters; so is a request message here.
    static let maxTextLength = 1000
    /// Per-friend statuses (seed 6.1.10).
    static let statuses: Set<String> = ["favorite", "normal", "blocked", "hidden"]

    /// A user id from a request: parsed, at most 255 bytes (spec: "User Identifiers").
    static func userID(_ text: String?, field: String = "user_id") throws -> UserID {
        guard let text, !text.isEmpty else { throw MatrixError(.missingParam, "\(field) is required") }
        guard text.utf8.count <= 255 else { throw MatrixError(.invalidParam, "\(field) is too long") }
        return try UserID(parsing: text)
    }

    /// An optional bounded string field of a body.
    static func text(_ body: [String: JSON], _ field: String, max: Int = maxTextLength) throws -> String? {
        guard let value = body[field], !value.isNull else { return nil }
        guard let text = value.stringValue else { throw MatrixError(.badJSON, "\(field) must be a string") }
        guard text.count <= max else { throw MatrixError(.invalidParam, "\(field) must be at most \(max) characters") }
        return text
    }

    static func newID(_ prefix: String) -> String { prefix + SHA256Hasher.hex(Sodium.randomBytes(12)) }

    // MARK: Requests

    /// `sender` asks `target` to be friends. 403 `M_FORBIDDEN` when either blocks the other,
    /// 409 when they are friends or a request is pending, 404 for an unknown local user.
    /// `offeredRoom`: the direct room a remote acceptor made (federation), used rather than a new one.
    static func sendRequest(_ app: MyelinApp, from sender: UserID, to target: UserID, message: String?,
                            offeredRoom: RoomID? = nil) async throws -> FriendRequestRecord {
        guard sender != target else { throw MatrixError(.invalidParam, "You cannot befriend yourself") }
        if target.serverName == app.localServer {
            guard let account = try await app.database.accounts.user(id: target), !account.deactivated else {
                throw MatrixError(.notFound, "User not found")
            }
        }
        // A crossing request: the target asked first, so this is an acceptance.
        if try await app.database.friends.pendingRequest(from: target, to: sender) != nil,
           try await isBlocked(app, sender, target) == false {
            return try await accept(app, requester: target, by: sender, offeredRoom: offeredRoom)
        }
        let result = try await app.database.friends.request(id: newID("fr_"), from: sender, to: target, message: message,
                                                            now: Clock.nowMilliseconds())
        switch result {
        case .failure(.blocked): throw MatrixError(.forbidden, "You cannot send a friend request to this user")
        case .failure(.alreadyFriends): throw MatrixError("M_ALREADY_FRIENDS", "You are already friends", status: 409)
        case .failure(.pendingExists): throw MatrixError("M_REQUEST_PENDING", "A friend request is already pending", status: 409)
        case .success(let record):
            if target.serverName != app.localServer {
                try await forward(app, record)
            }
            await publish(app, [sender, target])
            return record
        }
    }

    /// A user the invitee blocks may not invite them (403 `M_FORBIDDEN`): called by `/invite`,
    /// `createRoom` and the federation invite endpoints for local invitees.
    static func refuseInvite(_ app: MyelinApp, from inviter: UserID, to invitee: UserID) async throws {
        guard invitee.serverName == app.localServer, inviter != invitee else { return }
        if try await app.database.friends.blocks(invitee, inviter) {
            throw MatrixError(.forbidden, "\(invitee.rawValue) does not accept invites from you")
        }
    }

    static func isBlocked(_ app: MyelinApp, _ a: UserID, _ b: UserID) async throws -> Bool {
        try await app.database.friends.eitherBlocks(a, b)
    }

    /// A request to a user of another server goes to their server (`POST
    /// /_matrix/federation/v1/friends/request`); refused there, it is cancelled here.
    static func forward(_ app: MyelinApp, _ record: FriendRequestRecord) async throws {
        let target = try UserID(parsing: record.target)
        var body: [String: JSON] = ["requester": .string(record.sender), "target": .string(record.target),
                                    "request_id": .string(record.requestID)]
        if let message = record.message { body["message"] = .string(message) }
        if try await !deliver(app, to: target.serverName, body) {
            _ = try await app.database.friends.resolve(from: try UserID(parsing: record.sender), to: target, as: FriendStore.cancelled,
                                                       now: Clock.nowMilliseconds())
            throw MatrixError(.unknown, "The friend request could not be delivered to \(target.serverName.rawValue)", status: 502)
        }
    }

    /// Sends `POST /_matrix/federation/v1/friends/request` to `server`; true when it answered 200.
    static func deliver(_ app: MyelinApp, to server: ServerName, _ body: [String: JSON]) async throws -> Bool {
        guard app.configuration.federation.enabled,
              let reply = try? await app.federationLink.reply(server, "POST", "/_matrix/federation/v1/friends/request", .object(body)) else {
            return false
        }
        return reply.status == 200
    }

    /// `target` accepts the pending request of `requester`: they become friends and share a
    /// direct room (reused when one exists). 404 when nothing is pending. A remote requester's
    /// server is told with a request the other way (which its pending one turns into an
    /// acceptance) naming the room.
    static func accept(_ app: MyelinApp, requester: UserID, by target: UserID, offeredRoom: RoomID? = nil) async throws -> FriendRequestRecord {
        guard var record = try await app.database.friends.resolve(from: requester, to: target, as: FriendStore.accepted,
                                                                  now: Clock.nowMilliseconds()) else {
            throw MatrixError(.notFound, "No pending friend request from \(requester.rawValue)")
        }
        // The friendship stands even when the room cannot be made (a remote server that does
        // not answer the invite): it is logged, and the reply carries no room.
        var room: RoomID?
        do {
            if let offeredRoom {
                try await joinOffered(app, offeredRoom, requester: requester, acceptor: target)
                room = offeredRoom
            } else {
                room = try await directRoom(app, requester, target)
            }
            if let room { try await app.database.friends.setRoom(room, between: requester, and: target) }
        } catch {
            app.logger.warning("friends: no direct room for \(requester.rawValue) and \(target.rawValue): \(error)")
        }
        if requester.serverName != app.localServer && target.serverName == app.localServer {
            var body: [String: JSON] = ["requester": .string(target.rawValue), "target": .string(requester.rawValue)]
            if let room { body["room_id"] = .string(room.rawValue) }
            if try await !deliver(app, to: requester.serverName, body) {
                app.logger.warning("friends: acceptance by \(target.rawValue) not delivered to \(requester.serverName.rawValue)")
            }
        }
        record.state = FriendStore.accepted
        await publish(app, [requester, target])
        return record
    }

    /// Rejects (by the target) or cancels (by the sender) a pending request.
    static func settle(_ app: MyelinApp, from sender: UserID, to target: UserID, as state: String) async throws -> FriendRequestRecord {
        guard let record = try await app.database.friends.resolve(from: sender, to: target, as: state, now: Clock.nowMilliseconds()) else {
            throw MatrixError(.notFound, "No pending friend request")
        }
        await publish(app, [sender, target])
        return record
    }

    // MARK: The direct room

    /// The pair's direct room: one already in `m.direct` of either side where the local
    /// side(s) are joined (the other joined or invited), else a new `trusted_private_chat`
    /// room made by the requester (or by the local side when the requester is remote),
    /// the other invited with `is_direct` and, when local, joined. Marked in both users'
    /// `m.direct`.
    static func directRoom(_ app: MyelinApp, _ requester: UserID, _ target: UserID) async throws -> RoomID {
        let local = app.localServer
        if let reused = try await existingDirectRoom(app, requester, target) {
            for user in [requester, target] where user.serverName == local {
                try await markDirect(app, user: user, other: user == requester ? target : requester, room: reused)
            }
            return reused
        }
        let creator = requester.serverName == local ? requester : target
        let invitee = creator == requester ? target : requester
        let room = try await RoomCreation.create(app, creator, [
            "preset": "trusted_private_chat", "is_direct": true, "invite": [.string(invitee.rawValue)],
        ])
        if invitee.serverName == local {
            try await join(app, invitee, room)
        }
        for user in [creator, invitee] where user.serverName == local {
            try await markDirect(app, user: user, other: user == creator ? invitee : creator, room: room)
        }
        return room
    }

    /// The local requester joins the room the remote acceptor made (it was invited to it),
    /// over federation, and marks it in `m.direct`.
    static func joinOffered(_ app: MyelinApp, _ room: RoomID, requester: UserID, acceptor: UserID) async throws {
        guard requester.serverName == app.localServer else { return }
        if await membership(app, requester, in: room) != MembershipState.join {
            // Only a room the acceptor invited the requester to: a server cannot steer our
            // user into any room of its choosing.
            let invite = try await FederationInboundStore(database: app.database).invite(roomID: room.rawValue, userID: requester.rawValue)
            guard let invite, (try? JSON.parse(invite.eventJSON))?["sender"]?.stringValue == acceptor.rawValue else {
                throw MatrixError(.forbidden, "No invite from \(acceptor.rawValue) to \(room.rawValue)")
            }
            let content = try await app.roomService.memberContent(requester, membership: MembershipState.join.rawValue)
            try await FederationJoins.join(requester, roomID: room, servers: [acceptor.serverName], content: content, app: app)
        }
        try await markDirect(app, user: requester, other: acceptor, room: room)
    }

    static func membership(_ app: MyelinApp, _ user: UserID, in room: RoomID) async -> String? {
        try? await app.roomService.existingRoom(room).stateEvent(.member(user.rawValue))?.membership
    }

    static func existingDirectRoom(_ app: MyelinApp, _ a: UserID, _ b: UserID) async throws -> RoomID? {
        var candidates: [String] = []
        for (user, other) in [(a, b), (b, a)] where user.serverName == app.localServer {
            candidates += try await directRooms(app, of: user)[other.rawValue]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        for text in candidates {
            guard let room = try? RoomID(parsing: text) else { continue }
            var usable = true
            var toJoin: [UserID] = []
            for user in [a, b] {
                let m = await membership(app, user, in: room)
                if m == MembershipState.join { continue }
                if m == MembershipState.invite && user.serverName == app.localServer { toJoin.append(user); continue }
                if m == MembershipState.invite { continue }
                usable = false
            }
            guard usable else { continue }
            for user in toJoin { try await join(app, user, room) }
            return room
        }
        return nil
    }

    static func join(_ app: MyelinApp, _ user: UserID, _ room: RoomID) async throws {
        let service = app.roomService
        let content = try await service.memberContent(user, membership: MembershipState.join.rawValue)
        _ = try await service.send(EventDraft(type: EventType.roomMember, sender: user, stateKey: user.rawValue, content: content), in: room)
    }

    static func directRooms(_ app: MyelinApp, of user: UserID) async throws -> [String: JSON] {
        guard let text = try await app.database.accountData.accountData(userID: user, roomID: nil, type: "m.direct") else { return [:] }
        return (try? JSON.parse(Array(text.utf8)).objectValue) ?? [:]
    }

    /// Adds `room` under `other` in `user`'s `m.direct` (spec: "Direct Messaging").
    static func markDirect(_ app: MyelinApp, user: UserID, other: UserID, room: RoomID) async throws {
        try await updateAccountData(app, user, type: "m.direct") { current in
            var direct = current.flatMap { try? JSON.parse(Array($0.utf8)).objectValue } ?? [:]
            var rooms = direct[other.rawValue]?.arrayValue ?? []
            if !rooms.contains(where: { $0.stringValue == room.rawValue }) { rooms.append(.string(room.rawValue)) }
            direct[other.rawValue] = .array(rooms)
            return JSON.object(direct).encodedString
        }
    }

    static func updateAccountData(_ app: MyelinApp, _ user: UserID, type: String,
                                  _ change: @escaping @Sendable (String?) throws -> String) async throws {
        let accounts = app.accounts
        let position = try await accounts.accountDataStream.withNextPosition { position in
            try await accounts.database.accountData.updateAccountData(userID: user, roomID: nil, type: type, position: position, change)
            return position
        }
        app.roomService.fanout.notify([user], of: StreamChange(.accountData, position))
    }

    // MARK: Other devices

    /// Rewrites `m.friends` of each local user among `users`: `{friends: {user: {since,
    /// status, note, category_id, room_id}}, incoming: [user], outgoing: [user], blocked:
    /// [user]}`. Sync delivers it to every device. Failures are logged, not thrown: the
    /// change itself is already stored.
    static func publish(_ app: MyelinApp, _ users: [UserID]) async {
        for user in users where user.serverName == app.localServer {
            do {
                let content = try await summary(app, user)
                try await updateAccountData(app, user, type: accountDataType) { _ in content.encodedString }
            } catch {
                app.logger.warning("m.friends update for \(user.rawValue) failed: \(error)")
            }
        }
    }

    static func summary(_ app: MyelinApp, _ user: UserID) async throws -> JSON {
        let store = app.database.friends
        var friends: [String: JSON] = [:]
        for f in try await store.friends(of: user, limit: listLimit) {
            var entry: [String: JSON] = ["since": .int(f.sinceTS), "status": .string(f.status)]
            if let note = f.note { entry["note"] = .string(note) }
            if let category = f.categoryID { entry["category_id"] = .string(category) }
            if let room = f.roomID { entry["room_id"] = .string(room) }
            friends[f.friendID] = .object(entry)
        }
        return .object([
            "friends": .object(friends),
            "incoming": .array(try await store.incoming(to: user, limit: listLimit).map { .string($0.sender) }),
            "outgoing": .array(try await store.outgoing(from: user, limit: listLimit).map { .string($0.target) }),
            "blocked": .array(try await store.blocked(by: user, limit: listLimit).map { .string($0.blockedID) }),
        ])
    }

    // MARK: Shapes

    /// A friend as the seed lists it (6.1.1, 6.1.11).
    static func friendJSON(_ app: MyelinApp, _ f: FriendRecord) async -> JSON {
        var entry: [String: JSON] = ["user_id": .string(f.friendID), "since": .int(f.sinceTS), "status": .string(f.status),
                                     "note": f.note.map { .string($0) } ?? .null]
        await addProfile(app, f.friendID, to: &entry)
        if let category = f.categoryID { entry["category_id"] = .string(category) }
        if let room = f.roomID { entry["dm_room_id"] = .string(room) }
        return .object(entry)
    }

    /// A request as the seed lists it (6.1.6, 6.1.7): `user_id` is the other side.
    static func requestJSON(_ app: MyelinApp, _ r: FriendRequestRecord, other: String) async -> JSON {
        var entry: [String: JSON] = ["request_id": .string(r.requestID), "user_id": .string(other), "sender": .string(r.sender),
                                     "target": .string(r.target), "timestamp": .int(r.createdTS), "status": .string(r.state)]
        if let message = r.message { entry["message"] = .string(message) }
        await addProfile(app, other, to: &entry)
        return .object(entry)
    }

    static func addProfile(_ app: MyelinApp, _ user: String, to entry: inout [String: JSON]) async {
        guard let id = try? UserID(parsing: user), id.serverName == app.localServer,
              let record = try? await app.database.accounts.user(id: id) else { return }
        if let name = record.displayname { entry["display_name"] = .string(name) }
        if let avatar = record.avatarURL { entry["avatar_url"] = .string(avatar) }
    }

    static func friendsList(_ app: MyelinApp, _ user: UserID) async throws -> HTTPResponse {
        var list: [JSON] = []
        for f in try await app.database.friends.friends(of: user, limit: listLimit) { list.append(await friendJSON(app, f)) }
        return .json(["friends": .array(list), "total": .int(Int64(list.count))])
    }

    static func incomingList(_ app: MyelinApp, _ user: UserID) async throws -> [JSON] {
        var list: [JSON] = []
        for r in try await app.database.friends.incoming(to: user, limit: listLimit) { list.append(await requestJSON(app, r, other: r.sender)) }
        return list
    }

    static func outgoingList(_ app: MyelinApp, _ user: UserID) async throws -> [JSON] {
        var list: [JSON] = []
        for r in try await app.database.friends.outgoing(from: user, limit: listLimit) { list.append(await requestJSON(app, r, other: r.target)) }
        return list
    }
}
