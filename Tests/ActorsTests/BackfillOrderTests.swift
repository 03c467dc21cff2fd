import Matrix
import Testing
@testable import Actors

/// The order backfilled events are placed in (oldest lowest): every prev event first, then by
/// depth, the origin's timestamp and id among events ready at once.
struct BackfillOrderTests {
    static func event(_ body: String, prevs: [PDU], depth: Int64, ts: Int64) throws -> PDU {
        try PDU(json: ["type": "m.room.message", "room_id": "!r:a.test", "sender": "@alice:a.test",
                       "content": ["body": .string(body)], "depth": .int(depth), "origin_server_ts": .int(ts),
                       "prev_events": .array(prevs.map { .string($0.eventID.rawValue) }), "auth_events": []],
                roomVersion: try RoomVersion.named("10"))
    }

    @Test func prevEventsFirstThenDepthThenTimestamp() throws {
        let a = try Self.event("a", prevs: [], depth: 1, ts: 9)
        let b = try Self.event("b", prevs: [a], depth: 2, ts: 5)
        let c = try Self.event("c", prevs: [a], depth: 2, ts: 3)
        let d = try Self.event("d", prevs: [b, c], depth: 3, ts: 1)
        // A depth that lies (lower than its prev event's): the DAG decides.
        let e = try Self.event("e", prevs: [d], depth: 0, ts: 0)
        let order = RoomActor.topologicalOrder([e, d, b, c, a, d]).map { $0.content["body"]?.stringValue ?? "" }
        #expect(order == ["a", "c", "b", "d", "e"])
    }
}
