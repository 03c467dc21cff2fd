import Matrix
import Persistence
import Transport

/// Server-side key backups (spec: client-server API "Server-side key backups"): backup
/// versions (`/room_keys/version`) and the room keys backed up in them
/// (`/room_keys/keys[/{roomId}[/{sessionId}]]`), stored by `KeyBackupStore`. Keys go only
/// to the current (latest) version; an upload replaces a stored key only when it is better.
/// The seed's aliases (`SeedKeyAliases`) call the operations here with `Dialect.seed`.
enum KeyBackup {
    /// The one algorithm the specification defines (its schema's enum).
    static let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2"
    static let maxKeysPerUpload = 10_000
    static let maxKeyBytes = 65_536
    static let maxIdentifierBytes = 255

    /// How a route reads bodies and shapes answers. `spec`: the specification's, strictly.
    /// `seed`: the same operations with the seed's documented extras (`/_matrix/client/r0`
    /// and `/_matrix/key_backup/v1`: `versions` in the version answer, `version`/`deleted` in
    /// update and delete answers, optional `algorithm`/`auth_data`, key metadata defaults).
    enum Dialect: Sendable { case spec, seed }

    static func register(_ routes: inout RouteBuilder) {
        for (prefix, dialect) in [("v3", Dialect.spec), ("r0", Dialect.seed)] {
            let base = "/_matrix/client/\(prefix)/room_keys"
            routes.add(.post, base + "/version") { try await createVersion($0, dialect) }
            routes.add(.get, base + "/version") { try await getVersion($0, dialect) }
            // As Synapse: DELETE without a version deletes the current one.
            routes.add(.delete, base + "/version") { try await deleteVersion($0, dialect) }
            routes.add(.get, base + "/version/{version}") { try await getVersion($0, dialect) }
            routes.add(.put, base + "/version/{version}") { try await updateVersion($0, dialect) }
            routes.add(.delete, base + "/version/{version}") { try await deleteVersion($0, dialect) }
            for path in ["/keys", "/keys/{roomId}", "/keys/{roomId}/{sessionId}"] {
                routes.add(.get, base + path, getKeys)
                routes.add(.put, base + path, putKeys)
                routes.add(.delete, base + path, deleteKeys)
            }
        }
        SeedKeyAliases.register(&routes)
    }

    // MARK: versions

    /// `POST /room_keys/version`: a new version, which becomes the current one.
    static func createVersion(_ context: RequestContext, _ dialect: Dialect) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let body = try await context.jsonObject()
        let algorithm = try self.algorithm(body["algorithm"], default: dialect == .seed ? Self.algorithm : nil)
        let authData = try self.authData(body["auth_data"], default: dialect == .seed ? "{}" : nil)
        let version = try await context.app.database.keyBackups.createVersion(user: user, algorithm: algorithm, authData: authData)
        return .json(["version": .string(String(version))])
    }

    /// `GET /room_keys/version[/{version}]`: the current or the named version (404 when there
    /// is none, or the name is not one: version ids are integers, as Synapse's).
    static func getVersion(_ context: RequestContext, _ dialect: Dialect) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let named = context.parameter("version")
        let store = context.app.database.keyBackups
        let number = named.isEmpty ? nil : try versionNumber(named)
        guard let version = try await store.version(user: user, number) else {
            throw MatrixError(.notFound, named.isEmpty ? "No current backup version" : "Unknown backup version")
        }
        var answer = info(version)
        if dialect == .seed, named.isEmpty {
            // The seed's list of every live version, beside the current one's fields.
            answer["versions"] = .array(try await store.versions(user: user).map { .object(info($0)) })
        }
        return .json(.object(answer))
    }

    /// `PUT /room_keys/version/{version}`: new `auth_data`; the algorithm cannot change and a
    /// `version` in the body must be the path's.
    static func updateVersion(_ context: RequestContext, _ dialect: Dialect) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let text = context.parameter("version")
        let number = try versionNumber(text)
        let body = try await context.jsonObject()
        if let given = body["version"], given.stringValue != text {
            throw MatrixError(.invalidParam, "Version in body does not match that in the URL")
        }
        let store = context.app.database.keyBackups
        guard let current = try await store.version(user: user, number) else { throw MatrixError(.notFound, "Unknown backup version") }
        let algorithm = try self.algorithm(body["algorithm"], default: dialect == .seed ? current.algorithm : nil, known: false)
        guard algorithm == current.algorithm else { throw MatrixError(.invalidParam, "Algorithm does not match") }
        let authData = try self.authData(body["auth_data"], default: dialect == .seed ? current.authData : nil)
        guard try await store.updateVersion(user: user, number, authData: authData) else {
            throw MatrixError(.notFound, "Unknown backup version")
        }
        return .json(dialect == .seed ? ["version": .string(String(number))] : [:])
    }

    /// `DELETE /room_keys/version[/{version}]`: the version and its keys. Deleting a deleted
    /// version again succeeds (the specification); an unknown one is 404.
    static func deleteVersion(_ context: RequestContext, _ dialect: Dialect) async throws -> HTTPResponse {
        let user = try await context.requireUser(allowGuests: false).userID
        let store = context.app.database.keyBackups
        let named = context.parameter("version")
        let number: Int64
        if named.isEmpty {
            guard let current = try await store.version(user: user, nil) else { throw MatrixError(.notFound, "No current backup version") }
            number = current.version
        } else {
            number = try versionNumber(named)
        }
        guard try await store.deleteVersion(user: user, number) else { throw MatrixError(.notFound, "Unknown backup version") }
        return .json(dialect == .seed ? ["deleted": true, "version": .string(String(number))] : [:])
    }

    /// A version as the specification's `GET /room_keys/version` answers it.
    static func info(_ version: KeyBackupStore.Version) -> [String: JSON] {
        ["version": .string(String(version.version)), "algorithm": .string(version.algorithm),
         "auth_data": (try? JSON.parse(Array(version.authData.utf8))) ?? .object([:]),
         "etag": .string(String(version.etag)), "count": .int(version.count)]
    }

    // MARK: keys

    /// `GET /room_keys/keys...?version=`: all keys (`rooms`), a room's (`sessions`, empty
    /// when it has none, as Synapse) or one key (404 when it is not backed up).
    static func getKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number, room, session) = try await target(context)
        let keys = try await keys(context.app, user, number, room: room, session: session)
        if session != nil {
            guard let key = keys.first else { throw MatrixError(.notFound, "No room key found") }
            return .json(object(key))
        }
        let rooms = self.rooms(keys)
        if let room { return .json(["sessions": rooms[room]?["sessions"] ?? .object([:])]) }
        return .json(["rooms": .object(rooms)])
    }

    /// `PUT /room_keys/keys...?version=`: stores keys in the current version only; answers
    /// the version's `etag` and `count`.
    static func putKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number, room, session) = try await target(context)
        let body = try await context.jsonObject()
        var keys: [KeyBackupStore.Key] = []
        switch (room, session) {
        case (let room?, let session?):
            try add(room, session, .object(body), to: &keys, lenient: false)
        case (let room?, nil):
            for (session, data) in try sessions(body["sessions"]) { try add(room, session, data, to: &keys, lenient: false) }
        default:
            guard let rooms = body["rooms"]?.objectValue else { throw MatrixError(.badJSON, "rooms must be an object") }
            for (room, entry) in rooms {
                for (session, data) in try sessions(entry["sessions"]) { try add(room, session, data, to: &keys, lenient: false) }
            }
        }
        return .json(updateAnswer(try await store(context.app, user, number, keys)))
    }

    /// `DELETE /room_keys/keys...?version=`: answers the version's `etag` and `count`.
    static func deleteKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let (user, number, room, session) = try await target(context)
        _ = try await existingVersion(context.app, user, number)
        let result = try await context.app.database.keyBackups.deleteKeys(user: user, number, room: room, session: session)
        return .json(updateAnswer(result))
    }

    // MARK: operations shared with the seed's aliases

    /// A live version of the user, or 404.
    static func existingVersion(_ app: MyelinApp, _ user: UserID, _ number: Int64) async throws -> KeyBackupStore.Version {
        guard let version = try await app.database.keyBackups.version(user: user, number) else {
            throw MatrixError(.notFound, "Unknown backup version")
        }
        return version
    }

    /// The keys of a live version (404 when it is not one), of one room or one session.
    static func keys(_ app: MyelinApp, _ user: UserID, _ number: Int64, room: String?, session: String?) async throws
        -> [KeyBackupStore.Key] {
        _ = try await existingVersion(app, user, number)
        return try await app.database.keyBackups.keys(user: user, number, room: room, session: session)
    }

    /// Stores keys in the current version: 403 `M_WRONG_ROOM_KEYS_VERSION` (with the
    /// current version) when `number` is an older live one, 404 when it is not a live one.
    static func store(_ app: MyelinApp, _ user: UserID, _ number: Int64, _ keys: [KeyBackupStore.Key]) async throws
        -> (etag: Int64, count: Int64) {
        switch try await app.database.keyBackups.putKeys(user: user, number, keys) {
        case .stored(let etag, let count):
            return (etag, count)
        case .notCurrent(let current):
            throw MatrixError("M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", status: 403,
                              extra: ["current_version": .string(String(current))])
        case .unknownVersion:
            throw MatrixError(.notFound, "Unknown backup version")
        }
    }

    static func updateAnswer(_ result: (etag: Int64, count: Int64)) -> JSON {
        ["etag": .string(String(result.etag)), "count": .int(result.count)]
    }

    /// One stored key as its `KeyBackupData` object.
    static func object(_ key: KeyBackupStore.Key) -> JSON {
        (try? JSON.parse(Array(key.json.utf8))) ?? .object([:])
    }

    /// `{roomId: {"sessions": {sessionId: KeyBackupData}}}`.
    static func rooms(_ keys: [KeyBackupStore.Key]) -> [String: JSON] {
        var rooms: [String: [String: JSON]] = [:]
        for key in keys { rooms[key.roomID, default: [:]][key.sessionID] = object(key) }
        return rooms.mapValues { .object(["sessions": .object($0)]) }
    }

    // MARK: parsing and bounds

    /// The requester, the `version` query parameter and the path's room and session.
    static func target(_ context: RequestContext) async throws -> (UserID, Int64, String?, String?) {
        let user = try await context.requireUser(allowGuests: false).userID
        guard let text = context.query["version"] else { throw MatrixError(.missingParam, "Missing version") }
        let room = context.parameter("roomId"), session = context.parameter("sessionId")
        for part in [room, session] { try identifier(part) }
        return (user, try versionNumber(text), room.isEmpty ? nil : room, session.isEmpty ? nil : session)
    }

    /// A version id: a positive integer, else 404 as an unknown version (Synapse).
    static func versionNumber(_ text: String) throws -> Int64 {
        guard let number = Int64(text), number > 0 else { throw MatrixError(.notFound, "Unknown backup version") }
        return number
    }

    /// A room or session id from a path or a body: at most 255 bytes.
    static func identifier(_ text: String) throws {
        guard text.utf8.count <= maxIdentifierBytes else { throw MatrixError(.invalidParam, "Identifier too long") }
    }

    /// The `algorithm` of a version body (`default` when absent, if any). A new version's
    /// must be the one the specification defines (`known`); clients check it anyway.
    static func algorithm(_ value: JSON?, default fallback: String?, known: Bool = true) throws -> String {
        guard let value else {
            guard let fallback else { throw MatrixError(.badJSON, "Missing algorithm") }
            return fallback
        }
        guard let algorithm = value.stringValue else { throw MatrixError(.badJSON, "algorithm must be a string") }
        if known, algorithm != Self.algorithm { throw MatrixError(.badJSON, "Unknown backup algorithm") }
        return algorithm
    }

    /// The `auth_data` of a version body as stored text (`default` when absent, if any).
    static func authData(_ value: JSON?, default fallback: String?) throws -> String {
        guard let value else {
            guard let fallback else { throw MatrixError(.badJSON, "Missing auth_data") }
            return fallback
        }
        // An object, as the specification's schema says (Synapse stores any value; SyTest's
        // backup tests send strings and fail here: docs/sytest.md).
        guard case .object = value else { throw MatrixError(.badJSON, "auth_data must be an object") }
        let text = value.encodedString
        guard text.utf8.count <= maxKeyBytes else { throw MatrixError(.tooLarge, "auth_data is too large", status: 413) }
        return text
    }

    /// A `sessions` object: `{sessionId: KeyBackupData}`.
    static func sessions(_ value: JSON?) throws -> [String: JSON] {
        guard let sessions = value?.objectValue else { throw MatrixError(.badJSON, "sessions must be an object") }
        return sessions
    }

    /// Appends one checked key, refusing more than `maxKeysPerUpload` in one request.
    static func add(_ room: String, _ session: String, _ data: JSON?, to keys: inout [KeyBackupStore.Key], lenient: Bool) throws {
        guard keys.count < maxKeysPerUpload else { throw MatrixError(.tooLarge, "Too many keys in one request", status: 413) }
        keys.append(try key(room, session, data, lenient: lenient))
    }

    /// One `KeyBackupData` object, checked and bounded. `lenient` (the seed's bodies, whose
    /// examples carry only `session_data`): absent metadata reads as unverified, index 0 and
    /// never forwarded (a key exported at its start), and the stored object is normalised to
    /// the specification's four fields so that every reader gets a complete `KeyBackupData`.
    static func key(_ room: String, _ session: String, _ data: JSON?, lenient: Bool) throws -> KeyBackupStore.Key {
        guard let data, data.objectValue != nil else { throw MatrixError(.badJSON, "Key backup data must be an object") }
        guard !room.isEmpty, !session.isEmpty else { throw MatrixError(.invalidParam, "Empty room or session id") }
        try identifier(room)
        try identifier(session)
        func integer(_ name: String) throws -> Int64 {
            guard let value = data[name] else {
                if lenient { return 0 }
                throw MatrixError(.badJSON, "Missing \(name)")
            }
            guard let number = value.intValue, number >= 0 else { throw MatrixError(.badJSON, "\(name) must be a non-negative integer") }
            return number
        }
        let first = try integer("first_message_index"), forwarded = try integer("forwarded_count")
        let verified: Bool
        switch data["is_verified"] {
        case nil where lenient: verified = false
        case .bool(let value)?: verified = value
        default: throw MatrixError(.badJSON, "is_verified must be a boolean")
        }
        guard let sessionData = data["session_data"], case .object = sessionData else {
            throw MatrixError(.badJSON, "session_data must be an object")
        }
        let stored: JSON = lenient
            ? ["first_message_index": .int(first), "forwarded_count": .int(forwarded), "is_verified": .bool(verified),
               "session_data": sessionData]
            : data
        let text = stored.encodedString
        guard text.utf8.count <= maxKeyBytes else { throw MatrixError(.tooLarge, "Key backup data is too large", status: 413) }
        return KeyBackupStore.Key(roomID: room, sessionID: session, firstMessageIndex: first, forwardedCount: forwarded,
                                  isVerified: verified, json: text)
    }
}
