import Matrix
import Persistence

/// Read receipts (the `read_receipt` service): the `receipts` stream and its rows. A
/// receipt takes the next position and is stored under it; sync reads a user's joined
/// rooms' receipts between two positions. Called by the receipt endpoints and by sync.
public final class ReceiptService: Sendable {
    public let stream: StreamTracker
    private let database: Database

    public init(database: Database) async throws {
        self.database = database
        stream = try await StreamTracker.load(name: "receipts", from: database,
                                              maxPositionSQL: ReceiptStore.maxPositionSQL)
    }

    /// Stores `receipt` at the stream's next position; returns that position.
    public func put(_ receipt: ReceiptStore.Receipt) async throws -> Int64 {
        let database = self.database
        return try await stream.withNextPosition { position in
            var stored = receipt
            stored.streamID = position
            let frozen = stored
            try await database.receipts.put(frozen)
            return position
        }
    }

    /// Receipts in `rooms` with positions in `(after, upTo]`.
    public func receipts(in rooms: [RoomID], after: Int64, upTo: Int64) async throws -> [ReceiptStore.Receipt] {
        try await database.receipts.receipts(rooms: rooms, after: after, upTo: upTo)
    }
}
