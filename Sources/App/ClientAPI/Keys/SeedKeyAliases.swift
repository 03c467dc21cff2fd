import Matrix
import Persistence
import Transport

/// The seed's key paths (shared/seeds, `docs/e2ee.md` "The seed's paths"), each mapped onto
/// the operation of the specification that does its job:
///
/// - `/_matrix/key_backup/v1/version[/{version}[/keys[/count]]]`: key-backup versions and
///   keys, the version in the path;
/// - `/_matrix/client/r0/room_keys/{version}[/keys[/{roomId}[/{sessionId}]]]`: the same, with
///   the seed's bodies (`sessions` as a list of objects carrying their `session_id`, or rooms
///   keyed at the top level) and answers (a room's keys under `rooms`, a session's key with
///   its `room_id` and `session_id`, `etag` beside the keys);
/// - `/_matrix/key/v1/*`: device and cross-signing keys (`/keys/upload`, `/keys/query`, ...);
/// - `GET /_matrix/client/r0/rooms/{roomId}/keys/distribution`: the devices a room key of
///   the room is shared with.
enum SeedKeyAliases {
    static func register(_ routes: inout RouteBuilder) {
        let backup = "/_matrix/key_backup/v1"
        routes.get(backup + "/version") { try await KeyBackup.getVersion($0, .seed) }
        routes.post(backup + "/version") { try await KeyBackup.createVersion($0, .seed) }
        routes.get(backup + "/version/{version}") { try await KeyBackup.getVersion($0, .seed) }
        routes.put(backup + "/version/{version}") { try await KeyBackup.updateVersion($0, .seed) }
        routes.delete(backup + "/version/{version}") { try await KeyBackup.deleteVersion($0, .seed) }
        routes.post(backup + "/version/{version}/keys", uploadKeys)
        routes.put(backup + "/version/{version}/keys", uploadKeys)
        routes.get(backup + "/version/{version}/keys", allKeys)
        routes.post(backup + "/version/{version}/keys/count", keyCount)
        routes.get(backup + "/version/{version}/keys/count", keyCount)

        let roomKeys = "/_matrix/client/r0/room_keys/{version}"
        routes.get(roomKeys, allKeys)
        routes.put(roomKeys, uploadKeys)
        routes.post(roomKeys + "/keys", uploadKeys)
        routes.get(roomKeys + "/keys/{roomId}", roomKeysOfRoom)
        routes.get(roomKeys + "/keys/{roomId}/{sessionId}", sessionKey)

        let keys = "/_matrix/key/v1"
        routes.post(keys + "/upload", Keys.upload)
        routes.post(keys + "/query", Keys.query)
        routes.get(keys + "/query", queryByParameters)
        routes.delete(keys + "/delete", deleteDeviceKeys)
        routes.post(keys + "/keys/upload", CrossSigning.uploadKeys)
        routes.post(keys + "/keys/signatures/upload", CrossSigning.uploadSignatures)
        routes.get(keys + "/keys/{userId}", crossSigningKeys)

        routes.client(.get, "/rooms/{roomId}/keys/distribution", distribution)
    }

    // MARK: key backup

    /// The requester and the path's version.
    static func requesterAndVersion(_ context: RequestContext) async throws -> (UserID, Int64) {
        let user = try await context.requireUser(allowGuests: false).userID
        return (user, try KeyBackup.versionNumber(context.parameter("version")))
    }

    /// Backs up keys in the path's version (which must be the current one), from any of the
    /// seed's bodies or the specification's `{"rooms": ...}`: `{"room_id": R, "sessions":
    /// [...]}`, `{R: {"sessions": [...]}}`, with `sessions` a list of objects with their
    /// `session_id` or an object keyed by session id.
    static func uploadKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number) = try await requesterAndVersion(context)
        let body = try await context.jsonObject()
        var keys: [KeyBackupStore.Key] = []
        var rooms: [(String, JSON)] = []
        if let object = body["rooms"]?.objectValue {
            rooms = object.map { ($0.key, $0.value) }
        } else if let room = body["room_id"]?.stringValue {
            rooms = [(room, .object(body))]
        } else {
            rooms = body.filter { $0.key.hasPrefix("!") }.map { ($0.key, $0.value) }
        }
        guard !rooms.isEmpty else { throw MatrixError(.badJSON, "No room keys in the body") }
        for (room, entry) in rooms {
            switch entry["sessions"] {
            case .array(let list)?:
                for item in list {
                    guard let session = item["session_id"]?.stringValue else { throw MatrixError(.badJSON, "Missing session_id") }
                    try KeyBackup.add(room, session, item, to: &keys, lenient: true)
                }
            case .object(let sessions)?:
                for (session, data) in sessions { try KeyBackup.add(room, session, data, to: &keys, lenient: true) }
            default:
                throw MatrixError(.badJSON, "sessions must be a list or an object")
            }
        }
        return .json(KeyBackup.updateAnswer(try await KeyBackup.store(context.app, user, number, keys)))
    }

    /// Every key of the version, with its `etag`.
    static func allKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number) = try await requesterAndVersion(context)
        let keys = try await KeyBackup.keys(context.app, user, number, room: nil, session: nil)
        let version = try await KeyBackup.existingVersion(context.app, user, number)
        return .json(["rooms": .object(KeyBackup.rooms(keys)), "etag": .string(String(version.etag))])
    }

    /// The number of keys in the version, with its `etag`.
    static func keyCount(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number) = try await requesterAndVersion(context)
        let version = try await KeyBackup.existingVersion(context.app, user, number)
        return .json(["count": .int(version.count), "etag": .string(String(version.etag)),
                      "version": .string(String(version.version))])
    }

    /// One room's keys, under `rooms` as the seed shows them (`{"rooms": {}}` when none).
    static func roomKeysOfRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number) = try await requesterAndVersion(context)
        let room = context.parameter("roomId")
        try KeyBackup.identifier(room)
        let keys = try await KeyBackup.keys(context.app, user, number, room: room, session: nil)
        return .json(["rooms": .object(KeyBackup.rooms(keys))])
    }

    /// One session's key with its `room_id` and `session_id`; 404 when it is not backed up.
    static func sessionKey(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number) = try await requesterAndVersion(context)
        let room = context.parameter("roomId"), session = context.parameter("sessionId")
        try KeyBackup.identifier(room)
        try KeyBackup.identifier(session)
        guard let key = try await KeyBackup.keys(context.app, user, number, room: room, session: session).first,
              var object = KeyBackup.object(key).objectValue else {
            throw MatrixError(.notFound, "No room key found")
        }
        object["room_id"] = .string(room)
        object["session_id"] = .string(session)
        return .json(.object(object))
    }

    // MARK: device and cross-signing keys

    /// `GET /_matrix/key/v1/query?user_id=...[&device_id=...]`: `POST /keys/query` for one
    /// user (the requester when no `user_id` is given), optionally one device.
    static func queryByParameters(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let query = context.query
        let user = try UserID(parsing: query["user_id"] ?? requester.userID.rawValue)
        let devices: JSON = query["device_id"].map { [.string($0)] } ?? []
        return .json(.object(try await keys(context.app, of: user, devices: devices, requester: requester.userID)))
    }

    /// `GET /_matrix/key/v1/keys/{userId}`: a user's cross-signing keys (the user-signing
    /// key to its owner only), as `/keys/query` serves them.
    static func crossSigningKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let user = try UserID(parsing: context.parameter("userId"))
        let answer = try await keys(context.app, of: user, devices: [], requester: requester.userID)
        var result: [String: JSON] = ["user_id": .string(user.rawValue)]
        for (field, list) in [("master_key", "master_keys"), ("self_signing_key", "self_signing_keys"),
                              ("user_signing_key", "user_signing_keys")] {
            if let key = answer[list]?[user.rawValue] { result[field] = key }
        }
        return .json(.object(result))
    }

    /// What `POST /keys/query` answers for one user, local or remote.
    static func keys(_ app: MyelinApp, of user: UserID, devices: JSON, requester: UserID) async throws -> [String: JSON] {
        var response: [String: JSON]
        var failures: [String: JSON] = [:]
        if user.serverName.rawValue == app.configuration.serverName {
            let ids = Set(devices.arrayValue?.compactMap(\.stringValue) ?? [])
            let filter: Set<String>? = ids.isEmpty ? nil : ids
            let wanted: [String: Set<String>?] = [user.rawValue: filter]
            response = try await Keys.localKeys(app, wanted: wanted, me: requester.rawValue)
        } else {
            response = ["device_keys": .object([:])]
            failures = try await app.queryRemoteKeys([user.serverName: [user.rawValue: devices]], timeout: nil,
                                                     into: &response, failures: failures)
        }
        response["failures"] = .object(failures)
        return response
    }

    /// `DELETE /_matrix/key/v1/delete`: removes the requesting device's device keys,
    /// one-time keys and fallback keys (the device stays signed in); its user's peers see a
    /// device-list change, as when the keys were uploaded.
    static func deleteDeviceKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        guard let device = requester.deviceID else { throw MatrixError(.unknown, "This access token has no device", status: 400) }
        let user = requester.userID.rawValue
        let keys = context.app.keys
        try await keys.changingKeys(of: requester.userID, change: .init(devices: [device])) { db in
            try KeyStore.deleteDevice(db, userID: user, deviceID: device)
            return ((), true)
        }
        keys.invalidateCounts(requester.userID, device)
        return .json([:])
    }

    // MARK: room key distribution

    /// `GET /rooms/{roomId}/keys/distribution`: for a joined member, the room's encryption
    /// algorithm and the devices of its joined members (local devices, and remote ones whose
    /// lists this server follows): the recipients of a room key a client shares in the room.
    /// The seed's `session_id` and `session_key` are a client's secrets, which never reach a
    /// server: they are not part of the answer.
    static func distribution(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        let (actor, membership) = try await app.roomService.readableState(requester.userID, roomID)
        guard membership?.membership == MembershipState.join else {
            throw MatrixError(.forbidden, "You are not joined to room \(roomID)")
        }
        let state = await actor.currentState ?? [:]
        var members: [String] = []
        for (key, pdu) in state where key.type == EventType.roomMember && pdu.membership == MembershipState.join {
            members.append(key.stateKey)
        }
        members.sort()
        var distribution: [String: JSON] = [:]
        var remote: [String] = []
        for member in members {
            guard let id = try? UserID(parsing: member) else { continue }
            guard id.serverName.rawValue == app.configuration.serverName else { remote.append(member); continue }
            distribution[member] = .array(try await app.database.devices.devices(of: id).map { device($0.deviceID, $0.displayName) })
        }
        for (user, list) in try await app.database.remoteDevices.lists(of: remote) {
            distribution[user] = .array(list.devices.map { device($0.deviceID, $0.displayName) })
        }
        var answer: [String: JSON] = ["room_id": .string(roomID.rawValue), "distribution": .object(distribution)]
        if let encryption = state[StateKey(EventType.roomEncryption, "")]?.content {
            answer["algorithm"] = encryption["algorithm"] ?? .null
            for field in ["rotation_period_ms", "rotation_period_msgs"] {
                if let value = encryption[field]?.intValue { answer[field] = .int(value) }
            }
        }
        return .json(.object(answer))
    }

    static func device(_ id: String, _ name: String?) -> JSON {
        var entry: [String: JSON] = ["device_id": .string(id)]
        if let name { entry["display_name"] = .string(name) }
        return .object(entry)
    }
}
