import Matrix
import Persistence
import Synchronization

/// The rooms of this server: a `Registry` of `RoomActor`s plus room creation. The App
/// creates one at start-up and its handlers call `createRoom`, `send` and `room`.
public final class Rooms: Sendable {
    public let context: RoomContext
    public let registry: Registry<RoomID, RoomActor>
    /// The last `origin_server_ts` given to a create event. From room version 12 the room
    /// id is the create event's hash, so two rooms created by one user in the same
    /// millisecond would collide; create events get strictly increasing timestamps.
    private let lastCreateTS = Mutex<Int64>(0)
    /// Rooms an admin shut down for purging: their actors activate empty (no state, every
    /// send refused as an unknown room), so nothing writes to them while and after the store
    /// forgets them.
    private let closed: ClosedRooms

    public init(context: RoomContext, limits: RegistryLimits, clock: any RegistryClock = MonotonicRegistryClock()) {
        self.context = context
        let closed = ClosedRooms()
        self.closed = closed
        self.registry = Registry(limits: limits, clock: clock) { roomID in
            if closed.contains(roomID) { return RoomActor(roomID: roomID, context: context, room: nil) }
            return try await RoomActor.activate(roomID, context: context)
        }
    }

    /// Closes a room before its purge: its actor is deactivated (queued sends finish first)
    /// and every later activation is empty. Returns once the old actor has stopped writing.
    public func close(_ roomID: RoomID) async {
        closed.insert(roomID)
        await registry.removeAndWait(roomID)
        // An activation that started before the insert may still bring the room's state:
        // join it (or activate an empty actor) and remove what it made.
        _ = try? await registry.get(roomID)
        await registry.removeAndWait(roomID)
    }

    /// Whether `close` was called for the room.
    public func isClosed(_ roomID: RoomID) -> Bool { closed.contains(roomID) }

    /// The actor of `roomID` (activated from the store if needed).
    public func room(_ roomID: RoomID) async throws -> RoomActor {
        try await registry.get(roomID)
    }

    /// Sends one event into `roomID`; returns once it is committed. Retries once on an
    /// actor that was deactivated under the call; an actor whose write failed unexpectedly
    /// is dropped so the next call rebuilds it from the store.
    public func send(_ draft: EventDraft, in roomID: RoomID) async throws -> PersistedEvent {
        var attempts = 0
        while true {
            let actor = try await registry.get(roomID)
            do {
                return try await actor.send(draft)
            } catch is RoomActorUnavailable where attempts < 3 {
                attempts += 1
            } catch let error as MatrixError {
                throw error
            } catch {
                await registry.reportFailure(roomID, member: actor)
                throw error
            }
        }
    }

    /// Creates a room: `m.room.create`, the creator's join, power levels, join rules and
    /// history visibility (the spec's `private_chat` preset shape, as Synapse writes them),
    /// all in one transaction. Room version 12 derives the room id from the create event;
    /// older versions get a random `!opaque:server` id.
    public func createRoom(creator: UserID, version: RoomVersion = .recommendedDefault,
                           createContent: [String: JSON] = [:], joinRule: String = "invite",
                           extra: [EventDraft] = []) async throws -> (RoomID, [PersistedEvent]) {
        var power: [String: JSON] = [
            "users_default": 0, "events_default": 0, "state_default": 50, "ban": 50, "kick": 50,
            "redact": 50, "invite": 50,
        ]
        // v12: creators have infinite power and must not be listed (MSC4289).
        power["users"] = version.privilegedCreators ? .object([:]) : .object([creator.rawValue: 100])
        let initial = [
            EventDraft(type: EventType.roomMember, sender: creator, stateKey: creator.rawValue, content: ["membership": MembershipState.join.json]),
            EventDraft(type: EventType.roomPowerLevels, sender: creator, stateKey: "", content: power),
            EventDraft(type: EventType.roomJoinRules, sender: creator, stateKey: "", content: ["join_rule": .string(joinRule)]),
            EventDraft(type: EventType.roomHistoryVisibility, sender: creator, stateKey: "", content: ["history_visibility": HistoryVisibility.shared.json]),
        ] + extra
        return try await createRoom(creator: creator, version: version, createContent: createContent) { _ in initial }
    }

    /// Creates a room from a full initial sequence: `m.room.create` (its content completed
    /// with the version and creator), then `initial(roomID)` — the caller's events, built
    /// once the room id is known — all in one transaction.
    public func createRoom(creator: UserID, version: RoomVersion, createContent: [String: JSON], roomID chosen: RoomID? = nil,
                           initial: @Sendable (RoomID) throws -> [EventDraft]) async throws -> (RoomID, [PersistedEvent]) {
        let builder = EventBuilder(roomVersion: version, signingKey: context.signingKey, serverName: context.serverName)
        let wallClock = currentTimeMillis()
        let now = lastCreateTS.withLock { last in
            last = max(wallClock, last + 1)
            return last
        }
        // `chosen`: an id picked before (a room upgrade names it in the old room's tombstone).
        let requestedID: RoomID? = version.hashBasedRoomIDs ? nil : try chosen ?? newOpaqueRoomID()
        let create = try builder.createEvent(creator: creator, content: createContent, roomID: requestedID, originServerTS: now)
        let roomID = create.effectiveRoomID
        return try await createActor(roomID: roomID, version: version, create: create, initial: try initial(roomID))
    }

    private func createActor(roomID: RoomID, version: RoomVersion, create: PDU,
                             initial: [EventDraft]) async throws -> (RoomID, [PersistedEvent]) {
        let actor = try await registry.get(roomID)
        do {
            return (roomID, try await actor.create(version: version, create: create, initial: initial))
        } catch let error as MatrixError {
            throw error
        } catch {
            await registry.reportFailure(roomID, member: actor)
            throw error
        }
    }

    /// A fresh `!opaque:server` room id (room versions before 12).
    public func newOpaqueRoomID() throws -> RoomID {
        try RoomID(parsing: "!\(Self.opaqueID()):\(context.serverName)")
    }

    private static func opaqueID() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var generator = SystemRandomNumberGenerator()
        return String((0..<18).map { _ in letters[Int(generator.next() % UInt64(letters.count))] })
    }
}

/// The rooms `Rooms.close` shut down (shared with the registry's activation closure).
final class ClosedRooms: Sendable {
    private let rooms = Mutex<Set<RoomID>>([])
    func contains(_ room: RoomID) -> Bool { rooms.withLock { $0.contains(room) } }
    func insert(_ room: RoomID) { rooms.withLock { _ = $0.insert(room) } }
}
