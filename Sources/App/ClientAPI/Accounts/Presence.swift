import Actors
import Matrix
import Persistence
import Transport

/// `GET/PUT /presence/{userId}/status` (spec: client-server API, "Presence"). Each change
/// takes a position on the presence stream, which sync reads. With `presence.enabled: false`
/// nothing is stored: PUT is accepted and ignored and GET answers `offline`, as Synapse does.
enum Presence {
    static let states: Set<String> = ["online", "offline", "unavailable"]
    /// A user active within this long is `currently_active` (Synapse: 60 s of busy-ness).
    static let currentlyActiveMs: Int64 = 60_000

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.put, "/presence/{userId}/status", setPresence)
        routes.client(.get, "/presence/{userId}/status", getPresence)
    }

    /// `PUT /presence/{userId}/status`: sets the requester's presence.
    static func setPresence(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireSelf("Can only set your own presence state")
        try context.rateLimit("presence", accounts.configuration.rateLimits.presence, user: requester.userID)
        let body = try await context.jsonObject()
        guard let state = body["presence"]?.stringValue else { throw MatrixError(.missingParam, "Missing presence") }
        guard states.contains(state) else { throw MatrixError(.invalidParam, "Invalid presence state \(state)") }
        if let message = body["status_msg"], !message.isNull {
            guard let text = message.stringValue else { throw MatrixError(.badJSON, "status_msg must be a string") }
            // Every peer's sync carries it: one status line, not a document.
            try RequestBounds.text(text, "status_msg", maxBytes: RequestBounds.maxStatusMessageBytes)
        }
        guard accounts.configuration.presence.enabled else { return .json([:]) }
        let presence = PresenceStore.Presence(state: state, statusMessage: body["status_msg"]?.stringValue,
                                                lastActiveTs: Clock.nowMilliseconds())
        try await store(context.app, requester.userID, presence)
        return .json([:])
    }

    /// `GET /presence/{userId}/status`: a user's presence, for the user or someone who shares a room.
    static func getPresence(_ context: RequestContext) async throws -> HTTPResponse {
        let accounts = context.app.accounts
        let requester = try await context.requireUser()
        let target = try UserID(parsing: context.parameter("userId"))
        guard accounts.configuration.presence.enabled else { return .json(["presence": "offline"]) }
        // A remote user's presence is what their server sent (`m.presence`), if any.
        if target.serverName == context.app.localServer, try await accounts.database.accounts.user(id: target) == nil {
            throw MatrixError(.notFound, "Unknown user")
        }
        // Presence is for people who share a room (Synapse: M_FORBIDDEN otherwise).
        if target != requester.userID {
            let shares = try await accounts.database.memberships.peers(of: [requester.userID]).contains(target)
            guard shares else { throw MatrixError(.forbidden, "You are not allowed to see their presence") }
        }
        guard let stored = try await accounts.database.presence.presence(userID: target) else {
            return .json(["presence": "offline"])
        }
        let ago = max(0, Clock.nowMilliseconds() - stored.lastActiveTs)
        var body: [String: JSON] = [
            "presence": .string(stored.state),
            "last_active_ago": .int(ago),
            "currently_active": .bool(stored.state == "online" && ago < currentlyActiveMs),
        ]
        if let message = stored.statusMessage { body["status_msg"] = .string(message) }
        return .json(.object(body))
    }

    /// Stores a state on the presence stream and wakes the long-polls of the user and of
    /// everyone sharing a room with them (sync delivers it).
    static func store(_ app: MyelinApp, _ user: UserID, _ presence: PresenceStore.Presence) async throws {
        try await store(app, typed: [(user, presence)])
    }

    /// `store(_:typed:)` for the presence of syncing users, whose pending states
    /// `SyncPresence` keys by raw user id (an id that does not parse is skipped).
    static func store(_ app: MyelinApp, _ changes: [(userID: String, presence: PresenceStore.Presence)]) async throws {
        try await store(app, typed: changes.compactMap { change in
            (try? UserID(parsing: change.userID)).map { (userID: $0, presence: change.presence) }
        })
    }

    /// Stores several users' states at one position and wakes them and their room peers once.
    static func store(_ app: MyelinApp, typed changes: [(userID: UserID, presence: PresenceStore.Presence)]) async throws {
        let accounts = app.accounts
        let position = try await accounts.presenceStream.withNextPosition { position in
            try await accounts.database.presence.setPresences(changes, position: position)
            return position
        }
        for change in changes { app.sync.presence.noteStored(change.userID, state: change.presence.state) }
        let changed = Set(changes.map(\.userID))
        let peers = try await accounts.database.memberships.peers(of: Array(changed))
        app.roomService.fanout.notify(changed.union(peers), of: StreamChange(.presence, position))
        await app.sendPresenceEDUs(typed: changes, peers: peers)
    }
}
