import Matrix
import Persistence

/// Send-to-device messages (the `to_device` service): the stream (one position per send,
/// shared by its recipients) and the idempotent write of one send. Called by
/// `PUT /sendToDevice` and by sync.
public final class ToDeviceService: Sendable {
    public let stream: StreamTracker
    private let database: Database

    public init(database: Database) async throws {
        self.database = database
        stream = try await StreamTracker.load(name: "to_device", from: database, maxPositionSQL: ToDeviceStore.maxPositionSQL)
    }

    /// One message for one device.
    public struct Message: Sendable {
        public var user: UserID
        public var device: String
        public var bytes: [UInt8]
        public init(user: UserID, device: String, bytes: [UInt8]) { self.user = user; self.device = device; self.bytes = bytes }
    }

    /// Stores the messages of one send under the next position; nil when the sender's
    /// transaction `txnID` was already sent (nothing stored).
    public func send(_ messages: [Message], from sender: UserID, device senderDevice: String, txnID: String) async throws -> Int64? {
        let database = self.database
        let rows = messages.map { (user: $0.user, device: $0.device, message: $0.bytes) }
        return try await stream.withNextPosition { position -> Int64? in
            try await database.toDevice.send(from: sender, device: senderDevice, txnID: txnID, position: position,
                                             messages: rows) ? position : nil
        }
    }
}
