import Transport
import Actors
import Logging
import Matrix
import Persistence

/// What the room handlers share: the room actors (`Rooms`) and the services in Actors that
/// answer without them — timelines (each room actor's published ring and newest position),
/// memberships per user, typing, receipts, to-device — plus the notifier fan-out that wakes
/// long-polling syncs, and the lookups every room handler needs (membership, alias
/// resolution, visibility of history). Built by `MyelinServer`; owned by `MyelinApp`.
/// Requests go one way: handler → this service → an actor, a service or a store.
final class RoomService: Sendable {
    let rooms: Rooms
    let fanout: NotifierFanout
    let database: Database
    let serverName: String
    let timelines: TimelineService
    let membershipService: MembershipService
    let typing: TypingService
    let receipts: ReceiptService
    let toDevice: ToDeviceService
    /// The outbound federation queues (one actor per remote server); sends nothing until the
    /// App connects a `FederationRequesting`.
    let federation: FederationDestinations
    /// Push rules per event for the local members, `/notifications` and the pushers.
    let push: PushPipeline
    private let logger = Logger(label: "myelin.rooms")
    /// Users unused this long leave the in-memory membership cache (the room actors' idle
    /// timeout).
    let membershipIdleSeconds: Int64

    init(configuration: Configuration, database: Database, signingKey: SigningKey) async throws {
        self.database = database
        serverName = configuration.serverName
        let actors = configuration.actors
        let fanout = NotifierFanout(limits: RegistryLimits(maxResident: actors.notifiers.maxResident,
                                                           idleTimeoutSeconds: actors.notifiers.idleTimeoutSeconds))
        self.fanout = fanout
        timelines = TimelineService()
        membershipService = MembershipService(database: database)
        let events = try await RoomContext.loadEventStream(database)
        let localServer = try ServerName(parsing: configuration.serverName)
        let federation = FederationDestinations(
            database: database, events: events, localServer: localServer,
            limits: .init(backoffInitial: .milliseconds(configuration.federation.backoffInitialMs),
                          backoffMax: .milliseconds(configuration.federation.backoffMaxMs)),
            registryLimits: RegistryLimits(maxResident: actors.federationDestinations.maxResident,
                                           idleTimeoutSeconds: actors.federationDestinations.idleTimeoutSeconds))
        self.federation = federation
        var context = RoomContext(database: database, events: events, serverName: localServer,
                                  signingKey: signingKey, recentEventsLimit: actors.roomRecentEvents,
                                  timelines: timelines, memberships: membershipService, fanout: fanout)
        context.federation = federation
        push = PushPipeline(database: database, localServer: localServer, configuration: configuration.push)
        context.push = push
        rooms = Rooms(context: context, limits: RegistryLimits(maxResident: actors.rooms.maxResident,
                                                              idleTimeoutSeconds: actors.rooms.idleTimeoutSeconds))
        receipts = try await ReceiptService(database: database)
        typing = TypingService()
        membershipIdleSeconds = Int64(max(actors.rooms.idleTimeoutSeconds, 60))
        toDevice = try await ToDeviceService(database: database)
    }

    var eventStream: StreamTracker { rooms.context.events }

    /// Periodic upkeep: idle room actors and notifiers, expired typing notices.
    func runMaintenance() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(5)) } catch { return }
            await rooms.registry.sweepIdle()
            await federation.registry.sweepIdle()
            await push.deliveries.registry.sweepIdle()
            fanout.sweep()
            membershipService.evictIdle(idleSeconds: membershipIdleSeconds)
            for (room, position) in typing.expire(now: Clock.nowMilliseconds()) {
                await notifyMembers(of: room, StreamChange(.typing, position))
            }
        }
    }

    // MARK: lookups

    /// The actor of an existing room, or 404 `M_NOT_FOUND`.
    func existingRoom(_ roomID: RoomID) async throws -> RoomActor {
        // A room id from a request may name nothing: ask the store before activating an actor,
        // so made-up ids (space children, joins, peeks) cannot fill the registry and evict
        // the rooms in use.
        if timelines.lastPosition(of: roomID) == nil {
            guard try await database.roomEvents.roomVersion(of: roomID) != nil else {
                throw MatrixError(.notFound, "Unknown room \(roomID)")
            }
        }
        let actor = try await rooms.room(roomID)
        guard await actor.version != nil else { throw MatrixError(.notFound, "Unknown room \(roomID)") }
        return actor
    }

    /// The user's memberships by room (cached; loaded from the store on first use).
    func memberships(of user: UserID) async throws -> [String: MembershipStore.Membership] {
        try await membershipService.memberships(of: user)
    }

    func membership(_ user: UserID, in roomID: RoomID) async throws -> MembershipStore.Membership? {
        try await database.memberships.membership(of: user, in: roomID)
    }

    /// 403 unless the user is joined to the room.
    func requireJoined(_ user: UserID, _ roomID: RoomID) async throws {
        guard try await membership(user, in: roomID)?.membership == MembershipState.join else {
            throw MatrixError(.forbidden, "You are not joined to room \(roomID)")
        }
    }

    /// A room id, or an alias resolved to one (404 when unknown).
    func resolve(_ idOrAlias: String) async throws -> RoomID {
        if idOrAlias.hasPrefix("#") {
            let alias = try RoomAlias(parsing: idOrAlias)
            guard let found = try await database.directory.alias(alias) else {
                throw MatrixError(.notFound, "Room alias \(idOrAlias) not found")
            }
            return found.roomID
        }
        return try RoomID(parsing: idOrAlias)
    }

    /// Sends one event; auth failures are 403 `M_FORBIDDEN` from the auth rules.
    func send(_ draft: EventDraft, in roomID: RoomID) async throws -> PersistedEvent {
        _ = try await existingRoom(roomID)
        return try await rooms.send(draft, in: roomID)
    }

    /// `m.room.member` content for `user` with their profile (displayname, avatar), as
    /// Synapse fills it for joins and invites.
    func memberContent(_ user: UserID, membership: String, extra: [String: JSON] = [:]) async throws -> [String: JSON] {
        var content: [String: JSON] = ["membership": .string(membership)]
        if user.serverName.rawValue == serverName, let record = try await database.accounts.user(id: user) {
            if let name = record.displayname { content["displayname"] = .string(name) }
            if let avatar = record.avatarURL { content["avatar_url"] = .string(avatar) }
        }
        for (key, value) in extra { content[key] = value }
        return content
    }

    /// Wakes the long-polls of the room's joined and invited members.
    func notifyMembers(of roomID: RoomID, _ change: StreamChange) async {
        let room = roomID.rawValue
        let members: [MembershipStore.Membership]
        do {
            members = try await database.memberships.members(of: roomID)
        } catch {
            // The change is stored; only the wake-up is lost (members see it on their next sync).
            logger.warning("waking the members of \(room) failed: \(error)")
            return
        }
        fanout.notify(members.filter { $0.membership == MembershipState.join }.compactMap { try? UserID(parsing: $0.userID) }, of: change)
    }

    // MARK: history visibility

    /// Decides which events of one room a user may see (spec "History visibility", Synapse's
    /// `filter_events_for_client`), by `HistoryVisibility.allows` with the state at each event;
    /// `shared` history is visible to a user joined now. State at an event is read per state
    /// group, two keys only.
    struct Visibility {
        let user: String
        let joinedNow: Bool
        var cache: [Int64: Bool] = [:]

        mutating func visible(_ row: RoomEventStore.EventRow, _ db: any SQLConnection) throws -> Bool {
            // The user's own membership events are always visible to them.
            if row.type == EventType.roomMember && row.stateKey == user { return true }
            // State before the event: the group of the previous event; for a state event its
            // own group differs only by itself, which only matters for the two keys below.
            let isVisibilityChange = row.type == EventType.roomHistoryVisibility && row.stateKey == ""
            if !isVisibilityChange, let known = cache[row.stateGroup] { return known }
            let entries = try RoomService.stateEntries(db, group: row.stateGroup,
                                                       keys: [StateKey(EventType.roomHistoryVisibility, ""), .member(user)])
            var visibility = HistoryVisibility.shared
            var membership: MembershipState?
            var ids: [String] = []
            for entry in entries { ids.append(entry.eventID) }
            for event in try RoomEventStore.events(db, ids: ids) {
                let content = try JSON.parse(event.json)["content"]
                if event.type == EventType.roomHistoryVisibility {
                    visibility = HistoryVisibility(content: content?["history_visibility"]?.stringValue)
                } else {
                    membership = content?["membership"]?.stringValue.flatMap(MembershipState.init(rawValue:))
                }
            }
            if isVisibilityChange {
                // A visibility change is visible under the setting before or after it (spec:
                // "Server behaviour" of history visibility); the one before is its prev_content.
                let before = (try? JSON.parse(row.clientJSON))?["unsigned"]?["prev_content"]?["history_visibility"]?.stringValue
                return HistoryVisibility.allowsChange(before: (HistoryVisibility(content: before), membership),
                                                      after: (visibility, membership), joinedAfter: joinedNow)
            }
            // "Joined after the event": the user is joined now.
            let result = HistoryVisibility.allows(visibility, membership: membership, joinedAfter: joinedNow)
            cache[row.stateGroup] = result
            return result
        }
    }

    /// Selected entries of a state group (its snapshot plus deltas, nearest delta winning).
    static func stateEntries(_ db: any SQLConnection, group: Int64, keys: [StateKey]) throws -> [RoomEventStore.StateEntry] {
        let all = try RoomEventStore.state(db, group: group)
        let wanted = Set(keys)
        return all.filter { wanted.contains(StateKey($0.type, $0.stateKey)) }
    }

    /// The last position a user with `membership` may read: their leave (or ban) if they left,
    /// otherwise `head` — history, threads and timestamps stop where the user left.
    static func readCeiling(_ membership: MembershipStore.Membership?, head: Int64 = .max) -> Int64 {
        guard let membership, membership.membership == MembershipState.leave || membership.membership == MembershipState.ban else { return head }
        return membership.streamOrdering
    }

    /// May `user` read the room's history at all (current state / members): joined now, or
    /// the room is world readable. Returns the membership row for callers that serve the
    /// state at a user's leave.
    func readableState(_ user: UserID, _ roomID: RoomID) async throws -> (actor: RoomActor, membership: MembershipStore.Membership?) {
        let actor = try await existingRoom(roomID)
        let membership = try await self.membership(user, in: roomID)
        if membership?.membership == MembershipState.join { return (actor, membership) }
        let visibility = await actor.stateEvent(StateKey(EventType.roomHistoryVisibility, ""))?.content["history_visibility"]?.stringValue
        if HistoryVisibility(content: visibility) == .worldReadable { return (actor, membership) }
        if let membership, membership.membership == MembershipState.leave || membership.membership == MembershipState.ban { return (actor, membership) }
        throw MatrixError(.forbidden, "User \(user) not in room \(roomID), and room previews are disabled")
    }

    /// Client forms of events by id, in the order given (missing ones skipped).
    func clientEvents(_ ids: [String]) async throws -> [[UInt8]] {
        let rows = try await database.roomEvents.events(ids: ids)
        var byID: [String: [UInt8]] = [:]
        for row in rows { byID[row.eventID] = row.clientJSON }
        return ids.compactMap { byID[$0] }
    }
}
