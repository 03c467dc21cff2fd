import Matrix
import Persistence
import StorageTestSupport
import Testing

/// `event_push_actions` (migration 111) and the pusher lookups the deliveries use, on SQLite
/// and PostgreSQL.
@Suite("Push action store")
struct PushActionStoreTests {
    /// Events rows for the join (`/notifications` serves their client form).
    func insertEvents(_ database: Database, _ events: [(order: Int64, id: String, room: String)]) async throws {
        try await database.write { db in
            for event in events {
                try db.execute("""
                    INSERT INTO events (stream_ordering, event_id, room_id, type, sender, depth, state_group, json, client_json)
                    VALUES (?, ?, ?, 'm.room.message', '@s:t', 1, 1, ?, ?)
                    """, .int(event.order), .text(event.id), .text(event.room), .blob(Array("{}".utf8)),
                    .blob(Array(#"{"event_id":"\#(event.id)"}"#.utf8)))
            }
        }
    }

    func action(_ user: String, _ room: String, _ id: String, _ order: Int64, highlight: Bool = false,
                ts: Int64 = 1_000) -> PushActionStore.Action {
        PushActionStore.Action(userID: user, roomID: room, eventID: id, streamOrdering: order,
                               actions: highlight ? #"["notify",{"set_tweak":"highlight"}]"# : #"["notify"]"#,
                               highlight: highlight, threadID: order == 3 ? "$root" : nil, ts: ts)
    }

    @Test(arguments: Backend.enabled)
    func recordsPagesCountsAndExpires(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.pushActions
            let bob = try UserID(parsing: "@b:t")
            try await insertEvents(database, [(1, "$1", "!r1:t"), (2, "$2", "!r1:t"), (3, "$3", "!r2:t"), (4, "$4", "!r2:t")])
            try await store.record([action("@b:t", "!r1:t", "$1", 1), action("@b:t", "!r1:t", "$2", 2, highlight: true),
                                    action("@b:t", "!r2:t", "$3", 3), action("@b:t", "!r2:t", "$4", 4, ts: 5_000),
                                    action("@c:t", "!r2:t", "$4", 4)])
            // Recorded twice (a batch evaluated again): nothing doubles.
            try await store.record([action("@b:t", "!r1:t", "$1", 1)])
            let all = try await store.notifications(of: bob, before: nil, limit: 10, onlyHighlight: false)
            #expect(all.map(\.action.eventID) == ["$4", "$3", "$2", "$1"])
            #expect(all.map { String(decoding: $0.clientJSON, as: UTF8.self) }.first == #"{"event_id":"$4"}"#)
            #expect(all.map(\.action.threadID) == [nil, "$root", nil, nil])
            #expect(all.allSatisfy { !$0.read })
            let page = try await store.notifications(of: bob, before: 3, limit: 1, onlyHighlight: false)
            #expect(page.map(\.action.eventID) == ["$2"])
            #expect(try await store.notifications(of: bob, before: nil, limit: 10, onlyHighlight: true).map(\.action.eventID) == ["$2"])
            #expect(try await store.unreadRooms(of: bob) == 2)

            // A read receipt at $2 reads room 1.
            try await database.receipts.put(.init(roomID: "!r1:t", type: "m.read", userID: "@b:t", threadID: "", eventID: "$2",
                                                  ts: 1, streamID: 1))
            #expect(try await store.unreadRooms(of: bob) == 1)
            #expect(try await store.notifications(of: bob, before: nil, limit: 10, onlyHighlight: false).map(\.read)
                    == [false, false, true, true])

            // Retention: the rows recorded before 2,000 ms go.
            #expect(try await store.deleteOlder(than: 2_000) == 4)
            #expect(try await store.notifications(of: bob, before: nil, limit: 10, onlyHighlight: false).map(\.action.eventID) == ["$4"])
        }
    }

    /// Migration 122 re-keys the table by `(user_id, stream_ordering)`: rows recorded before it
    /// are all there after it, and recording one again still records nothing twice.
    @Test(arguments: Backend.enabled)
    func rowsSurviveTheRekeyingMigration(_ backend: Backend) async throws {
        try await withScratch(backend) { (configuration) async throws in
            let before = Schema.migrations.filter { $0.version < 122 }
            let old = try await Database.open(configuration, migrations: before)
            try await insertEvents(old, [(1, "$1", "!r1:t"), (2, "$2", "!r1:t")])
            try await old.write { db in
                for (user, id, order) in [("@b:t", "$1", 1), ("@b:t", "$2", 2), ("@c:t", "$2", 2)] {
                    try db.execute("""
                        INSERT INTO event_push_actions (user_id, room_id, event_id, stream_ordering, actions, highlight, thread_id, ts)
                        VALUES (?, '!r1:t', ?, ?, '["notify"]', ?, NULL, 1000)
                        """, .text(user), .text(id), .int(Int64(order)), .bool(order == 2))
                }
            }
            await old.close()
            let database = try await Database.open(configuration)
            let store = database.pushActions
            let bob = try UserID(parsing: "@b:t")
            try await store.record([action("@b:t", "!r1:t", "$2", 2)])
            let rows = try await store.notifications(of: bob, before: nil, limit: 10, onlyHighlight: false)
            #expect(rows.map(\.action.eventID) == ["$2", "$1"])
            #expect(rows.map(\.action.highlight) == [true, false])
            #expect(try await store.notifications(of: UserID(parsing: "@c:t"), before: nil, limit: 10, onlyHighlight: false)
                .map(\.action.eventID) == ["$2"])
            #expect(try await store.deleteOlder(than: 2_000) == 3)
            await database.close()
        }
    }

    @Test(arguments: Backend.enabled)
    func pushersByDeviceAndAll(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.pushers
            let (alice, bob) = (try UserID(parsing: "@a:t"), try UserID(parsing: "@b:t"))
            try await store.setPusher(user: alice, appID: "app", pushkey: "k1", device: "D1", json: "1", append: false, now: 1)
            try await store.setPusher(user: alice, appID: "app", pushkey: "k2", device: "D2", json: "2", append: false, now: 2)
            let replaced = try await store.setPusher(user: bob, appID: "app", pushkey: "k1", device: "B", json: "3", append: false, now: 3)
            #expect(replaced == ["@a:t"])
            #expect(try await store.stored().map(\.json).sorted() == ["2", "3"])
            #expect(try await store.stored(of: alice).map(\.deviceID) == ["D2"])
            #expect(try await store.deletePushers(of: alice, devices: ["D1", "D9"]) == 0)
            #expect(try await store.deletePushers(of: alice, devices: ["D2"]) == 1)
            #expect(try await store.stored(of: alice).isEmpty)
            #expect(try await store.stored(of: bob).first?.createdTS == 3)
        }
    }
}
