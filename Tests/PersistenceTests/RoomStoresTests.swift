import Matrix
import Testing
@testable import Persistence

/// The room client-API tables on both backends: memberships, transaction ids, relations,
/// full-text search, to-device inboxes, receipts, aliases and the directory.
@Suite("Room client stores on SQLite and PostgreSQL")
struct RoomStoresTests {
    @Test(arguments: Backend.enabled)
    func membershipsTransactionsAliasesReceipts(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { db throws in
                try MembershipStore.setMembership(db, .init(roomID: "!r:t", userID: "@a:t", membership: "invite", eventID: "$1", streamOrdering: 1))
                try MembershipStore.setMembership(db, .init(roomID: "!r:t", userID: "@a:t", membership: "join", eventID: "$2", streamOrdering: 2))
                try MembershipStore.setMembership(db, .init(roomID: "!s:t", userID: "@a:t", membership: "leave", eventID: "$3", streamOrdering: 3))
                try EventTxnStore.insertTxn(db, userID: "@a:t", deviceID: "D", scope: "send/!r:t/m", txnID: "t1", roomID: "!r:t", eventID: "$2")
                try EventTxnStore.insertTxn(db, userID: "@a:t", deviceID: "D", scope: "send/!r:t/m", txnID: "t1", roomID: "!r:t", eventID: "$other")
                // The same id on another path is another transaction.
                try EventTxnStore.insertTxn(db, userID: "@a:t", deviceID: "D", scope: "send/!s:t/m", txnID: "t1", roomID: "!s:t", eventID: "$3")
            }
            let (a, r, s, alias) = (try UserID(parsing: "@a:t"), try RoomID(parsing: "!r:t"), try RoomID(parsing: "!s:t"),
                                    try RoomAlias(parsing: "#a:t"))
            #expect(try await database.directory.createAlias(alias, room: r, creator: a))
            #expect(try await !database.directory.createAlias(alias, room: s, creator: try UserID(parsing: "@b:t")))
            try await database.directory.setVisibility("public", of: r)
            try await database.receipts.put(.init(roomID: "!r:t", type: "m.read", userID: "@a:t", threadID: "", eventID: "$1", ts: 5, streamID: 1))
            try await database.receipts.put(.init(roomID: "!r:t", type: "m.read", userID: "@a:t", threadID: "", eventID: "$2", ts: 6, streamID: 2))
            try await database.read { db throws in
                #expect(try MembershipStore.memberships(db, userID: "@a:t", membership: "join").map(\.roomID) == ["!r:t"])
                #expect(try MembershipStore.memberships(db, userID: "@a:t").count == 2)
                #expect(try EventTxnStore.txnEvent(db, userID: "@a:t", deviceID: "D", scope: "send/!r:t/m", txnID: "t1")?.eventID == "$2")
                #expect(try EventTxnStore.txnEvent(db, userID: "@a:t", deviceID: "D", scope: "send/!s:t/m", txnID: "t1")?.eventID == "$3")
            }
            #expect(try await database.directory.alias(alias)?.roomID == r)
            #expect(try await database.directory.alias(alias)?.creator == a)
            #expect(try await database.directory.publicRooms() == [r])
            let receipts = try await database.receipts.receipts(rooms: [RoomID(parsing: "!r:t")], after: 0, upTo: 10)
            #expect(receipts.map(\.eventID) == ["$2"])
            #expect(try await database.receipts.receipts(rooms: [RoomID(parsing: "!r:t")], after: 2, upTo: 10).isEmpty)
            #expect(try await database.memberships.rooms(of: a, membership: "join").map(\.roomID) == ["!r:t"])
            #expect(try await database.memberships.membership(of: a, in: r)?.eventID == "$2")
            #expect(try await database.memberships.membership(of: a, in: try RoomID(parsing: "!none:t")) == nil)
            #expect(try await database.memberships.members(of: r).map(\.userID) == ["@a:t"])
            #expect(try await database.memberships.peers(of: a) == [a])
            #expect(try await database.memberships.peers(of: [a, try UserID(parsing: "@z:t")]) == [a])
            // Forgetting a joined room changes nothing; a left one goes.
            try await database.memberships.forget(r, by: a)
            try await database.memberships.forget(s, by: a)
            #expect(try await database.memberships.rooms(of: a).count == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func directoryMovesAndRemovesRooms(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, old, new) = (try UserID(parsing: "@a:t"), try RoomID(parsing: "!old:t"), try RoomID(parsing: "!new:t"))
            let (one, two) = (try RoomAlias(parsing: "#one:t"), try RoomAlias(parsing: "#two:t"))
            #expect(try await database.directory.createAlias(one, room: old, creator: a))
            #expect(try await database.directory.createAlias(two, room: old, creator: a))
            try await database.directory.setVisibility("public", of: old)
            #expect(try await database.directory.visibility(of: new) == "private")

            try await database.directory.moveRoom(from: old, to: new)
            #expect(try await database.directory.aliases(of: old).isEmpty)
            #expect(try await database.directory.aliases(of: new) == ["#one:t", "#two:t"])
            #expect(try await database.directory.visibility(of: old) == "private")
            #expect(try await database.directory.publicRooms() == [new])
            // An unlisted room's upgrade lists nothing.
            let newer = try RoomID(parsing: "!newer:t")
            try await database.directory.setVisibility("private", of: new)
            try await database.directory.moveRoom(from: new, to: newer)
            #expect(try await database.directory.publicRooms().isEmpty)
            #expect(try await database.directory.aliases(of: newer).count == 2)

            try await database.directory.setVisibility("public", of: newer)
            try await database.directory.removeRoom(newer)
            #expect(try await database.directory.aliases(of: newer).isEmpty)
            #expect(try await database.directory.publicRooms().isEmpty)
            #expect(try await database.directory.alias(one) == nil)
            #expect(try await !database.directory.deleteAlias(one))
        }
    }

    @Test(arguments: Backend.enabled)
    func unreadEventsFollowReadReceipts(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, r) = (try UserID(parsing: "@a:t"), try RoomID(parsing: "!r:t"))
            try await database.write { db throws in
                try RoomEventStore.insertRoom(db, roomID: "!r:t", roomVersion: "10", createdTS: 1)
                for position in Int64(1)...5 {
                    try RoomEventStore.insertEvent(db, .init(streamOrdering: position, eventID: "$\(position)", roomID: "!r:t",
                                                             type: "m.room.message", stateKey: nil, sender: "@b:t", depth: position,
                                                             stateGroup: 1, json: [], clientJSON: []))
                }
            }
            var unread = try await database.receipts.unread(by: a, in: r, upTo: 5, limit: 10)
            #expect(unread.events.map(\.streamOrdering) == [1, 2, 3, 4, 5])
            #expect(unread.readUpTo.isEmpty)
            try await database.receipts.put(.init(roomID: "!r:t", type: "m.read", userID: "@a:t", threadID: "", eventID: "$2", ts: 1, streamID: 1))
            try await database.receipts.put(.init(roomID: "!r:t", type: "m.read.private", userID: "@a:t", threadID: "$1", eventID: "$4", ts: 1, streamID: 2))
            try await database.receipts.put(.init(roomID: "!r:t", type: "m.read", userID: "@b:t", threadID: "", eventID: "$5", ts: 1, streamID: 3))
            unread = try await database.receipts.unread(by: a, in: r, upTo: 4, limit: 10)
            #expect(unread.events.map(\.streamOrdering) == [3, 4])
            #expect(unread.readUpTo == ["": 2, "$1": 4])
            // The newest `limit`, oldest first.
            unread = try await database.receipts.unread(by: a, in: r, upTo: 5, limit: 2)
            #expect(unread.events.map(\.streamOrdering) == [4, 5])
        }
    }

    @Test(arguments: Backend.enabled)
    func toDeviceSendsOnceAndDeliversUntilAcknowledged(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, b) = (try UserID(parsing: "@a:t"), try UserID(parsing: "@b:t"))
            #expect(try await database.toDevice.send(from: a, device: "D", txnID: "m.x/1", position: 1,
                                                     messages: [(b, "E", Array("m1".utf8)), (b, "F", Array("f1".utf8))]))
            // A retry stores nothing.
            #expect(try await !database.toDevice.send(from: a, device: "D", txnID: "m.x/1", position: 2,
                                                      messages: [(b, "E", Array("again".utf8))]))
            #expect(try await database.toDevice.send(from: a, device: "D", txnID: "m.x/2", position: 3,
                                                     messages: [(b, "E", Array("m3".utf8))]))
            var rows = try await database.toDevice.deliver(to: b, device: "E", acknowledged: 0, upTo: 3, limit: 10)
            #expect(rows.map(\.0) == [1, 3])
            #expect(rows.map(\.1) == [Array("m1".utf8), Array("m3".utf8)])
            rows = try await database.toDevice.deliver(to: b, device: "E", acknowledged: 1, upTo: 3, limit: 10)
            #expect(rows.map(\.0) == [3])
            rows = try await database.toDevice.deliver(to: b, device: "E", acknowledged: 3, upTo: 3, limit: 10)
            #expect(rows.isEmpty)
            #expect(try await database.toDevice.deliver(to: b, device: "F", acknowledged: 0, upTo: 3, limit: 1).map(\.0) == [1])
        }
    }

    @Test(arguments: Backend.enabled)
    func roomEventsTransactionsAndPresenceThroughTheDatabase(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let (a, b, r) = (try UserID(parsing: "@a:t"), try UserID(parsing: "@b:t"), try RoomID(parsing: "!r:t"))
            try await database.write { db throws in
                try RoomEventStore.insertRoom(db, roomID: "!r:t", roomVersion: "10", createdTS: 1)
                let member = RoomEventStore.StateEntry(type: "m.room.member", stateKey: "@a:t", eventID: "$1")
                try RoomEventStore.insertStateGroup(db, .init(id: 1, roomID: "!r:t", prevGroup: nil, deltaDepth: 0, entries: [member]))
                for position in Int64(1)...3 {
                    let json = Array(#"{"origin_server_ts":\#(position * 100)}"#.utf8)
                    try RoomEventStore.insertEvent(db, .init(streamOrdering: position, eventID: "$\(position)", roomID: "!r:t",
                                                             type: "m.room.message", stateKey: nil, sender: "@a:t", depth: position,
                                                             stateGroup: 1, json: json, clientJSON: []))
                }
                try EventTxnStore.insertTxn(db, userID: "@a:t", deviceID: "D", scope: "send/!r:t/m", txnID: "t1", roomID: "!r:t", eventID: "$2")
                try MembershipStore.setMembership(db, .init(roomID: "!r:t", userID: "@a:t", membership: "join", eventID: "$1", streamOrdering: 1))
                try MembershipStore.setMembership(db, .init(roomID: "!r:t", userID: "@b:t", membership: "join", eventID: "$1", streamOrdering: 1))
            }
            #expect(try await database.roomEvents.roomVersion(of: r) == "10")
            #expect(try await database.roomEvents.roomVersion(of: try RoomID(parsing: "!none:t")) == nil)
            #expect(try await database.roomEvents.state(of: r, atOrBefore: 0).isEmpty)
            #expect(try await database.roomEvents.state(of: r, atOrBefore: 2).map(\.eventID) == ["$1"])
            #expect(try await database.roomEvents.events(ids: ["$3", "$9"]).map(\.eventID) == ["$3"])
            #expect(try await database.roomEvents.event("$2")?.streamOrdering == 2)
            #expect(try await database.roomEvents.event(in: r, near: 250, forwards: true)?.eventID == "$3")
            #expect(try await database.roomEvents.event(in: r, near: 250, forwards: false)?.eventID == "$2")
            #expect(try await database.roomEvents.event(in: r, near: 250, forwards: true, ceiling: 2) == nil)

            #expect(try await database.eventTxns.event(ofTransaction: "t1", by: a, device: "D", scope: "send/!r:t/m")?.eventID == "$2")
            #expect(try await database.eventTxns.event(ofTransaction: "t1", by: b, device: "D", scope: "send/!r:t/m") == nil)

            try await database.presence.setPresence(userID: b, .init(state: "online", statusMessage: nil, lastActiveTs: 5), position: 1)
            try await database.presence.setPresence(userID: try UserID(parsing: "@stranger:t"),
                                                    .init(state: "online", statusMessage: nil, lastActiveTs: 5), position: 2)
            #expect(try await database.presence.changes(seenBy: a, after: 0, upTo: 2).map(\.0) == ["@b:t"])
            #expect(try await database.presence.changes(seenBy: a, after: 1, upTo: 2).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func fullTextSearchAndToDevice(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            try await database.write { db throws in
                try SearchStore.insert(db, eventID: "$1", roomID: "!r:t", streamOrdering: 1, key: "content.body", text: "the quick brown fox")
                try SearchStore.insert(db, eventID: "$2", roomID: "!r:t", streamOrdering: 2, key: "content.body", text: "a lazy dog sleeps")
                try SearchStore.insert(db, eventID: "$3", roomID: "!s:t", streamOrdering: 3, key: "content.body", text: "fox in another room")
                try SearchStore.insert(db, eventID: "$4", roomID: "!r:t", streamOrdering: 4, key: "content.name", text: "Fox den")
            }
            try await database.read { db throws in
                let body = try SearchStore.search(db, term: "fox", rooms: [RoomID(parsing: "!r:t")], keys: ["content.body"], byRank: true, limit: 10, offset: 0)
                #expect(body.hits.map(\.eventID) == ["$1"])
                #expect(body.count == 1)
                let any = try SearchStore.search(db, term: "Fox", rooms: [RoomID(parsing: "!r:t"), RoomID(parsing: "!s:t")], keys: ["content.body", "content.name"],
                                                 byRank: false, limit: 2, offset: 0)
                #expect(any.count == 3)
                #expect(any.hits.map(\.eventID) == ["$4", "$3"])
                // Stray query syntax is no error (FTS5 gets words only; websearch_to_tsquery is lenient).
                let stray = try SearchStore.search(db, term: "\"fox (OR", rooms: [RoomID(parsing: "!r:t")], keys: ["content.body"], byRank: true,
                                                   limit: 10, offset: 0)
                #expect(stray.hits.allSatisfy { $0.eventID == "$1" })
            }
            try await database.write { db throws in try SearchStore.delete(db, eventID: "$1") }
            try await database.read { db throws in
                #expect(try SearchStore.search(db, term: "fox", rooms: [RoomID(parsing: "!r:t")], keys: ["content.body"], byRank: true, limit: 10,
                                               offset: 0).count == 0)
            }

            try await database.write { db throws in
                #expect(try ToDeviceStore.claimTxn(db, userID: "@a:t", deviceID: "D", txnID: "x", position: 2))
                #expect(try !ToDeviceStore.claimTxn(db, userID: "@a:t", deviceID: "D", txnID: "x", position: 3))
                try ToDeviceStore.insert(db, position: 1, userID: "@b:t", deviceID: "E", message: Array("m1".utf8))
                try ToDeviceStore.insert(db, position: 2, userID: "@b:t", deviceID: "E", message: Array("m2".utf8))
            }
            try await database.read { db throws in
                #expect(try ToDeviceStore.messages(db, userID: "@b:t", deviceID: "E", upTo: 2, limit: 10).map(\.0) == [1, 2])
            }
            try await database.write { db throws in try ToDeviceStore.acknowledge(db, userID: "@b:t", deviceID: "E", upTo: 1) }
            try await database.read { db throws in
                #expect(try ToDeviceStore.messages(db, userID: "@b:t", deviceID: "E", upTo: 2, limit: 10).map(\.0) == [2])
            }
            // Every message acknowledged: the stream's position survives in the sender's
            // transaction row (a restart must not hand out position 2 again).
            try await database.write { db throws in try ToDeviceStore.acknowledge(db, userID: "@b:t", deviceID: "E", upTo: 2) }
            try await database.read { db throws in
                #expect(try db.queryFirst(ToDeviceStore.maxPositionSQL, [])?.optionalInt(0) == 2)
            }
        }
    }
}
