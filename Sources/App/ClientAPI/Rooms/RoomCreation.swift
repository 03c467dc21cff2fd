import Transport
import Actors
import Matrix
import Persistence

/// `POST /createRoom` (spec: client-server API, "Creation"), producing the event sequence
/// Synapse produces: create, the creator's join, power levels (with the preset's and the
/// request's overrides), canonical alias, join rules, history visibility, guest access,
/// `initial_state`, name, topic — in one transaction — then the invites.
enum RoomCreation {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/createRoom") { context in
            let requester = try await context.app.accounts.authenticate(context, allowGuests: false)
            // A room costs its events: creation draws on the sender's event budget.
            try context.rateLimit("message", context.app.configuration.rateLimits.messages, user: requester.userID)
            let body = try await context.jsonObject()
            return .json(.object(["room_id": .string(try await create(context.app, requester.userID, body).rawValue)]))
        }
    }

    static func create(_ app: MyelinApp, _ creator: UserID, _ body: [String: JSON]) async throws -> RoomID {
        let service = app.roomService
        let versionID = body["room_version"]?.stringValue ?? RoomVersion.recommendedDefault.id
        guard body["room_version"] == nil || body["room_version"]?.stringValue != nil,
              let version = try? RoomVersion.named(versionID) else {
            throw MatrixError(.unsupportedRoomVersion, "Your homeserver does not support the features required to interact with this room",
                              status: 400)
        }
        let visibility = body["visibility"]?.stringValue ?? "private"
        guard visibility == "public" || visibility == "private" else { throw MatrixError(.invalidParam, "Invalid visibility") }
        let preset = body["preset"]?.stringValue ?? (visibility == "public" ? "public_chat" : "private_chat")
        guard ["public_chat", "private_chat", "trusted_private_chat"].contains(preset) else {
            throw MatrixError(.invalidParam, "Invalid preset \(preset)")
        }
        let isDirect = body["is_direct"]?.boolValue ?? false
        var invitees: [UserID] = []
        let inviteList = body["invite"]?.arrayValue ?? []
        guard inviteList.count <= RequestBounds.maxInvites else {
            throw MatrixError(.invalidParam, "At most \(RequestBounds.maxInvites) invitees per createRoom")
        }
        for value in inviteList {
            guard let text = value.stringValue else { throw MatrixError(.badJSON, "invite must be a list of user ids") }
            invitees.append(try UserID(parsing: text))
        }
        var alias: RoomAlias?
        if let name = body["room_alias_name"]?.stringValue {
            guard !name.contains(":"), !name.contains("#"), !name.isEmpty else {
                throw MatrixError(.invalidParam, "Invalid characters in room alias")
            }
            alias = try RoomAlias(parsing: "#\(name):\(service.serverName)")
            if try await app.database.directory.alias(alias!) != nil {
                throw MatrixError(.roomInUse, "Room alias already taken", status: 400)
            }
        }
        var createContent = body["creation_content"]?.objectValue ?? [:]
        createContent["room_version"] = nil
        if version.privilegedCreators && preset == "trusted_private_chat" && !invitees.isEmpty {
            // Room version 12: trusted invitees become creators (MSC4289) rather than 100s.
            createContent["additional_creators"] = .array(invitees.map { .string($0.rawValue) })
        }
        var power: [String: JSON] = [
            "users_default": 0, "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": 50, "historical": 100, "notifications": ["room": 50],
            "events": [
                EventType.roomName: 50, EventType.roomPowerLevels: 100, EventType.roomHistoryVisibility: 100,
                EventType.roomCanonicalAlias: 50, EventType.roomAvatar: 50, EventType.roomTombstone: 100,
                EventType.roomServerACL: 100, EventType.roomEncryption: 100,
            ],
        ]
        var users: [String: JSON] = version.privilegedCreators ? [:] : [creator.rawValue: 100]
        if preset == "trusted_private_chat" && !version.privilegedCreators {
            for invitee in invitees { users[invitee.rawValue] = 100 }
        }
        power["users"] = .object(users)
        if case .object(let override)? = body["power_level_content_override"] {
            for (key, value) in override { power[key] = value }
        } else if body["power_level_content_override"] != nil, body["power_level_content_override"]?.isNull == false {
            throw MatrixError(.badJSON, "power_level_content_override must be an object")
        }
        var initialState: [EventDraft] = []
        // Each entry is a state event written with the room: bounded, so one request cannot
        // hold the writer for minutes (Synapse has no count limit, only the body size).
        let givenEntries = body["initial_state"]?.arrayValue ?? []
        guard givenEntries.count <= RequestBounds.maxInitialState else {
            throw MatrixError(.invalidParam, "At most \(RequestBounds.maxInitialState) initial_state entries")
        }
        for item in givenEntries {
            guard let type = item["type"]?.stringValue, let content = item["content"]?.objectValue else {
                throw MatrixError(.badJSON, "initial_state entries need type and content")
            }
            if let key = item["state_key"], !key.isNull, key.stringValue == nil {
                throw MatrixError(.badJSON, "initial_state state_key must be a string")
            }
            initialState.append(EventDraft(type: try RoomEvents.eventType(type), sender: creator,
                                           stateKey: try RoomEvents.stateKey(item["state_key"]?.stringValue ?? ""),
                                           content: content))
        }
        let creatorContent = try await service.memberContent(creator, membership: MembershipState.join.rawValue)
        let name = body["name"]?.stringValue
        let topic = body["topic"]?.stringValue
        if body["name"] != nil && name == nil { throw MatrixError(.badJSON, "name must be a string") }
        if body["topic"] != nil && topic == nil { throw MatrixError(.badJSON, "topic must be a string") }
        let powerContent = power, canonicalAlias = alias, givenState = initialState
        let (roomID, _) = try await service.rooms.createRoom(creator: creator, version: version,
                                                             createContent: createContent) { _ in
            func state(_ type: String, _ content: [String: JSON]) -> EventDraft {
                EventDraft(type: type, sender: creator, stateKey: "", content: content)
            }
            var events = [EventDraft(type: EventType.roomMember, sender: creator, stateKey: creator.rawValue, content: creatorContent)]
            events.append(state(EventType.roomPowerLevels, powerContent))
            if let canonicalAlias { events.append(state(EventType.roomCanonicalAlias, ["alias": .string(canonicalAlias.rawValue)])) }
            let explicit = Set(givenState.map { StateKey($0.type, $0.stateKey ?? "") })
            func unlessGiven(_ type: String, _ content: [String: JSON]) {
                if !explicit.contains(StateKey(type, "")) { events.append(state(type, content)) }
            }
            unlessGiven(EventType.roomJoinRules, ["join_rule": preset == "public_chat" ? "public" : "invite"])
            unlessGiven(EventType.roomHistoryVisibility, ["history_visibility": HistoryVisibility.shared.json])
            if preset != "public_chat" { unlessGiven(EventType.roomGuestAccess, ["guest_access": "can_join"]) }
            events += givenState
            if let name { events.append(state(EventType.roomName, ["name": .string(name)])) }
            if let topic {
                events.append(state(EventType.roomTopic, ["topic": .string(topic),
                                                      "m.topic": ["m.text": [["body": .string(topic)]]]]))
            }
            return events
        }
        if let alias {
            _ = try await app.database.directory.createAlias(alias, room: roomID, creator: creator)
        }
        if visibility == "public" {
            try await app.database.directory.setVisibility("public", of: roomID)
        }
        for invitee in invitees {
            var extra: [String: JSON] = [:]
            if isDirect { extra["is_direct"] = true }
            let content = try await service.memberContent(invitee, membership: MembershipState.invite.rawValue, extra: extra)
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: creator, stateKey: invitee.rawValue,
                                                  content: content), in: roomID)
        }
        return roomID
    }
}
