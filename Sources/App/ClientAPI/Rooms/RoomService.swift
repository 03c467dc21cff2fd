import Transport
import Actors
import Logging
import Matrix
import Persistence
import Synchronization

/// What the room handlers share: the room actors (`Rooms`), the notifier fan-out that wakes
/// long-polling syncs, the receipts stream and the typing tracker, plus the lookups every
/// room handler needs (membership, alias resolution, visibility of history). Built by
/// `MyelinServer`; owned by `MyelinApp`.
final class RoomService: Sendable {
    let rooms: Rooms
    let fanout: NotifierFanout
    let database: Database
    let serverName: String
    let receiptStream: StreamTracker
    /// Send-to-device messages (one position per send, shared by its recipients).
    let toDeviceStream: StreamTracker
    private let logger = Logger(label: "myelin.rooms")
    /// Per device (`user|device`), the to-device position its syncs acknowledged last, so a
    /// sync with nothing new skips the store.
    let toDeviceAcknowledged = Mutex<[String: Int64]>([:])
    /// Rooms and users unused this long leave the in-memory index (the room actors' idle
    /// timeout).
    let indexIdleSeconds: Int64
    let typing: TypingTracker
    /// Memberships per user and newest positions per room, in memory, so a caught-up sync
    /// finds what changed without reading the store.
    let index: RoomIndex

    init(configuration: Configuration, database: Database, signingKey: SigningKey) async throws {
        self.database = database
        serverName = configuration.serverName
        let actors = configuration.actors
        let fanout = NotifierFanout(limits: RegistryLimits(maxResident: actors.notifiers.maxResident,
                                                           idleTimeoutSeconds: actors.notifiers.idleTimeoutSeconds))
        self.fanout = fanout
        let index = RoomIndex(ringSize: actors.roomRecentEvents)
        self.index = index
        let events = try await RoomContext.loadEventStream(database)
        let context = RoomContext(database: database, events: events, serverName: try ServerName(parsing: configuration.serverName),
                                  signingKey: signingKey, recentEventsLimit: actors.roomRecentEvents,
                                  publish: { fanout.publish($0) },
                                  durable: { room, events, redacted in index.apply(room, events, redacted) })
        rooms = Rooms(context: context, limits: RegistryLimits(maxResident: actors.rooms.maxResident,
                                                              idleTimeoutSeconds: actors.rooms.idleTimeoutSeconds))
        receiptStream = try await StreamTracker.load(name: "receipts", from: database,
                                                     maxPositionSQL: ReceiptStore.maxPositionSQL)
        typing = TypingTracker()
        indexIdleSeconds = Int64(max(actors.rooms.idleTimeoutSeconds, 60))
        toDeviceStream = try await StreamTracker.load(name: "to_device", from: database, maxPositionSQL: ToDeviceStore.maxPositionSQL)
    }

    var eventStream: StreamTracker { rooms.context.events }

    /// Periodic upkeep: idle room actors and notifiers, expired typing notices.
    func runMaintenance() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(5)) } catch { return }
            await rooms.registry.sweepIdle()
            fanout.sweep()
            _ = index.evictIdle(idleSeconds: indexIdleSeconds)
            toDeviceAcknowledged.withLock { if $0.count > 100_000 { $0.removeAll() } }
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
        if index.lastPosition(of: roomID.rawValue) == nil {
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
        if let cached = index.memberships(of: user) { return cached }
        let rows = try await database.memberships.rooms(of: user)
        return index.load(user, rows)
    }

    func membership(_ user: UserID, in roomID: RoomID) async throws -> MembershipStore.Membership? {
        try await database.memberships.membership(of: user, in: roomID)
    }

    /// 403 unless the user is joined to the room.
    func requireJoined(_ user: UserID, _ roomID: RoomID) async throws {
        guard try await membership(user, in: roomID)?.membership == "join" else {
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
        if user.serverName.rawValue == serverName, let record = try await database.accounts.user(id: user.rawValue) {
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
        fanout.notify(members.filter { $0.membership == "join" }.compactMap { try? UserID(parsing: $0.userID) }, of: change)
    }

    // MARK: history visibility

    /// Decides which events of one room a user may see (spec "History visibility", Synapse's
    /// `filter_events_for_client`): an event is visible if it is `world_readable`, or the user
    /// was joined at it, or it is `invited` and the user was invited at it, or it is `shared`
    /// and the user is joined now. State at an event is read per state group, two keys only.
    struct Visibility {
        let user: String
        let joinedNow: Bool
        var cache: [Int64: Bool] = [:]

        mutating func visible(_ row: RoomEventStore.EventRow, _ db: any SQLConnection) throws -> Bool {
            // The user's own membership events are always visible to them.
            if row.type == "m.room.member" && row.stateKey == user { return true }
            // State before the event: the group of the previous event; for a state event its
            // own group differs only by itself, which only matters for the two keys below.
            if let known = cache[row.stateGroup] { return known }
            let entries = try RoomService.stateEntries(db, group: row.stateGroup,
                                                       keys: [StateKey("m.room.history_visibility", ""), .member(user)])
            var visibility = "shared"
            var membership = "leave"
            var ids: [String] = []
            for entry in entries { ids.append(entry.eventID) }
            for event in try RoomEventStore.events(db, ids: ids) {
                let content = try JSON.parse(event.json)["content"]
                if event.type == "m.room.history_visibility" {
                    visibility = content?["history_visibility"]?.stringValue ?? "shared"
                } else {
                    membership = content?["membership"]?.stringValue ?? "leave"
                }
            }
            let result: Bool
            switch visibility {
            case "world_readable": result = true
            case "joined": result = membership == "join"
            case "invited": result = membership == "join" || membership == "invite"
            default: result = membership == "join" || joinedNow
            }
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
        guard let membership, membership.membership == "leave" || membership.membership == "ban" else { return head }
        return membership.streamOrdering
    }

    /// May `user` read the room's history at all (current state / members): joined now, or
    /// the room is world readable. Returns the membership row for callers that serve the
    /// state at a user's leave.
    func readableState(_ user: UserID, _ roomID: RoomID) async throws -> (actor: RoomActor, membership: MembershipStore.Membership?) {
        let actor = try await existingRoom(roomID)
        let membership = try await self.membership(user, in: roomID)
        if membership?.membership == "join" { return (actor, membership) }
        let visibility = await actor.stateEvent(StateKey("m.room.history_visibility", ""))?.content["history_visibility"]?.stringValue
        if visibility == "world_readable" { return (actor, membership) }
        if let membership, membership.membership == "leave" || membership.membership == "ban" { return (actor, membership) }
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

/// Typing notices (in memory; the `typing` stream restarts with the process as Synapse's
/// does). Each change takes a position; sync sends a room's current typers when the room's
/// position is ahead of the token.
final class TypingTracker: Sendable {
    private struct State {
        var position: Int64 = 0
        var rooms: [RoomID: (position: Int64, users: [UserID: Int64])] = [:]
    }
    private let state = Mutex(State())

    var position: Int64 { state.withLock { $0.position } }

    /// Sets or clears `user` typing in `room` until `until` (ms); returns the new position,
    /// or nil when nothing changed.
    func set(_ user: UserID, in room: RoomID, until: Int64?) -> Int64? {
        state.withLock { state in
            var entry = state.rooms[room] ?? (0, [:])
            let was = entry.users[user] != nil
            if let until { entry.users[user] = until } else { entry.users[user] = nil }
            if !was && until == nil { return nil }
            state.position += 1
            entry.position = state.position
            state.rooms[room] = entry
            return state.position
        }
    }

    /// Typers of `room` if its typing changed after `since`.
    func typers(in room: RoomID, since: Int64) -> [UserID]? {
        state.withLock { state in
            guard let entry = state.rooms[room], entry.position > since else { return nil }
            return entry.users.keys.sorted { $0.rawValue < $1.rawValue }
        }
    }

    /// Drops expired notices; returns the rooms that changed with their new positions.
    func expire(now: Int64) -> [(RoomID, Int64)] {
        state.withLock { state in
            var changed: [(RoomID, Int64)] = []
            for (room, var entry) in state.rooms {
                let before = entry.users.count
                entry.users = entry.users.filter { $0.value > now }
                if entry.users.count != before {
                    state.position += 1
                    entry.position = state.position
                    changed.append((room, state.position))
                }
                state.rooms[room] = entry.users.isEmpty && entry.users.count == before ? nil : entry
            }
            return changed
        }
    }
}

/// In-memory indexes fed by the rooms' durable batches (before their positions become
/// visible): each cached user's memberships (loaded from the store on first use, then kept
/// current by the member events), and per room the newest position, the history
/// visibility and a ring of recent events. A caught-up sync reads all of it under one lock,
/// without a hop to the room's actor or the registry.
final class RoomIndex: Sendable {
    struct Room {
        /// Monotonic seconds of the last write or read (for `evictIdle`).
        var lastUsed: Int64 = 0
        var lastPosition: Int64 = 0
        var historyVisibility: String?
        var recent: [PersistedEvent] = []
        /// The ring holds every event of the room after this position.
        var floor: Int64 = 0
    }
    private struct State {
        var memberships: [UserID: [String: MembershipStore.Membership]] = [:]
        var membershipsUsed: [UserID: Int64] = [:]
        /// Changes for users not cached when they were applied, kept until the next load
        /// merges them (a load reading the store just before such a commit would miss it).
        var uncachedChanges: [UserID: [String: MembershipStore.Membership]] = [:]
        var rooms: [String: Room] = [:]
        /// Newest known position per room, kept when the room's entry is evicted (a few
        /// bytes a room), so a sync can still tell that an idle room has nothing new.
        var positions: [String: Int64] = [:]
    }
    private let state = Mutex(State())
    let ringSize: Int

    init(ringSize: Int) { self.ringSize = ringSize }

    func memberships(of user: UserID) -> [String: MembershipStore.Membership]? {
        let now = Self.seconds()
        return state.withLock { state in
            guard let found = state.memberships[user] else { return nil }
            if state.membershipsUsed[user] != now { state.membershipsUsed[user] = now }
            return found
        }
    }

    static func seconds() -> Int64 { Clock.monotonicNanoseconds() / 1_000_000_000 }

    /// Drops rooms and users not used for `idleSeconds`: what they held is in the store and
    /// in the room actors, and is read back on the next use. Called by the maintenance loop.
    func evictIdle(idleSeconds: Int64) -> (rooms: Int, users: Int) {
        let cutoff = Self.seconds() - idleSeconds
        return state.withLock { state in
            let rooms = state.rooms.filter { $0.value.lastUsed < cutoff }.map(\.key)
            for room in rooms { state.rooms[room] = nil }
            let users = state.membershipsUsed.filter { $0.value < cutoff }.map(\.key)
            for user in users {
                state.memberships[user] = nil
                state.membershipsUsed[user] = nil
            }
            return (rooms.count, users.count)
        }
    }

    /// Caches rows read from the store; a change that raced the read wins.
    func load(_ user: UserID, _ rows: [MembershipStore.Membership]) -> [String: MembershipStore.Membership] {
        state.withLock { state in
            var loaded: [String: MembershipStore.Membership] = [:]
            for row in rows { loaded[row.roomID] = row }
            var newer = state.memberships[user] ?? [:]
            for (room, row) in state.uncachedChanges.removeValue(forKey: user) ?? [:]
            where (newer[room]?.streamOrdering ?? -1) < row.streamOrdering {
                newer[room] = row
            }
            for (room, row) in newer where (loaded[room]?.streamOrdering ?? -1) < row.streamOrdering { loaded[room] = row }
            state.memberships[user] = loaded
            state.membershipsUsed[user] = Self.seconds()
            return loaded
        }
    }

    func forget(_ user: UserID) {
        state.withLock { state in
            state.memberships[user] = nil
            state.membershipsUsed[user] = nil
        }
    }

    /// The newest position written in `room` since start (nil if none).
    func lastPosition(of room: String) -> Int64? { state.withLock { $0.positions[room] } }

    /// Records a room's newest position learned from its actor (after a restart or an
    /// eviction), unless a write already recorded a newer one.
    func notePosition(_ position: Int64, of room: String) {
        state.withLock { state in
            if (state.positions[room] ?? -1) < position { state.positions[room] = position }
        }
    }

    func historyVisibility(of room: String) -> String? { state.withLock { $0.rooms[room]?.historyVisibility } }

    func setHistoryVisibility(_ value: String, of room: String) {
        state.withLock { state in
            if state.rooms[room] == nil { return }
            if state.rooms[room]!.historyVisibility == nil { state.rooms[room]!.historyVisibility = value }
        }
    }

    /// As `RoomActor.timeline`, from the ring kept here; nil when it cannot tell.
    func timeline(_ room: String, after: Int64, upTo: Int64, limit: Int,
                  include: (PersistedEvent) -> Bool) -> (events: [PersistedEvent], limited: Bool)? {
        let now = Self.seconds()
        return state.withLock { state in
            guard let entry = state.rooms[room] else { return nil }
            if entry.lastUsed != now { state.rooms[room]!.lastUsed = now }
            return PersistedEvent.newest(in: entry.recent, floor: entry.floor, after: after, upTo: upTo, limit: limit,
                                         include: include)
        }
    }

    func apply(_ roomID: RoomID, _ events: [PersistedEvent], _ redacted: [String: [UInt8]]) {
        let room = roomID.rawValue
        var changes: [(UserID, MembershipStore.Membership)] = []
        var visibility: String?
        for event in events where event.stateKey != nil {
            if event.type == "m.room.member" {
                guard let key = event.stateKey, let user = try? UserID(parsing: key),
                      let membership = (try? JSON.parse(event.clientBytes))?["content"]?["membership"]?.stringValue else { continue }
                changes.append((user, MembershipStore.Membership(roomID: room, userID: key, membership: membership,
                                                                  eventID: event.eventID.rawValue,
                                                                  streamOrdering: event.streamOrdering)))
            } else if event.type == "m.room.history_visibility", event.stateKey == "" {
                visibility = (try? JSON.parse(event.clientBytes))?["content"]?["history_visibility"]?.stringValue ?? "shared"
            }
        }
        guard let first = events.first, let last = events.last else { return }
        let ringSize = self.ringSize
        let now = Self.seconds()
        state.withLock { state in
            var entry = state.rooms[room] ?? Room(floor: first.streamOrdering - 1)
            entry.lastUsed = now
            entry.lastPosition = max(entry.lastPosition, last.streamOrdering)
            state.positions[room] = max(state.positions[room] ?? 0, last.streamOrdering)
            if let visibility { entry.historyVisibility = visibility }
            if !redacted.isEmpty {
                for index in entry.recent.indices {
                    if let bytes = redacted[entry.recent[index].eventID.rawValue] {
                        entry.recent[index].clientBytes = bytes
                        entry.recent[index].clientBytesForSender = nil
                    }
                }
            }
            entry.recent += events
            if entry.recent.count > ringSize {
                let excess = entry.recent.count - ringSize
                entry.floor = entry.recent[excess - 1].streamOrdering
                entry.recent.removeFirst(excess)
            }
            state.rooms[room] = entry
            for (user, membership) in changes {
                if state.memberships[user] != nil {
                    state.memberships[user]![room] = membership
                } else {
                    if state.uncachedChanges.count > 50_000 { state.uncachedChanges.removeAll() }
                    state.uncachedChanges[user, default: [:]][room] = membership
                }
            }
        }
    }
}
