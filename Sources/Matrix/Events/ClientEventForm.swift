/// The client-server form of an event ("ClientEvent" in the client-server API): the fields a
/// client sees, without the federation-only ones (`auth_events`, `prev_events`, `depth`,
/// `hashes`, `signatures`, `origin`). Computed once when an event is persisted and stored as
/// bytes, so sync and `/messages` serve it without re-encoding.
public enum ClientEventForm {
    static let kept: [String] = ["type", "sender", "content", "origin_server_ts", "state_key", "redacts"]

    public static func json(of event: [String: JSON], eventID: EventID, roomID: RoomID,
                            unsigned: [String: JSON] = [:]) -> JSON {
        var out: [String: JSON] = [:]
        out.reserveCapacity(9)
        for key in kept { if let value = event[key] { out[key] = value } }
        if out["content"] == nil { out["content"] = .object([:]) }
        out["event_id"] = .string(eventID.rawValue)
        out["room_id"] = .string(roomID.rawValue)
        var u = unsigned
        if let original = event["unsigned"]?.objectValue { for (k, v) in original where u[k] == nil { u[k] = v } }
        if !u.isEmpty { out["unsigned"] = .object(u) }
        return .object(out)
    }
}
