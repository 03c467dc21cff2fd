import Matrix
import Persistence
import Transport

/// Dehydrated devices (MSC3814, under the unstable prefix Synapse serves it at,
/// `/_matrix/client/unstable/org.matrix.msc3814.v1/`): a device a client creates for its user
/// and leaves on the server — its keys published like any device's, its Olm account stored
/// encrypted as opaque `device_data` — so that to-device messages (room keys) sent while the
/// user has no device online wait for it; a new device of the user fetches the account, reads
/// the messages through `…/dehydrated_device/{deviceId}/events`, and replaces it.
/// Registered by `Keys.register`; the device is an ordinary device row with its keys in
/// `KeyStore`, plus one `dehydrated_devices` row per user.
enum DehydratedDevices {
    static let prefix = "/org.matrix.msc3814.v1/dehydrated_device"

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.get, prefix, versions: ["unstable"], get)
        routes.client(.put, prefix, versions: ["unstable"], put)
        routes.client(.delete, prefix, versions: ["unstable"], delete)
        routes.client(.get, prefix + "/{deviceId}/events", versions: ["unstable"], events)
        // The earlier draft's POST with `next_batch` in the body (Synapse keeps it).
        routes.client(.post, prefix + "/{deviceId}/events", versions: ["unstable"], events)
    }

    /// At most this many messages per `events` answer (Synapse's default; a larger `limit`
    /// is clamped to 1,000).
    static let defaultLimit = 100

    /// `GET …/dehydrated_device`: the user's dehydrated device id and data, else 404.
    static func get(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        guard let (deviceID, data) = try await context.app.database.dehydratedDevices.device(of: requester.userID) else {
            throw MatrixError(.notFound, "No dehydrated device available")
        }
        return .json(["device_id": .string(deviceID), "device_data": try JSON.parse(data)])
    }

    /// `PUT …/dehydrated_device`: `device_id`, `device_data` (an object with an `algorithm`),
    /// `device_keys` (required, the device's own), optional `one_time_keys`, `fallback_keys`
    /// and `initial_device_display_name`. Replaces (deletes) the user's previous dehydrated
    /// device. A device id of another of the user's devices is refused.
    static func put(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser(allowGuests: false)
        try context.rateLimit("key-uploads", app.configuration.rateLimits.keyUploads, user: requester.userID)
        let body = try await context.jsonObject()
        let userID = requester.userID.rawValue
        guard let idText = body["device_id"]?.stringValue else { throw MatrixError(.missingParam, "device_id is required") }
        let deviceID = try DeviceID(parsing: idText).rawValue
        guard let data = body["device_data"], data.objectValue != nil, data["algorithm"]?.stringValue != nil else {
            throw MatrixError(.badJSON, "device_data must be an object with an algorithm")
        }
        var displayName: String?
        if let name = body["initial_device_display_name"], name != .null {
            guard let text = name.stringValue, text.utf8.count <= 100 else {
                throw MatrixError(.invalidParam, "initial_device_display_name must be a string of at most 100 bytes")
            }
            displayName = text
        }
        guard let keys = body["device_keys"], keys.objectValue != nil else {
            throw MatrixError(.badJSON, "Device key(s) not found, these must be provided.")
        }
        guard keys["user_id"]?.stringValue == userID, keys["device_id"]?.stringValue == deviceID else {
            throw MatrixError(.invalidParam, "device_keys.user_id and device_id must be the user's and the dehydrated device's")
        }
        guard keys["algorithms"]?.arrayValue != nil, keys["keys"]?.objectValue != nil else {
            throw MatrixError(.badJSON, "device_keys needs algorithms and keys")
        }
        let oneTimeKeys = try Keys.keyList(body["one_time_keys"], field: "one_time_keys")
        let fallbackKeys = try Keys.keyList(body["fallback_keys"], field: "fallback_keys")

        let previous = try await app.database.dehydratedDevices.device(of: requester.userID)?.0
        if previous != deviceID,
           try await app.database.devices.device(of: requester.userID, id: DeviceID(parsing: deviceID)) != nil {
            throw MatrixError(.invalidParam, "Device id \(deviceID) is in use by another device")
        }
        if try await CrossSigning.isCrossSigningKey(deviceID, of: requester.userID, app.database) {
            throw MatrixError(.invalidParam, "Device id \(deviceID) is one of the user's cross-signing keys")
        }
        if let previous, previous != deviceID {
            _ = try await app.database.dehydratedDevices.remove(of: requester.userID, deviceID: previous)
            try await Devices.delete([previous], of: requester, app: app)
        }
        try await app.database.devices.upsertDevice(DeviceRecord(userID: userID, deviceID: deviceID, displayName: displayName))
        let keyBytes = keys.encoded(), dataBytes = data.encoded()
        do {
            try await app.keys.changingKeys(of: requester.userID, change: .init(devices: [deviceID])) { db in
                _ = try KeyStore.setDeviceKeys(db, userID: userID, deviceID: deviceID, json: keyBytes)
                if let conflict = try KeyStore.addOneTimeKeys(db, userID: userID, deviceID: deviceID, keys: oneTimeKeys) {
                    throw Keys.ConflictingKey(key: conflict)
                }
                for key in fallbackKeys { try KeyStore.setFallbackKey(db, userID: userID, deviceID: deviceID, key: key) }
                try DehydratedDeviceStore.set(db, userID: userID, deviceID: deviceID, data: dataBytes)
                return ((), true)
            }
        } catch let conflict as Keys.ConflictingKey {
            throw MatrixError(.unknown, "One time key \(conflict.key.algorithm):\(conflict.key.keyID) already exists", status: 400)
        }
        app.keys.invalidateCounts(requester.userID, deviceID)
        return .json(["device_id": .string(deviceID)])
    }

    /// `DELETE …/dehydrated_device`: deletes the user's dehydrated device (and its keys).
    static func delete(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        guard let (deviceID, _) = try await app.database.dehydratedDevices.device(of: requester.userID) else {
            throw MatrixError(.notFound, "No dehydrated device available")
        }
        _ = try await app.database.dehydratedDevices.remove(of: requester.userID, deviceID: deviceID)
        try await Devices.delete([deviceID], of: requester, app: app)
        return .json(["device_id": .string(deviceID)])
    }

    /// `GET …/dehydrated_device/{deviceId}/events?from=&limit=` (or the draft's POST with
    /// `next_batch`): the to-device messages of the user's dehydrated device, oldest first.
    /// `from` is a `next_batch` of an earlier answer (`d<position>`): the messages up to it
    /// are deleted, as a sync's token acknowledges them. `next_batch` is always given; an
    /// answer without events means all were read.
    static func events(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        var from: String? = context.query["from"]
        if context.request.method == .post {
            let bytes = try await context.request.body.collect()
            if !bytes.isEmpty {
                let body = try RequestContext.jsonObject(from: bytes)
                if let next = body["next_batch"], next != .null {
                    guard let text = next.stringValue else { throw MatrixError(.badJSON, "next_batch must be a string") }
                    from = text
                }
            }
        }
        let limit = try context.limit(default: defaultLimit, max: 1_000, min: 1)
        guard let (deviceID, _) = try await app.database.dehydratedDevices.device(of: requester.userID) else {
            throw MatrixError(.forbidden, "No dehydrated device exists")
        }
        guard context.parameter("deviceId") == deviceID else {
            throw MatrixError(.forbidden, "You may only fetch messages for your dehydrated device")
        }
        var since: Int64 = 0
        if let from {
            guard from.first == "d", let value = Int64(from.dropFirst()), value >= 0 else {
                throw MatrixError(.invalidParam, "from parameter '\(from)' has an invalid format")
            }
            since = value
        }
        let upTo = app.roomService.toDevice.stream.visiblePosition
        // Never past what this server handed out: a token from the future must not delete
        // messages not yet sent (as sync).
        let acknowledged = min(since, upTo)
        let rows = try await app.database.toDevice.deliver(to: requester.userID, device: deviceID, acknowledged: acknowledged,
                                                           upTo: upTo, limit: limit)
        var events: [JSON] = []
        for (_, bytes) in rows { if let event = try? JSON.parse(bytes) { events.append(event) } }
        // A full page stops at its last message so the rest follows; otherwise everything up
        // to the stream's position was read.
        var next = upTo
        if rows.count == limit, let last = rows.last { next = last.0 }
        return .json(["events": .array(events), "next_batch": .string("d\(next)")])
    }
}
