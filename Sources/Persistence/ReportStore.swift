import Matrix

/// Reports of events, rooms and users to the server's administrators (spec: "Reporting
/// content"; schema: `event_reports` in `Schema.roomsClient`). Obtained from
/// `Database.reports`; called by the reporting handlers.
public struct ReportStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Records a report by `reporter` of an event, a room (`event` and `target` nil) or a
    /// user (`target`), received at `ts`.
    public func report(room: RoomID?, event: EventID?, target: UserID?, reporter: UserID, reason: String?,
                       score: Int64?, ts: Int64) async throws {
        let (room, event, target, reporter) = (room?.rawValue ?? "", event?.rawValue, target?.rawValue, reporter.rawValue)
        try await database.write { db in
            try db.execute("""
                INSERT INTO event_reports (room_id, event_id, target_user_id, user_id, reason, score, received_ts)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, .text(room), .text(event), .text(target), .text(reporter), .text(reason), .int(score), .int(ts))
        }
    }
}

extension Database {
    /// Reports of content to the administrators.
    public var reports: ReportStore { ReportStore(database: self) }
}
