import Matrix
import Persistence
import Transport

/// Server-side key backups (spec: client-server API "Server-side key backups"): backup
/// versions (`/room_keys/version`) and the room keys backed up in them
/// (`/room_keys/keys[/{roomId}[/{sessionId}]]`), stored by `KeyBackupStore`. Keys go only
/// to the current (latest) version; an upload replaces a stored key only when it is better.
enum KeyBackup {
    static let maxKeysPerUpload = 10_000
    static let maxKeyBytes = 65_536

    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/room_keys/version", createVersion)
        routes.client(.get, "/room_keys/version", getVersion)
        routes.client(.get, "/room_keys/version/{version}", getVersion)
        routes.client(.put, "/room_keys/version/{version}", updateVersion)
        routes.client(.delete, "/room_keys/version/{version}", deleteVersion)
        for path in ["/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"] {
            routes.client(.get, path, getKeys)
            routes.client(.put, path, putKeys)
            routes.client(.delete, path, deleteKeys)
        }
    }

    // MARK: versions

    /// `POST /room_keys/version`: a new version, which becomes the current one.
    static func createVersion(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let (algorithm, authData) = try versionBody(try await context.jsonObject())
        let version = try await context.app.database.keyBackups.createVersion(user: user, algorithm: algorithm, authData: authData)
        return .json(["version": .string(String(version))])
    }

    /// `GET /room_keys/version[/{version}]`: the current or the named version.
    static func getVersion(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let named = context.parameter("version")
        let number = named.isEmpty ? nil : try versionNumber(named)
        guard let version = try await context.app.database.keyBackups.version(user: user, number) else {
            throw MatrixError(.notFound, named.isEmpty ? "No current backup version" : "Unknown backup version")
        }
        return .json(["version": .string(String(version.version)), "algorithm": .string(version.algorithm),
                      "auth_data": (try? JSON.parse(Array(version.authData.utf8))) ?? .null,
                      "etag": .string(String(version.etag)), "count": .int(version.count)])
    }

    /// `PUT /room_keys/version/{version}`: new `auth_data` (the algorithm cannot change).
    static func updateVersion(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let number = try versionNumber(context.parameter("version"))
        let body = try await context.jsonObject()
        let (algorithm, authData) = try versionBody(body)
        if let given = body["version"], given.stringValue != String(number) {
            throw MatrixError(.invalidParam, "Version in body does not match the path")
        }
        let store = context.app.database.keyBackups
        guard let current = try await store.version(user: user, number) else { throw MatrixError(.notFound, "Unknown backup version") }
        guard current.algorithm == algorithm else { throw MatrixError(.invalidParam, "Algorithm does not match") }
        _ = try await store.updateVersion(user: user, number, authData: authData)
        return .json([:])
    }

    /// `DELETE /room_keys/version/{version}`: the version and its keys.
    static func deleteVersion(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let number = try versionNumber(context.parameter("version"))
        guard try await context.app.database.keyBackups.deleteVersion(user: user, number) else {
            throw MatrixError(.notFound, "Unknown backup version")
        }
        return .json([:])
    }

    // MARK: keys

    /// `GET /room_keys/keys...?version=`: all keys, a room's (`sessions`) or one key.
    static func getKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, version, room, session) = try await target(context)
        let keys = try await context.app.database.keyBackups.keys(user: user, version.version, room: room, session: session)
        func object(_ key: KeyBackupStore.Key) -> JSON { (try? JSON.parse(Array(key.json.utf8))) ?? .object([:]) }
        if session != nil {
            guard let key = keys.first else { throw MatrixError(.notFound, "No room key found") }
            return .json(object(key))
        }
        var rooms: [String: [String: JSON]] = [:]
        for key in keys { rooms[key.roomID, default: [:]][key.sessionID] = object(key) }
        if let room { return .json(["sessions": .object(rooms[room] ?? [:])]) }
        return .json(["rooms": .object(rooms.mapValues { .object(["sessions": .object($0)]) })])
    }

    /// `PUT /room_keys/keys...?version=`: stores keys in the current version only.
    static func putKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, version, room, session) = try await target(context, current: true)
        let body = try await context.jsonObject()
        var keys: [KeyBackupStore.Key] = []
        func add(_ room: String, _ session: String, _ data: JSON?) throws {
            guard keys.count < maxKeysPerUpload else { throw MatrixError(.tooLarge, "Too many keys", status: 413) }
            keys.append(try key(room, session, data))
        }
        switch (room, session) {
        case (let room?, let session?):
            try add(room, session, .object(body))
        case (let room?, nil):
            for (session, data) in body["sessions"]?.objectValue ?? [:] { try add(room, session, data) }
        default:
            for (room, entry) in body["rooms"]?.objectValue ?? [:] {
                for (session, data) in entry["sessions"]?.objectValue ?? [:] { try add(room, session, data) }
            }
        }
        let result = try await context.app.database.keyBackups.putKeys(user: user, version.version, keys)
        return .json(["etag": .string(String(result.etag)), "count": .int(result.count)])
    }

    /// `DELETE /room_keys/keys...?version=`.
    static func deleteKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, version, room, session) = try await target(context)
        let result = try await context.app.database.keyBackups.deleteKeys(user: user, version.version, room: room, session: session)
        return .json(["etag": .string(String(result.etag)), "count": .int(result.count)])
    }

    // MARK: helpers

    /// The requester, the `version` query parameter's version (with `current`: it must be the
    /// latest, else 403 `M_WRONG_ROOM_KEYS_VERSION`), and the path's room and session.
    static func target(_ context: RequestContext, current: Bool = false) async throws
        -> (UserID, KeyBackupStore.Version, String?, String?) {
        let user = try await context.requireUser(allowGuests: false).userID
        guard let text = context.query["version"] else { throw MatrixError(.missingParam, "Missing version") }
        let store = context.app.database.keyBackups
        guard let number = Int64(text), let version = try await store.version(user: user, number) else {
            throw MatrixError(.notFound, "Unknown backup version")
        }
        if current, let latest = try await store.version(user: user, nil), latest.version != version.version {
            throw MatrixError("M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", status: 403,
                              extra: ["current_version": .string(String(latest.version))])
        }
        let room = context.parameter("roomId"), session = context.parameter("sessionId")
        for part in [room, session] where part.utf8.count > 255 { throw MatrixError(.invalidParam, "Identifier too long") }
        return (user, version, room.isEmpty ? nil : room, session.isEmpty ? nil : session)
    }

    static func versionNumber(_ text: String) throws -> Int64 {
        guard let number = Int64(text), number > 0 else { throw MatrixError(.notFound, "Unknown backup version") }
        return number
    }

    static func versionBody(_ body: [String: JSON]) throws -> (String, String) {
        guard let algorithm = body["algorithm"]?.stringValue else { throw MatrixError(.badJSON, "Missing algorithm") }
        // The one algorithm the specification defines (its schema's enum); clients check it anyway.
        guard algorithm == "m.megolm_backup.v1.curve25519-aes-sha2" else {
            throw MatrixError(.badJSON, "Unknown backup algorithm")
        }
        // An object, as the specification's schema says (Synapse stores any value; SyTest's
        // backup tests send strings and fail here: docs/sytest.md).
        guard let authData = body["auth_data"], case .object = authData else {
            throw MatrixError(.badJSON, "auth_data must be an object")
        }
        let text = authData.encodedString
        guard text.utf8.count <= maxKeyBytes else { throw MatrixError(.tooLarge, "auth_data is too large", status: 413) }
        return (algorithm, text)
    }

    /// One `KeyBackupData` object, checked and bounded.
    static func key(_ room: String, _ session: String, _ data: JSON?) throws -> KeyBackupStore.Key {
        guard let data, data.objectValue != nil,
              let first = data["first_message_index"]?.intValue, let forwarded = data["forwarded_count"]?.intValue,
              let verified = data["is_verified"]?.boolValue, data["session_data"] != nil else {
            throw MatrixError(.badJSON, "Invalid key backup data")
        }
        let text = data.encodedString
        guard room.utf8.count <= 255, session.utf8.count <= 255, text.utf8.count <= maxKeyBytes else {
            throw MatrixError(.tooLarge, "Key backup data is too large", status: 413)
        }
        return KeyBackupStore.Key(roomID: room, sessionID: session, firstMessageIndex: first, forwardedCount: forwarded,
                                  isVerified: verified, json: text)
    }
}
