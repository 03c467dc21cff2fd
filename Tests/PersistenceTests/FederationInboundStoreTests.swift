import Matrix
import Testing
@testable import Persistence

/// Inbound federation tables on both backends: the recorded answer of a `/send`
/// transaction (first answer kept), and invites of local users with their membership row.
@Suite("Federation inbound store on SQLite and PostgreSQL")
struct FederationInboundStoreTests {
    @Test(arguments: Backend.enabled)
    func transactionsAreRecordedOnceAndInvitesStored(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = FederationInboundStore(database: database)
            #expect(try await store.transactionResponse(origin: "b.test", txnID: "t1") == nil)
            try await store.recordTransaction(origin: "b.test", txnID: "t1", response: Array("{\"pdus\":{}}".utf8), now: 1)
            try await store.recordTransaction(origin: "b.test", txnID: "t1", response: Array("{\"other\":1}".utf8), now: 2)
            #expect(try await store.transactionResponse(origin: "b.test", txnID: "t1") == Array("{\"pdus\":{}}".utf8))
            // Another origin's transaction of the same id is another transaction.
            #expect(try await store.transactionResponse(origin: "c.test", txnID: "t1") == nil)

            let invite = FederationInboundStore.Invite(roomID: "!r:b.test", userID: "@u:a.test", eventID: "$e1", roomVersion: "10",
                                                       eventJSON: Array("{}".utf8), strippedStateJSON: Array("[]".utf8))
            try await database.write { db in try FederationInboundStore.storeInvite(db, invite, position: 7) }
            let again = FederationInboundStore.Invite(roomID: "!r:b.test", userID: "@u:a.test", eventID: "$e2", roomVersion: "10",
                                                      eventJSON: Array("{}".utf8), strippedStateJSON: Array("[]".utf8))
            try await database.write { db in try FederationInboundStore.storeInvite(db, again, position: 9) }
            #expect(try await store.invite(roomID: "!r:b.test", userID: "@u:a.test") == again)
            let membership = try await database.read { db in
                try db.queryFirst("SELECT membership, event_id, stream_ordering FROM room_memberships WHERE room_id = ? AND user_id = ?",
                                  .text("!r:b.test"), .text("@u:a.test"))
            }
            #expect(try membership?.text(0) == "invite")
            #expect(try membership?.text(1) == "$e2")
            #expect(try membership?.int(2) == 9)
        }
    }
}
