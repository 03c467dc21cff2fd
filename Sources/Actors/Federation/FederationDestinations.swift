import Matrix
import Persistence
import Synchronization

/// The outbound side of federation: a `Registry` of `FederationDestinationActor`s (one per
/// remote server, `actors.federation_destinations` limits) and the entry points that wake
/// them. Room actors call `published` after each durable batch (through `RoomContext`);
/// the App calls `enqueue` for EDUs (typing, receipts, presence, device lists),
/// `wakeToDevice` after queueing to-device messages, and `heardFrom` when a server
/// contacts us. Created by the App's `RoomService`; nothing is sent until `connect` gives
/// it a `FederationRequesting` (federation disabled: never connected).
public final class FederationDestinations: Sendable {
    /// At most this many events per room in one catch-up; the remote fetches older ones
    /// with `get_missing_events` (Synapse sends only the newest event of each room).
    public static let catchUpEventsPerRoom = 50

    /// What every destination actor shares.
    final class Shared: Sendable {
        let database: Database
        let events: StreamTracker
        let localServer: ServerName
        let limits: FederationDestinationStateMachine.Limits
        let clock: any RegistryClock
        let jitterSource: @Sendable () -> Double
        private let connected = Mutex<(any FederationRequesting)?>(nil)
        /// Where a destination never sent to starts: just before the first batch that woke
        /// it (activation runs later, after that batch is visible, and must not skip it).
        let startHints = Mutex<[ServerName: Int64]>([:])
        /// The room whose batch woke a destination never sent to, for its first read (its
        /// rooms come from joined members; a kicked invitee's server has none there).
        let startRooms = Mutex<[ServerName: RoomID]>([:])

        init(database: Database, events: StreamTracker, localServer: ServerName,
             limits: FederationDestinationStateMachine.Limits, clock: any RegistryClock,
             jitter: @escaping @Sendable () -> Double) {
            self.database = database
            self.events = events
            self.localServer = localServer
            self.limits = limits
            self.clock = clock
            self.jitterSource = jitter
        }

        func requester() -> (any FederationRequesting)? { connected.withLock { $0 } }
        func connect(_ requester: any FederationRequesting) { connected.withLock { $0 = requester } }
        func jitter() -> Double { jitterSource() }
    }

    let shared: Shared
    public let registry: Registry<ServerName, FederationDestinationActor>
    /// Remote servers with joined members, per room, as of the room's last published member
    /// change (a message costs no scan of the state).
    private let servers = Mutex<[RoomID: Set<ServerName>]>([:])

    public init(database: Database, events: StreamTracker, localServer: ServerName,
                limits: FederationDestinationStateMachine.Limits, registryLimits: RegistryLimits,
                clock: any RegistryClock = MonotonicRegistryClock(),
                jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        let shared = Shared(database: database, events: events, localServer: localServer, limits: limits,
                            clock: clock, jitter: jitter)
        self.shared = shared
        registry = Registry(limits: registryLimits, clock: clock) { destination in
            try await FederationDestinationActor.activate(destination, shared: shared)
        }
    }

    /// Starts sending through `requester`, and activates (in the background) every
    /// destination with something left in the store from before a restart or crash
    /// (`resumeAll`).
    public func connect(_ requester: any FederationRequesting) {
        shared.connect(requester)
        Task.detached { [self] in try? await self.resumeAll() }
    }

    public var isConnected: Bool { shared.requester() != nil }

    /// The connected requester (the App's queries use it too); nil before `connect`.
    public var requester: (any FederationRequesting)? { shared.requester() }

    /// Activates every destination that has something left in the store (start-up: a crash
    /// or restart with undelivered events or to-device messages).
    public func resumeAll() async throws {
        let store = shared.database.federationOutbox
        var destinations = Set(try await store.destinationsWithToDevice())
        destinations.formUnion(try await store.destinationsWithPosition(below: shared.events.visiblePosition))
        for destination in destinations where destination != shared.localServer {
            _ = try? await registry.get(destination)
        }
    }

    /// Called by a room actor after a durable batch (its state after the batch): the
    /// destinations of the remote servers with joined members are woken if the batch holds
    /// local events. Remote members whose membership the batch changed are included (a kick
    /// must reach the kicked user's server).
    public func published(_ roomID: RoomID, events: [PersistedEvent], state: AuthState) {
        guard shared.requester() != nil else { return }
        let suffix = ":" + shared.localServer.rawValue
        var targets: Set<ServerName>
        let memberChange = events.contains { $0.type == EventType.roomMember }
        // A batch of remote events only matters when it changes the members (a join received
        // over federation): the new server's destination starts now, before our next event.
        let hasLocal = events.contains(where: { $0.sender.hasSuffix(suffix) })
        guard hasLocal || memberChange else { return }
        let previous = servers.withLock({ $0[roomID] })
        if !memberChange, let previous {
            targets = previous
        } else {
            targets = Self.joinedServers(state, except: shared.localServer)
            servers.withLock { $0[roomID] = targets }
        }
        for event in events where event.type == EventType.roomMember {
            if let key = event.stateKey, let user = try? UserID(parsing: key), user.serverName != shared.localServer,
               !(state[.member(key)]?.eventID == event.eventID && state[.member(key)]?.membership == MembershipState.invite.rawValue)
                || Self.reachesTarget(event, server: user.serverName, joinedBefore: previous, state: state) {
                // An invite reached its server through `/invite`; not again through `/send`
                // (as Synapse; SyTest's servers do not know the room yet), unless that server
                // was in the room before (`reachesTarget`: it checks a later join against it).
                targets.insert(user.serverName)
            }
        }
        guard !targets.isEmpty else { return }
        if let first = events.map(\.streamOrdering).min() {
            shared.startHints.withLock { hints in
                for server in targets where hints[server] == nil && hints.count < 10_000 { hints[server] = first - 1 }
            }
            shared.startRooms.withLock { rooms in
                for server in targets where rooms[server] == nil && rooms.count < 10_000 { rooms[server] = roomID }
            }
        }
        let registry = self.registry
        let shared = self.shared
        Task.detached {
            for server in targets {
                let destination = try? await registry.get(server)
                // Consumed by an activation, or not needed by a destination already running.
                shared.startRooms.withLock { if $0[server] == roomID { $0.removeValue(forKey: server) } }
                if hasLocal { await destination?.wake(room: roomID) }
            }
        }
    }

    /// Queues an ephemeral EDU for `destinations` (coalesced by `key`).
    public func enqueue(_ edu: JSON, key: FederationDestinationStateMachine.EDUKey?, to destinations: Set<ServerName>) async {
        guard shared.requester() != nil else { return }
        for destination in destinations where destination != shared.localServer {
            try? await registry.get(destination).enqueue(edu, key: key)
        }
    }

    /// To-device EDUs were queued in the store for `destinations`.
    public func wakeToDevice(_ destinations: Set<ServerName>) async {
        guard shared.requester() != nil else { return }
        for destination in destinations where destination != shared.localServer {
            try? await registry.get(destination).wake(toDevice: true)
        }
    }

    /// `server` contacted us: it is up, so its destination retries now if it was backing
    /// off, and one deactivated meanwhile (idle during a long outage) is activated to look
    /// at what is left for it in the store.
    public func heardFrom(_ server: ServerName) async {
        guard shared.requester() != nil, server != shared.localServer else { return }
        try? await registry.get(server).heardFrom()
    }

    /// Whether a member event also goes to its target's server, which may have no joined
    /// member after it: a kick or ban always does (it must reach the kicked user's server). An
    /// invite goes only to a server that was in the room before (it holds the room and checks
    /// a later join against it), or has a joined member: a server that never was gets it
    /// through `/invite` alone and knows nothing of the room (Synapse sends a room's events
    /// only to the servers joined at the event's prev events).
    static func reachesTarget(_ event: PersistedEvent, server: ServerName, joinedBefore: Set<ServerName>?, state: AuthState) -> Bool {
        if joinedBefore?.contains(server) == true { return true }
        let membership = (try? JSON.parse(event.bytes))?["content"]?["membership"]?.stringValue
        // The invited user had a membership before (left, now invited back): their server knows the room.
        guard membership == MembershipState.invite.rawValue, event.replacesState == nil else { return true }
        let suffix = ":" + server.rawValue
        return state.contains { key, _ in
            key.type == EventType.roomMember && key.stateKey != event.stateKey && key.stateKey.hasSuffix(suffix)
        }
    }

    /// The remote servers with joined members in `state`.
    public static func joinedServers(_ state: AuthState, except local: ServerName) -> Set<ServerName> {
        var found: Set<ServerName> = []
        for (key, pdu) in state where key.type == EventType.roomMember && pdu.membership == MembershipState.join.rawValue {
            if let user = try? UserID(parsing: key.stateKey), user.serverName != local { found.insert(user.serverName) }
        }
        return found
    }

    /// A transaction id as a path segment (ours are digits and '-', kept as is).
    static func percentEncoded(_ segment: String) -> String {
        var out = ""
        for scalar in segment.unicodeScalars {
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", ".", "_", "~": out.unicodeScalars.append(scalar)
            default:
                for byte in String(scalar).utf8 { out += "%" + String(byte, radix: 16, uppercase: true) }
            }
        }
        return out
    }
}
