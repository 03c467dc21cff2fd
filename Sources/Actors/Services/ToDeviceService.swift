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
        public var user: String
        public var device: String
        public var bytes: [UInt8]
        public init(user: String, device: String, bytes: [UInt8]) { self.user = user; self.device = device; self.bytes = bytes }
    }

    /// Stores the messages of one send under the next position; nil when the sender's
    /// transaction `txnID` was already sent (nothing stored).
    public func send(_ messages: [Message], from sender: String, device senderDevice: String, txnID: String) async throws -> Int64? {
        let database = self.database
        return try await stream.withNextPosition { position -> Int64? in
            try await database.write { db -> Int64? in
                guard try ToDeviceStore.claimTxn(db, userID: sender, deviceID: senderDevice, txnID: txnID,
                                                 position: position) else { return nil }
                for message in messages {
                    try ToDeviceStore.insert(db, position: position, userID: message.user, deviceID: message.device,
                                             message: message.bytes)
                }
                return position
            }
        }
    }
}
