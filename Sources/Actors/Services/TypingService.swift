import Matrix
import Synchronization

/// Typing notices (the `typing` service), in memory: the `typing` stream restarts with the
/// process, as Synapse's does. Each change takes a position; sync sends a room's current
/// typers when the room's position is ahead of the token. Called by the typing endpoint
/// (set), sync (read) and the App's maintenance loop (expire).
public final class TypingService: Sendable {
    private struct State {
        var position: Int64 = 0
        var rooms: [RoomID: (position: Int64, users: [UserID: Int64])] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// The stream's position now.
    public var position: Int64 { state.withLock { $0.position } }

    /// Sets or clears `user` typing in `room` until `until` (ms); returns the new position,
    /// or nil when nothing changed.
    public func set(_ user: UserID, in room: RoomID, until: Int64?) -> Int64? {
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
    public func typers(in room: RoomID, since: Int64) -> [UserID]? {
        state.withLock { state in
            guard let entry = state.rooms[room], entry.position > since else { return nil }
            return entry.users.keys.sorted { $0.rawValue < $1.rawValue }
        }
    }

    /// Drops notices expired at `now` (ms); returns the rooms that changed with their new
    /// positions (the caller wakes their members).
    public func expire(now: Int64) -> [(RoomID, Int64)] {
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
