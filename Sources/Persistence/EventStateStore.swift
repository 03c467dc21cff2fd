import Matrix

/// What the room DAG knows of events beyond the timeline (schema: `Schema.eventStates`): the
/// state group of the state after an event when it is not the event's `events.state_group`
/// (that column is the room's current state after the event's stream position, which differs
/// for an event received beside other forward extremities, for a soft-failed event, and for a
/// rejected one), and the events rejected on receipt (server-server API, "Rejection"), kept so
/// that later events citing them are handled and never treated as unknown. Written by the
/// room actor in the transaction of the event; read by it when computing the state before an
/// event and before resolving states.
public enum EventStateStore {
    /// Records the state group of the state after `eventID` in the DAG (for a rejected event:
    /// the state before it, which it did not change).
    public static func setStateGroup(_ db: any SQLTransaction, eventID: String, roomID: String, group: Int64) throws {
        try db.execute("DELETE FROM event_states WHERE event_id = ?", .text(eventID))
        try db.execute("INSERT INTO event_states (event_id, room_id, state_group) VALUES (?, ?, ?)",
                       .text(eventID), .text(roomID), .int(group))
    }

    /// The recorded DAG state groups of `ids` (absent: none recorded).
    public static func stateGroups(_ db: any SQLConnection, ids: [String]) throws -> [String: Int64] {
        var groups: [String: Int64] = [:]
        try chunked(ids) { chunk, placeholders in
            for row in try db.query("SELECT event_id, state_group FROM event_states WHERE event_id IN (\(placeholders))",
                                    chunk.map { SQLValue.text($0) }) {
                groups[try row.text(0)] = try row.int(1)
            }
        }
        return groups
    }

    /// Marks an event rejected (idempotent).
    public static func markRejected(_ db: any SQLTransaction, eventID: String, roomID: String, reason: String) throws {
        try db.execute("DELETE FROM rejected_events WHERE event_id = ?", .text(eventID))
        try db.execute("INSERT INTO rejected_events (event_id, room_id, reason) VALUES (?, ?, ?)",
                       .text(eventID), .text(roomID), .text(String(reason.prefix(500))))
    }

    /// Which of `ids` were rejected.
    public static func rejected(_ db: any SQLConnection, ids: [String]) throws -> Set<String> {
        var found: Set<String> = []
        try chunked(ids) { chunk, placeholders in
            for row in try db.query("SELECT event_id FROM rejected_events WHERE event_id IN (\(placeholders))",
                                    chunk.map { SQLValue.text($0) }) {
                found.insert(try row.text(0))
            }
        }
        return found
    }

    /// Removes an outlier (a negative position above the backfilled history) that is about to
    /// be stored as a timeline event.
    public static func deleteOutlier(_ db: any SQLTransaction, eventID: String) throws {
        try db.execute("DELETE FROM events WHERE event_id = ? AND stream_ordering < 0 AND stream_ordering > ?",
                       .text(eventID), .int(RoomEventStore.backfillCeiling))
    }

    private static func chunked(_ ids: [String], _ body: ([String], String) throws -> Void) throws {
        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(start + 500, ids.count)])
            start += chunk.count
            try body(chunk, Array(repeating: "?", count: chunk.count).joined(separator: ", "))
        }
    }
}

extension Schema {
    /// Issue 17, conflicts: the state after events whose own state is not their stream
    /// position's (`EventStateStore`), and rejected events.
    static let eventStates = Migration(
        version: 90, name: "event_states",
        """
            CREATE TABLE event_states (
                event_id TEXT PRIMARY KEY,
                room_id TEXT NOT NULL,
                state_group \(.bigint) NOT NULL
            );
            CREATE TABLE rejected_events (
                event_id TEXT PRIMARY KEY,
                room_id TEXT NOT NULL,
                reason TEXT NOT NULL
            );
            """)
}
