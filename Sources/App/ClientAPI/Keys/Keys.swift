import Actors
import Matrix
import Persistence
import Transport

/// The key-management API of end-to-end encryption (spec: client-server API, "End-to-End
/// Encryption", "Key management API" and "Cross-signing"): `POST /keys/upload`, `/keys/query`,
/// `/keys/claim`, `GET /keys/changes`, and the cross-signing uploads (`CrossSigning`). Remote
/// users' keys are asked of their servers (or the device-list cache). Keys are stored as
/// uploaded; signatures made with cross-signing keys are stored apart and merged in when keys
/// are served.
enum Keys {
    static func register(_ routes: inout RouteBuilder) {
        routes.client(.post, "/keys/upload", upload)
        routes.client(.post, "/keys/query", query)
        routes.client(.post, "/keys/claim", claim)
        routes.client(.get, "/keys/changes", changes)
        routes.client(.post, "/keys/device_signing/upload", versions: ["v3", "unstable"], CrossSigning.uploadKeys)
        routes.client(.post, "/keys/signatures/upload", versions: ["v3", "unstable"], CrossSigning.uploadSignatures)
        DehydratedDevices.register(&routes)
    }

    // MARK: upload

    /// `POST /keys/upload`: the requester's device keys, one-time keys and fallback keys.
    static func upload(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        guard let device = requester.deviceID else { throw MatrixError(.unknown, "This access token has no device", status: 400) }
        let body = try await context.jsonObject()
        let userID = requester.userID.rawValue

        var deviceKeys: [UInt8]?
        if let value = body["device_keys"], value != .null {
            guard let object = value.objectValue else { throw MatrixError(.badJSON, "device_keys must be an object") }
            guard object["user_id"]?.stringValue == userID, object["device_id"]?.stringValue == device else {
                throw MatrixError(.invalidParam, "device_keys.user_id and device_id must be those of the access token's device")
            }
            guard object["algorithms"]?.arrayValue != nil, object["keys"]?.objectValue != nil else {
                throw MatrixError(.badJSON, "device_keys needs algorithms and keys")
            }
            deviceKeys = value.encoded()
        }
        let newDeviceKeys = deviceKeys
        let oneTimeKeys = try keyList(body["one_time_keys"], field: "one_time_keys")
        let fallbackKeys = try keyList(body["fallback_keys"] ?? body["org.matrix.msc2732.fallback_keys"], field: "fallback_keys")

        let keys = app.keys
        do {
            try await keys.changingKeys(of: requester.userID, change: .init(devices: [device])) { db in
                var changed = false
                if let newDeviceKeys {
                    changed = try KeyStore.setDeviceKeys(db, userID: userID, deviceID: device, json: newDeviceKeys)
                }
                if let conflict = try KeyStore.addOneTimeKeys(db, userID: userID, deviceID: device, keys: oneTimeKeys) {
                    throw ConflictingKey(key: conflict)
                }
                for key in fallbackKeys { try KeyStore.setFallbackKey(db, userID: userID, deviceID: device, key: key) }
                return ((), changed)
            }
        } catch let conflict as ConflictingKey {
            // As Synapse: a key id is never reused with other key material.
            throw MatrixError(.unknown, "One time key \(conflict.key.algorithm):\(conflict.key.keyID) already exists", status: 400)
        }
        keys.invalidateCounts(requester.userID, device)
        let counts = try await keys.counts(of: requester.userID, device: device)
        return .json(["one_time_key_counts": .object(counts.oneTimeKeys.mapValues { .int(Int64($0)) })])
    }

    struct ConflictingKey: Error { var key: KeyStore.UploadedKey }

    /// `{"algorithm:key_id": key}` as stored keys; a key is an object (signed) or, for old
    /// unsigned curve25519 keys, a string.
    static func keyList(_ value: JSON?, field: String) throws -> [KeyStore.UploadedKey] {
        guard let value, value != .null else { return [] }
        guard let object = value.objectValue else { throw MatrixError(.badJSON, "\(field) must be an object") }
        return try object.keys.sorted().map { name in
            guard let colon = name.firstIndex(of: ":"), colon != name.startIndex, name.index(after: colon) != name.endIndex else {
                throw MatrixError(.badJSON, "\(field): key name '\(name)' must be algorithm:key_id")
            }
            let key = object[name]!
            guard key.objectValue != nil || key.stringValue != nil else {
                throw MatrixError(.badJSON, "\(field).\(name) must be an object or a string")
            }
            return KeyStore.UploadedKey(algorithm: String(name[..<colon]), keyID: String(name[name.index(after: colon)...]),
                                        json: key.encoded())
        }
    }

    // MARK: query

    /// `POST /keys/query`: the device and cross-signing keys of users.
    static func query(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let body = try await context.jsonObject()
        guard let requested = body["device_keys"]?.objectValue else { throw MatrixError(.badJSON, "Missing device_keys") }
        var wanted: [String: Set<String>?] = [:]
        var failures: [String: JSON] = [:]
        var remote: [ServerName: [String: JSON]] = [:]
        for (user, devices) in requested {
            guard let list = devices.arrayValue else { throw MatrixError(.badJSON, "device_keys.\(user) must be a list") }
            guard try localUser(user, app: app, failures: &failures) != nil else {
                if let id = try? UserID(parsing: user) { remote[id.serverName, default: [:]][user] = devices }
                continue
            }
            let ids = list.compactMap(\.stringValue)
            wanted[user] = ids.isEmpty ? .some(nil) : Set(ids)
        }
        var response = try await localKeys(app, wanted: wanted, me: requester.userID.rawValue)
        failures = try await app.queryRemoteKeys(remote, timeout: body["timeout"]?.intValue,
                                                 into: &response, failures: failures)
        if !remote.isEmpty { try await mergeOwnSignatures(app.database, me: requester.userID.rawValue, into: &response) }
        response["failures"] = .object(failures)
        return .json(.object(response))
    }

    /// The keys of local users as `/keys/query` answers them (`failures` left to the caller):
    /// `me` is the requesting user (nil for a remote server, which never gets
    /// `user_signing_keys`).
    static func localKeys(_ app: MyelinApp, wanted: [String: Set<String>?], me: String?) async throws -> [String: JSON] {
        try await localKeys(app.database, wanted: wanted, me: me)
    }

    static func localKeys(_ database: Database, wanted: [String: Set<String>?], me: String?) async throws -> [String: JSON] {
        let users = Array(wanted.keys)
        let (deviceRows, crossRows, signatures) = try await database.keys.keys(of: users)
        var devices: [DeviceRecord] = []
        for user in Set(deviceRows.compactMap { try? UserID(parsing: $0.0) }) {
            devices += try await database.devices.devices(of: user)
        }
        // Signatures visible to the requester: a user's own, and the requester's.
        var extraSignatures: [String: [String: [(String, String, String)]]] = [:]  // user -> key -> (signer, key id, sig)
        for s in signatures where s.signerUserID == s.targetUserID || s.signerUserID == me {
            extraSignatures[s.targetUserID, default: [:]][s.targetKey, default: []].append((s.signerUserID, s.signerKeyID, s.signature))
        }
        var names: [String: String] = [:]
        for device in devices { names[device.userID + "|" + device.deviceID] = device.displayName }

        var deviceKeys: [String: JSON] = [:]
        for user in users { deviceKeys[user] = .object([:]) }
        for (user, device, bytes) in deviceRows {
            if let filter = wanted[user], let filter, !filter.contains(device) { continue }
            guard var key = try? JSON.parse(bytes), case .object = key else { continue }
            key = merging(extraSignatures[user]?[device], into: key)
            var unsigned = key["unsigned"]?.objectValue ?? [:]
            if let name = names[user + "|" + device] { unsigned["device_display_name"] = .string(name) }
            key = set(key, "unsigned", .object(unsigned))
            deviceKeys[user] = set(deviceKeys[user]!, device, key)
        }
        var master: [String: JSON] = [:], selfSigning: [String: JSON] = [:], userSigning: [String: JSON] = [:]
        for (user, type, bytes) in crossRows {
            guard var key = try? JSON.parse(bytes) else { continue }
            if let publicKey = publicKey(of: key) { key = merging(extraSignatures[user]?[publicKey], into: key) }
            switch type {
            case "master": master[user] = key
            case "self_signing": selfSigning[user] = key
            case "user_signing" where user == me: userSigning[user] = key
            default: break
            }
        }
        var response: [String: JSON] = ["device_keys": .object(deviceKeys)]
        response["master_keys"] = .object(master)
        response["self_signing_keys"] = .object(selfSigning)
        if me != nil { response["user_signing_keys"] = .object(userSigning) }
        return response
    }

    /// The requester's signatures (by their user-signing key) of remote users' master keys,
    /// which only they see and which the remote server does not have.
    static func mergeOwnSignatures(_ database: Database, me: String, into response: inout [String: JSON]) async throws {
        guard var masters = response["master_keys"]?.objectValue, !masters.isEmpty else { return }
        let users = Array(masters.keys)
        let signatures = try await database.read { db in try KeyStore.signatures(db, targets: users) }
        var mine: [String: [String: [(String, String, String)]]] = [:]
        for s in signatures where s.signerUserID == me {
            mine[s.targetUserID, default: [:]][s.targetKey, default: []].append((s.signerUserID, s.signerKeyID, s.signature))
        }
        for (user, key) in masters {
            guard let publicKey = publicKey(of: key), let extra = mine[user]?[publicKey] else { continue }
            masters[user] = merging(extra, into: key)
        }
        response["master_keys"] = .object(masters)
    }

    /// A requested user id: nil for a remote user, whose keys are asked of its server.
    static func localUser(_ text: String, app: MyelinApp, failures: inout [String: JSON]) throws -> UserID? {
        guard let id = try? UserID(parsing: text) else { throw MatrixError(.invalidParam, "Invalid user id \(text)") }
        guard id.serverName.rawValue == app.configuration.serverName else {
            return nil
        }
        return id
    }

    /// The public key of a cross-signing key (the value of its only `keys` entry).
    static func publicKey(of key: JSON) -> String? {
        key["keys"]?.objectValue?.values.first?.stringValue
    }

    static func set(_ object: JSON, _ name: String, _ value: JSON) -> JSON {
        guard var fields = object.objectValue else { return object }
        fields[name] = value
        return .object(fields)
    }

    static func merging(_ extra: [(String, String, String)]?, into key: JSON) -> JSON {
        guard let extra, !extra.isEmpty else { return key }
        var signatures = key["signatures"]?.objectValue ?? [:]
        for (signer, keyID, signature) in extra {
            var bySigner = signatures[signer]?.objectValue ?? [:]
            bySigner[keyID] = .string(signature)
            signatures[signer] = .object(bySigner)
        }
        return set(key, "signatures", .object(signatures))
    }

    // MARK: claim

    /// `POST /keys/claim`: one one-time key (or fallback key) per requested device.
    static func claim(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        _ = try await context.requireUser()
        let body = try await context.jsonObject()
        guard let requested = body["one_time_keys"]?.objectValue else { throw MatrixError(.badJSON, "Missing one_time_keys") }
        var wanted: [(user: UserID, device: String, algorithm: String)] = []
        var failures: [String: JSON] = [:]
        var remote: [ServerName: [String: JSON]] = [:]
        for (user, devices) in requested {
            guard let devices = devices.objectValue else { throw MatrixError(.badJSON, "one_time_keys.\(user) must be an object") }
            guard let id = try localUser(user, app: app, failures: &failures) else {
                if let id = try? UserID(parsing: user) { remote[id.serverName, default: [:]][user] = .object(devices) }
                continue
            }
            for (device, algorithm) in devices {
                guard let algorithm = algorithm.stringValue else { throw MatrixError(.badJSON, "algorithms must be strings") }
                wanted.append((id, device, algorithm))
            }
        }
        var keys = try await claimLocal(app, wanted)
        failures = try await FederationQueries.claimRemoteKeys(app, remote, timeout: body["timeout"]?.intValue,
                                                               into: &keys, failures: failures)
        return .json(["one_time_keys": .object(keys), "failures": .object(failures)])
    }

    /// Claims one key per wanted local device: `{user: {device: {algorithm:id: key}}}`.
    static func claimLocal(_ app: MyelinApp, _ wanted: [(user: UserID, device: String, algorithm: String)]) async throws -> [String: JSON] {
        let frozen = wanted
        let claimed = zip(frozen, try await app.database.keys.claim(frozen))
        var keys: [String: JSON] = [:]
        for (want, key) in claimed {
            app.keys.invalidateCounts(want.user, want.device)
            guard let (keyID, bytes) = key, let value = try? JSON.parse(bytes) else { continue }
            let user = want.user.rawValue
            var byDevice = keys[user]?.objectValue ?? [:]
            byDevice[want.device] = .object([want.algorithm + ":" + keyID: value])
            keys[user] = .object(byDevice)
        }
        return keys
    }

    // MARK: changes

    /// `GET /keys/changes`: users whose device lists changed between two sync tokens.
    static func changes(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        let raw = context.rawQueryValues(["from", "to"])
        guard let fromText = raw[0], let toText = raw[1] else { throw MatrixError(.missingParam, "from and to are required") }
        let from = try StreamToken(parsing: PercentDecoding.decode(Substring(fromText)) ?? fromText)
        let to = try StreamToken(parsing: PercentDecoding.decode(Substring(toText)) ?? toText)
        let result = try await app.keys.changes(for: requester.userID, since: from, upTo: to, membershipsMoved: true)
        return .json(["changed": .array(result.changed.map { .string($0) }), "left": .array(result.left.map { .string($0) })])
    }
}
