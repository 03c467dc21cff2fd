import Matrix
import Persistence
import Synchronization

/// Read receipts (the `read_receipt` service): the `receipts` stream and its rows. A
/// receipt takes the next position and is stored under it; sync reads a user's joined
/// rooms' receipts between two positions. Called by the receipt endpoints and by sync.
///
/// Each room's newest receipt position is kept in memory (`latest`, as Synapse's stream
/// change cache of receipts), so that a sync reads the store only for the rooms whose
/// receipts moved since its token: the stream advances with every receipt anywhere, and
/// without it every sync after any receipt read every one of its rooms' receipts.
public final class ReceiptService: Sendable {
    public let stream: StreamTracker
    private let database: Database
    private let latest: Mutex<Latest>

    /// Rooms' newest receipt positions, complete above `knownFrom`: a room absent from
    /// `rooms` had no receipt in `(knownFrom, now]`.
    struct Latest {
        var knownFrom: Int64
        var rooms: [String: Int64] = [:]
    }

    /// Rooms remembered at most; past it the map restarts, complete from the newest position.
    static let maxRooms = 100_000

    public init(database: Database) async throws {
        self.database = database
        stream = try await StreamTracker.load(name: "receipts", from: database,
                                              maxPositionSQL: ReceiptStore.maxPositionSQL)
        latest = Mutex(Latest(knownFrom: stream.visiblePosition))
    }

    /// Of `rooms` (room ids), those that may have receipts in `(after, …]`: every room when
    /// `after` is older than what memory covers.
    public func roomsWithReceipts(_ rooms: [String], after: Int64) -> [String] {
        latest.withLock { latest in
            if after < latest.knownFrom { return rooms }
            return rooms.filter { (latest.rooms[$0] ?? Int64.min) > after }
        }
    }

    /// Records a receipt of `room` at `position`: before the position becomes visible, so a
    /// sync that sees the position also sees the room as moved.
    private func moved(_ room: String, at position: Int64) {
        latest.withLock { latest in
            if latest.rooms.count >= Self.maxRooms {
                latest.knownFrom = latest.rooms.values.max() ?? latest.knownFrom
                latest.rooms.removeAll(keepingCapacity: true)
            }
            latest.rooms[room] = max(latest.rooms[room] ?? Int64.min, position)
        }
    }

    /// Stores `receipt` at the stream's next position; returns that position.
    public func put(_ receipt: ReceiptStore.Receipt) async throws -> Int64 {
        let database = self.database
        return try await stream.withNextPosition { position in
            var stored = receipt
            stored.streamID = position
            let frozen = stored
            // Recorded first: a failed write leaves only a needless read behind.
            moved(receipt.roomID, at: position)
            try await database.receipts.put(frozen)
            return position
        }
    }

    /// Receipts in `rooms` with positions in `(after, upTo]`; the store is read only for the
    /// rooms whose receipts moved after `after`.
    public func receipts(in rooms: [String], after: Int64, upTo: Int64) async throws -> [ReceiptStore.Receipt] {
        let moved = try roomsWithReceipts(rooms, after: after).map { try RoomID(parsing: $0) }
        if moved.isEmpty { return [] }
        return try await database.receipts.receipts(rooms: moved, after: after, upTo: upTo)
    }
}
