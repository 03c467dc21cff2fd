import Matrix
import Persistence
import Testing
@testable import Actors

/// The receipt service reads the store only for rooms whose receipts moved after a token, and
/// every receipt still reaches a reader whose token is older than what memory covers.
@Suite struct ReceiptServiceTests {
    static func receipt(_ room: String, _ user: String, _ event: String) -> ReceiptStore.Receipt {
        ReceiptStore.Receipt(roomID: room, type: "m.read", userID: "@\(user):example.org", threadID: "",
                             eventID: event, ts: 1, streamID: 0)
    }

    @Test(arguments: Backend.enabled)
    func onlyRoomsWithNewerReceiptsAreRead(_ backend: Backend) async throws {
        let a = "!a:example.org", b = "!b:example.org", c = "!c:example.org"
        try await withScratchDatabase(backend) { configuration in
            var database = try await Database.open(configuration)
            var service = try await ReceiptService(database: database)
            let start = service.stream.visiblePosition
            let first = try await service.put(Self.receipt(a, "alice", "$1"))
            let second = try await service.put(Self.receipt(b, "bob", "$2"))
            #expect(service.roomsWithReceipts([a, b, c], after: start) == [a, b])
            #expect(service.roomsWithReceipts([a, b, c], after: first) == [b])
            #expect(service.roomsWithReceipts([a, b, c], after: second).isEmpty)
            #expect(try await service.receipts(in: [a, b, c], after: first, upTo: second).map(\.eventID) == ["$2"])
            #expect(try await service.receipts(in: [a, c], after: first, upTo: second).isEmpty)
            #expect(try await service.receipts(in: [a, b, c], after: start, upTo: second).map(\.eventID).sorted() == ["$1", "$2"])
            await database.close()

            // After a restart memory covers only what comes next: older tokens read the store.
            database = try await Database.open(configuration)
            service = try await ReceiptService(database: database)
            #expect(service.roomsWithReceipts([a, b, c], after: start) == [a, b, c])
            #expect(try await service.receipts(in: [a, b, c], after: start, upTo: second).map(\.eventID).sorted() == ["$1", "$2"])
            #expect(service.roomsWithReceipts([a, b, c], after: second).isEmpty)
            let third = try await service.put(Self.receipt(c, "carol", "$3"))
            #expect(service.roomsWithReceipts([a, b, c], after: second) == [c])
            #expect(try await service.receipts(in: [a, b, c], after: second, upTo: third).map(\.eventID) == ["$3"])
            await database.close()
        }
    }
}
