import Actors
import Matrix

extension RequestContext {
    /// Refuses a federation request about `roomID` from `origin` when the room's
    /// `m.room.server_acl` denies that server: 403 `M_FORBIDDEN` (client-server API "Server
    /// Access Control Lists": the ACL applies to every federation request for the room).
    /// A room without an ACL, or unknown here, allows everyone.
    func requireServerAllowed(_ origin: ServerName, in roomID: RoomID) async throws {
        guard let actor = try? await app.roomService.existingRoom(roomID),
              let event = await actor.stateEvent(StateKey(EventType.roomServerACL, "")) else { return }
        guard ServerACL(content: event.content).allows(origin) else {
            throw MatrixError(.forbidden, "Server \(origin) is banned from this room by its server ACL")
        }
    }
}

extension MyelinApp {
    /// Whether the room's `m.room.server_acl` lets `origin` speak in it; false denies the
    /// room's EDUs (typing, receipts) from that server (server-server API, "Server Access
    /// Control Lists": EDUs for the room from a denied server are dropped). A room without an
    /// ACL, or unknown here, allows everyone.
    func serverAllowed(_ origin: ServerName, in roomID: RoomID) async -> Bool {
        guard let actor = try? await roomService.existingRoom(roomID),
              let event = await actor.stateEvent(StateKey(EventType.roomServerACL, "")) else { return true }
        return ServerACL(content: event.content).allows(origin)
    }
}
