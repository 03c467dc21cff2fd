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
        routes.client(.post, "/createRoom", createRoom)
    }

    /// `POST /createRoom` (spec: "Creation").
    static func createRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser(allowGuests: false)
        // A room costs its events: creation draws on the sender's event budget.
        try context.rateLimit("message", context.app.configuration.rateLimits.messages, user: requester.userID)
        let body = try await context.jsonObject()
        return .json(.object(["room_id": .string(try await create(context.app, requester.userID, body).rawValue)]))
    }

    /// Creates the room `body` describes for `creator`: its first events in one transaction,
    /// then its alias, directory listing and invites.
    static func create(_ app: MyelinApp, _ creator: UserID, _ body: [String: JSON]) async throws -> RoomID {
        let service = app.roomService
        let options = try await Options(body, app)
        for invitee in options.invitees { try await Friends.refuseInvite(app, from: creator, to: invitee) }
        var createContent = body["creation_content"]?.objectValue ?? [:]
        createContent["room_version"] = nil
        if options.version.privilegedCreators && options.preset == "trusted_private_chat" && !options.invitees.isEmpty {
            // Room version 12: trusted invitees become creators (MSC4289) rather than 100s.
            createContent["additional_creators"] = .array(options.invitees.map { .string($0.rawValue) })
        }
        let power = try powerLevels(body, options, creator: creator)
        let givenState = try initialState(body, creator: creator)
        let creatorContent = try await service.memberContent(creator, membership: MembershipState.join.rawValue)
        let name = body["name"]?.stringValue
        let topic = body["topic"]?.stringValue
        if body["name"] != nil && name == nil { throw MatrixError(.badJSON, "name must be a string") }
        if body["topic"] != nil && topic == nil { throw MatrixError(.badJSON, "topic must be a string") }
        let (roomID, _) = try await service.rooms.createRoom(creator: creator, version: options.version,
                                                             createContent: createContent) { _ in
            var events = [EventDraft(type: EventType.roomMember, sender: creator, stateKey: creator.rawValue, content: creatorContent),
                          EventDraft(type: EventType.roomPowerLevels, sender: creator, stateKey: "", content: power)]
            events += presetState(options, creator: creator, given: givenState)
            if let name { events.append(EventDraft(type: EventType.roomName, sender: creator, stateKey: "", content: ["name": .string(name)])) }
            if let topic {
                events.append(EventDraft(type: EventType.roomTopic, sender: creator, stateKey: "",
                                         content: ["topic": .string(topic), "m.topic": ["m.text": [["body": .string(topic)]]]]))
            }
            return events
        }
        try await publishAndInvite(app, roomID, options, creator: creator)
        return roomID
    }

    /// The request's choices that shape the room: version, visibility, preset, invitees and
    /// the local alias, validated in this order (so is the first error a client sees).
    struct Options: Sendable {
        var version: RoomVersion
        var visibility: String
        var preset: String
        var isDirect: Bool
        var invitees: [UserID]
        var alias: RoomAlias?

        init(_ body: [String: JSON], _ app: MyelinApp) async throws {
            if let given = body["room_version"], given.stringValue == nil {
                throw MatrixError(.badJSON, "room_version must be a string")
            }
            let versionID = body["room_version"]?.stringValue ?? app.configuration.defaultRoomVersion
            guard body["room_version"] == nil || body["room_version"]?.stringValue != nil,
                  let version = try? RoomVersion.named(versionID) else {
                throw MatrixError(.unsupportedRoomVersion, "Your homeserver does not support the features required to interact with this room",
                                  status: 400)
            }
            self.version = version
            visibility = body["visibility"]?.stringValue ?? "private"
            guard visibility == "public" || visibility == "private" else { throw MatrixError(.invalidParam, "Invalid visibility") }
            preset = body["preset"]?.stringValue ?? (visibility == "public" ? "public_chat" : "private_chat")
            guard ["public_chat", "private_chat", "trusted_private_chat"].contains(preset) else {
                throw MatrixError(.invalidParam, "Invalid preset \(preset)")
            }
            isDirect = body["is_direct"]?.boolValue ?? false
            let inviteList = body["invite"]?.arrayValue ?? []
            guard inviteList.count <= RequestBounds.maxInvites else {
                throw MatrixError(.invalidParam, "At most \(RequestBounds.maxInvites) invitees per createRoom")
            }
            invitees = try inviteList.map { value in
                guard let text = value.stringValue else { throw MatrixError(.badJSON, "invite must be a list of user ids") }
                return try UserID(parsing: text)
            }
            alias = try await Self.localAlias(body["room_alias_name"]?.stringValue, app)
        }

        /// `room_alias_name` as a local alias, refused when malformed or taken.
        static func localAlias(_ name: String?, _ app: MyelinApp) async throws -> RoomAlias? {
            guard let name else { return nil }
            guard !name.contains(":"), !name.contains("#"), !name.isEmpty else {
                throw MatrixError(.invalidParam, "Invalid characters in room alias")
            }
            let alias = try RoomAlias(parsing: "#\(name):\(app.roomService.serverName)")
            if try await app.database.directory.alias(alias) != nil {
                throw MatrixError(.roomInUse, "Room alias already taken", status: 400)
            }
            return alias
        }
    }

    /// The first power levels, as Synapse sets them, with the preset's and the request's
    /// overrides.
    static func powerLevels(_ body: [String: JSON], _ options: Options, creator: UserID) throws -> [String: JSON] {
        let version = options.version
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
        if options.preset == "trusted_private_chat" && !version.privilegedCreators {
            for invitee in options.invitees { users[invitee.rawValue] = 100 }
        }
        power["users"] = .object(users)
        if case .object(let override)? = body["power_level_content_override"] {
            for (key, value) in override { power[key] = value }
        } else if body["power_level_content_override"] != nil, body["power_level_content_override"]?.isNull == false {
            throw MatrixError(.badJSON, "power_level_content_override must be an object")
        }
        return power
    }

    /// `initial_state`: each entry is a state event written with the room, bounded so one
    /// request cannot hold the writer for minutes (Synapse has no count limit, only the body size).
    static func initialState(_ body: [String: JSON], creator: UserID) throws -> [EventDraft] {
        let givenEntries = body["initial_state"]?.arrayValue ?? []
        guard givenEntries.count <= RequestBounds.maxInitialState else {
            throw MatrixError(.invalidParam, "At most \(RequestBounds.maxInitialState) initial_state entries")
        }
        return try givenEntries.map { item in
            guard let type = item["type"]?.stringValue, let content = item["content"]?.objectValue else {
                throw MatrixError(.badJSON, "initial_state entries need type and content")
            }
            if let key = item["state_key"], !key.isNull, key.stringValue == nil {
                throw MatrixError(.badJSON, "initial_state state_key must be a string")
            }
            return EventDraft(type: try RoomEvents.eventType(type), sender: creator,
                              stateKey: try RoomEvents.stateKey(item["state_key"]?.stringValue ?? ""), content: content)
        }
    }

    /// After the power levels: the canonical alias, the preset's join rules, history
    /// visibility and guest access (unless `initial_state` sets them), then `initial_state`.
    static func presetState(_ options: Options, creator: UserID, given: [EventDraft]) -> [EventDraft] {
        func state(_ type: String, _ content: [String: JSON]) -> EventDraft {
            EventDraft(type: type, sender: creator, stateKey: "", content: content)
        }
        var events: [EventDraft] = []
        if let alias = options.alias { events.append(state(EventType.roomCanonicalAlias, ["alias": .string(alias.rawValue)])) }
        let explicit = Set(given.map { StateKey($0.type, $0.stateKey ?? "") })
        func unlessGiven(_ type: String, _ content: [String: JSON]) {
            if !explicit.contains(StateKey(type, "")) { events.append(state(type, content)) }
        }
        unlessGiven(EventType.roomJoinRules, ["join_rule": options.preset == "public_chat" ? "public" : "invite"])
        unlessGiven(EventType.roomHistoryVisibility, ["history_visibility": HistoryVisibility.shared.json])
        if options.preset != "public_chat" { unlessGiven(EventType.roomGuestAccess, ["guest_access": "can_join"]) }
        return events + given
    }

    /// Once the room exists: its alias and directory listing, then the invites.
    static func publishAndInvite(_ app: MyelinApp, _ roomID: RoomID, _ options: Options, creator: UserID) async throws {
        let service = app.roomService
        if let alias = options.alias {
            _ = try await app.database.directory.createAlias(alias, room: roomID, creator: creator)
        }
        if options.visibility == "public" {
            try await app.database.directory.setVisibility("public", of: roomID)
        }
        for invitee in options.invitees {
            var extra: [String: JSON] = [:]
            if options.isDirect { extra["is_direct"] = true }
            let content = try await service.memberContent(invitee, membership: MembershipState.invite.rawValue, extra: extra)
            if invitee.serverName != app.localServer {
                // As `POST /invite`: the invitee's server signs first ("Inviting to a room").
                try await FederationJoins.inviteRemote(invitee, by: creator, roomID: roomID, content: content, app: app)
                continue
            }
            _ = try await service.send(EventDraft(type: EventType.roomMember, sender: creator, stateKey: invitee.rawValue,
                                                  content: content), in: roomID)
        }
    }
}
