import Matrix
import Testing
@testable import Persistence

/// Backfilled history in the events table on both backends: positions below the outliers,
/// allocated downwards; an outlier moved into the timeline; history reads that skip outliers.
@Suite("Backfilled history in the events table on SQLite and PostgreSQL")
struct BackfillStoreTests {
    static func row(_ position: Int64, _ id: String, room: String = "!r:t", group: Int64 = 0) -> RoomEventStore.EventRow {
        RoomEventStore.EventRow(streamOrdering: position, eventID: id, roomID: room, type: "m.room.message", stateKey: nil,
                                sender: "@a:t", depth: 1, stateGroup: group, json: Array("{}".utf8), clientJSON: Array("{\"id\":\"\(id)\"}".utf8))
    }

    @Test(arguments: Backend.enabled)
    func positionsOutliersAndReads(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { db throws in
                for (position, id) in [(Int64(1), "$live1"), (2, "$live2"), (-5, "$outlier"), (-(Int64(1) << 62), "$lowest-outlier")] {
                    try RoomEventStore.insertEvent(db, Self.row(position, id))
                }
                // Nothing backfilled yet: the first batch ends just below the ceiling.
                let first = try RoomEventStore.allocateBackfill(db, count: 2)
                #expect(first == [RoomEventStore.backfillCeiling - 1, RoomEventStore.backfillCeiling])
                #expect(try RoomEventStore.insertBackfilled(db, Self.row(first[1], "$old2", group: 7)))
                // An outlier of the same id moves into the timeline, keeping its id.
                #expect(try RoomEventStore.insertBackfilled(db, Self.row(first[0], "$outlier", group: 7)))
                // Already in a timeline: not written again.
                #expect(try !RoomEventStore.insertBackfilled(db, Self.row(first[0] - 1, "$live1")))
                // The next batch goes below everything backfilled, whatever the room.
                let second = try RoomEventStore.allocateBackfill(db, count: 1)
                #expect(second == [RoomEventStore.backfillCeiling - 2])
                #expect(try RoomEventStore.insertBackfilled(db, Self.row(second[0], "$older", room: "!other:t")))
            }
            try await database.read { db throws in
                let backwards = try RoomEventStore.events(db, roomID: "!r:t", after: RoomEventStore.backfillFloor, upTo: .max,
                                                           backwards: true, limit: 10).map(\.eventID)
                #expect(backwards == ["$live2", "$live1", "$old2", "$outlier"])
                let forwards = try RoomEventStore.events(db, roomID: "!r:t", after: RoomEventStore.backfillFloor, upTo: .max,
                                                          backwards: false, limit: 3).map(\.eventID)
                #expect(forwards == ["$outlier", "$old2", "$live1"])
                // Live reads are as before: positive positions only.
                #expect(try RoomEventStore.events(db, roomID: "!r:t", after: 0, upTo: .max, backwards: true, limit: 10).count == 2)
                #expect(try RoomEventStore.event(db, eventID: "$outlier")?.stateGroup == 7)
                #expect(try RoomEventStore.oldestTimelineEvents(db, roomID: "!r:t", limit: 3).map(\.eventID) == ["$outlier", "$old2", "$live1"])
                #expect(try RoomEventStore.latestEvents(db, roomID: "!r:t", limit: 10).map(\.eventID) == ["$live1", "$live2"])
            }
        }
    }
}
