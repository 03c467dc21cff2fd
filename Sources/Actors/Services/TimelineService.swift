import Matrix
import Synchronization

/// What a room actor last published about its timeline: its ring of recent events (the
/// actor's own array, shared, never copied here), where the ring starts, the room's newest
/// position and its history visibility. Immutable: a reader holds a consistent view with no
/// hop to the actor.
public struct RoomTimeline: Sendable {
    /// The actor's ring of recent events, oldest first.
    public var recent: [PersistedEvent]
    /// The ring holds every event of the room after this position.
    public var floor: Int64
    public var lastPosition: Int64
    /// `m.room.history_visibility` of the current state (`shared` when unset).
    public var historyVisibility: String

    public init(recent: [PersistedEvent], floor: Int64, lastPosition: Int64, historyVisibility: String) {
        self.recent = recent
        self.floor = floor
        self.lastPosition = lastPosition
        self.historyVisibility = historyVisibility
    }

    /// As `RoomActor.timeline`: the newest events in `(after, upTo]` passing `include`, or
    /// nil when the ring cannot tell.
    public func newest(after: Int64, upTo: Int64, limit: Int,
                       include: (PersistedEvent) -> Bool) -> (events: [PersistedEvent], limited: Bool)? {
        PersistedEvent.newest(in: recent, floor: floor, after: after, upTo: upTo, limit: limit, include: include)
    }
}

/// The rooms' timelines as their actors published them (the `timeline` service): each
/// resident room actor publishes a `RoomTimeline` snapshot after every durable batch (before
/// the batch's positions become visible) and when it activates; a caught-up `/sync` reads it
/// under one lock instead of queueing on the actor. There is one ring, the actor's: this
/// service only holds a reference to it. The newest position of every room seen since start
/// is kept (a few bytes a room) after its actor deactivated, so a sync can still tell that
/// an idle room has nothing new. Called by `RoomActor` (publish, retire) and by the App's
/// sync and room lookups (read).
public final class TimelineService: Sendable {
    private struct State {
        var rooms: [String: (owner: ObjectIdentifier, timeline: RoomTimeline)] = [:]
        var positions: [String: Int64] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// The snapshot of a resident room, if its actor published one.
    public func timeline(of room: RoomID) -> RoomTimeline? {
        state.withLock { $0.rooms[room.rawValue]?.timeline }
    }

    /// The newest position written in `room` since start (nil if none is known).
    public func lastPosition(of room: RoomID) -> Int64? {
        state.withLock { $0.positions[room.rawValue] }
    }

    /// Called by the room's actor (`owner`) with its new ring.
    func publish(_ room: RoomID, _ timeline: RoomTimeline, owner: ObjectIdentifier) {
        state.withLock { state in
            state.rooms[room.rawValue] = (owner, timeline)
            if (state.positions[room.rawValue] ?? -1) < timeline.lastPosition {
                state.positions[room.rawValue] = timeline.lastPosition
            }
        }
    }

    /// Drops the snapshot of a deactivated actor (unless a successor already published);
    /// the position stays.
    func retire(_ room: RoomID, owner: ObjectIdentifier) {
        state.withLock { state in
            if state.rooms[room.rawValue]?.owner == owner { state.rooms[room.rawValue] = nil }
        }
    }

    /// Rooms with a published snapshot (diagnostics and tests).
    public var residentCount: Int { state.withLock { $0.rooms.count } }
}
