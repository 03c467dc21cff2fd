import Matrix

/// History fetched from other servers (server-server API, "Backfilling and retrieving missing
/// events"). Positions of the `events` table fall in three ranges:
///
/// - positive: the live timeline, in the room-events stream that sync and the federation
///   outbox read;
/// - `(backfillCeiling, 0)`: outliers (state and auth events known only through another
///   server's answer, soft-failed events), at random positions, never in a timeline;
/// - `backfillCeiling` and below: backfilled history, allocated downwards (each batch below
///   everything backfilled before), so that `/messages` pages from the live timeline straight
///   into it, in order, while no sync token can ever reach it.
extension RoomEventStore {
    /// The highest position of backfilled history; outliers stay above it (`-2^62...-1`).
    public static let backfillCeiling: Int64 = -(Int64(1) << 62) - 1
    /// Backfill never allocates below this (2^61 positions, far from `Int64.min`, so that
    /// `position - 1` never traps).
    public static let backfillFloor: Int64 = backfillCeiling - (Int64(1) << 61)

    /// Whether a position is in a timeline (live or backfilled), not an outlier.
    public static func isTimeline(_ position: Int64) -> Bool {
        position > 0 || position <= backfillCeiling
    }

    /// The room's oldest timeline events (backfilled ones first), oldest first: where a
    /// backwards walk of history continues.
    public static func oldestTimelineEvents(_ db: any SQLConnection, roomID: String, limit: Int) throws -> [EventRow] {
        var rows = try db.query("""
            SELECT \(columns) FROM events WHERE room_id = ? AND stream_ordering <= ?
            ORDER BY stream_ordering ASC LIMIT ?
            """, .text(roomID), .int(backfillCeiling), .int(Int64(limit))).map(eventRow)
        if rows.count < limit {
            rows += try db.query("""
                SELECT \(columns) FROM events WHERE room_id = ? AND stream_ordering > 0
                ORDER BY stream_ordering ASC LIMIT ?
                """, .text(roomID), .int(Int64(limit - rows.count))).map(eventRow)
        }
        return rows
    }

    /// The next `count` backfill positions, lowest first: just below every backfilled event
    /// of every room (positions are global). Call inside the transaction that writes them.
    public static func allocateBackfill(_ db: any SQLConnection, count: Int) throws -> [Int64] {
        let lowest = try db.queryFirst("SELECT MIN(stream_ordering) FROM events WHERE stream_ordering <= ?", .int(backfillCeiling))
            .flatMap { try $0.optionalInt(0) }
        let top = (lowest ?? (backfillCeiling + 1)) - 1
        let n = Int64(max(0, count))
        guard n > 0, top - backfillFloor >= n else {
            throw DatabaseError(.constraintViolation, "backfill positions exhausted")
        }
        return (0..<n).map { top - (n - 1) + $0 }
    }

    /// Writes one backfilled event at `row.streamOrdering`; an outlier of the same id is moved
    /// into the timeline (its position, state group and client form replaced). Returns false
    /// if the event is already in a timeline.
    @discardableResult
    public static func insertBackfilled(_ db: any SQLTransaction, _ row: EventRow) throws -> Bool {
        if let existing = try event(db, eventID: row.eventID) {
            guard !isTimeline(existing.streamOrdering), existing.roomID == row.roomID else { return false }
            try db.execute("UPDATE events SET stream_ordering = ?, state_group = ?, client_json = ? WHERE event_id = ?",
                           .int(row.streamOrdering), .int(row.stateGroup), .blob(row.clientJSON), .text(row.eventID))
            return true
        }
        try insertEvent(db, row)
        return true
    }
}
