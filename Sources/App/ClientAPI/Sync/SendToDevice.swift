import Actors
import Matrix
import Persistence
import Transport

/// `PUT /sendToDevice/{eventType}/{txnId}` (spec: "Send-to-Device messaging"). Each
/// recipient device gets a row on the to-device stream; `*` addresses every device of the
/// user. Sync delivers a device's messages until a later sync's `since` acknowledges them,
/// so a lost response loses nothing. Retried transactions are accepted and not resent.
enum SendToDevice {
    static let maxMessagesPerSync = 100

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.put, "/sendToDevice/{eventType}/{txnId}", sendToDevice)
    }

    /// `PUT /sendToDevice/{eventType}/{txnId}` (spec: "Send-to-Device messaging").
    static func sendToDevice(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        try context.rateLimit("to-device", context.app.configuration.rateLimits.toDevice, user: requester.userID)
        let type = try RoomEvents.eventType(context.parameter("eventType"))
        let body = try await context.jsonObject()
        guard let messages = body["messages"]?.objectValue else { throw MatrixError(.badJSON, "Missing messages") }
        let app = context.app
        var rows: [ToDeviceService.Message] = []
        var remote: [ServerName: [String: JSON]] = [:]
        for (target, byDevice) in messages {
            let user = try UserID(parsing: target)
            guard let byDevice = byDevice.objectValue else { throw MatrixError(.badJSON, "messages.\(target) must be an object") }
            guard user.serverName.rawValue == app.configuration.serverName else {
                // Sent as m.direct_to_device to the user's server (persisted, see OutboundEDUs).
                remote[user.serverName, default: [:]][target] = .object(byDevice)
                continue
            }
            for (device, content) in byDevice {
                guard content.objectValue != nil else { throw MatrixError(.badJSON, "message content must be an object") }
                let event: JSON = ["type": .string(type), "sender": .string(requester.userID.rawValue), "content": content]
                let targets = device == "*" ? try await app.database.devices.devices(of: user).map(\.deviceID) : [device]
                for target in targets { rows.append(ToDeviceService.Message(user: user, device: target, bytes: event.encoded())) }
            }
        }
        let senderDevice = requester.deviceID ?? ""
        // Scoped to the path's event type (the same id for another type is another send).
        let txn = type + "/" + (try RoomEvents.transactionID(context.parameter("txnId")))
        try await app.sendToDeviceEDUs(from: requester.userID, device: senderDevice, txnID: txn, type: type, messages: remote)
        let position = try await app.roomService.toDevice.send(rows, from: requester.userID, device: senderDevice, txnID: txn)
        if let position {
            app.roomService.fanout.notify(Set(rows.map(\.user)), of: StreamChange(.toDevice, position))
        }
        return .json([:])
    }
}
