import Matrix
import Persistence
import Transport

/// Cross-signing (client-server API "Cross-signing"): `POST /keys/device_signing/upload`,
/// which stores a user's master, self-signing and user-signing keys once the latter two are
/// signed by the master key, and `POST /keys/signatures/upload`, which stores signatures made
/// with those keys (or by devices on their master key) after checking each against the key
/// it names and the key it signs. Served by `Keys.register`; signatures are kept apart from the
/// keys (`KeyStore`) and merged in when `/keys/query` serves them.
enum CrossSigning {
    static let fields: [(field: String, usage: CrossSigningKey.Usage)] = [
        ("master_key", .master), ("self_signing_key", .selfSigning), ("user_signing_key", .userSigning),
    ]

    // MARK: device_signing/upload

    /// `POST /keys/device_signing/upload`. Every key is checked before anything else (so a
    /// forged key is a 400 even where replacing keys needs user-interactive auth, and the
    /// user is not asked for a password to then be refused): shape, then the self-signing
    /// and user-signing keys' signatures by the uploaded master key, or by the stored one when
    /// none is uploaded (`M_INVALID_SIGNATURE`; `M_MISSING_PARAM` when there is no master
    /// key at all). Then, once a master key is stored, any key that differs from the stored
    /// key of its type needs user-interactive auth (spec 1.11, MSC3967, as Synapse: the first
    /// set-up and an identical re-upload do not).
    static func uploadKeys(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        try context.rateLimit("key-uploads", app.configuration.rateLimits.keyUploads, user: requester.userID)
        let body = try await context.jsonObject()
        let userID = requester.userID.rawValue

        var uploads: [CrossSigningKey.Usage: CrossSigningKey] = [:]
        for (field, usage) in fields {
            guard let key = body[field], key != .null else { continue }
            uploads[usage] = try CrossSigningKey(key, userID: userID, usage: usage)
        }
        guard !uploads.isEmpty else { return .json([:]) }

        let stored = try await storedKeys(app.database, of: requester.userID)
        // Exactly the stored keys (a retried request): nothing to check or write (as Synapse,
        // which answers before any check, so keys stored before they were checked still
        // re-upload).
        let changed = uploads.filter { stored[$0.key] != $0.value.json }
        guard !changed.isEmpty else { return .json([:]) }
        let master: CrossSigningKey
        if let uploaded = uploads[.master] {
            master = uploaded
        } else if let json = stored[.master] {
            guard let key = try? CrossSigningKey(json, userID: userID, usage: .master) else {
                throw MatrixError(.unknown, "The stored master key is invalid")
            }
            master = key
        } else {
            throw MatrixError(.missingParam, "No master key available: upload one with the other keys")
        }
        for usage in [CrossSigningKey.Usage.selfSigning, .userSigning] {
            guard let key = uploads[usage] else { continue }
            do {
                try master.checkSignature(on: key.json)
            } catch {
                throw MatrixError(.invalidSignature, "The \(usage.rawValue) key is not signed by the master key \(master.publicKey)",
                                  status: 400)
            }
        }
        // Device ids and cross-signing public keys share one namespace (verification names a
        // master key as if it were a device): a key named like a device is refused.
        let deviceIDs = Set(try await app.database.devices.devices(of: requester.userID).map(\.deviceID))
        if let clash = uploads.values.first(where: { deviceIDs.contains($0.publicKey) }) {
            throw MatrixError(.forbidden, "Key ID in use: \(clash.publicKey) is one of your device ids")
        }

        if stored[.master] != nil {
            try await Devices.authorizeDeletion(requester: requester, body: body, accounts: app.accounts)
        }
        let writes = changed.map { (type: $0.key.rawValue, json: $0.value.json.encoded()) }
        // Peers see master and self-signing keys; a user-signing key is the user's own view
        // of others, so its change is told to the user alone (as Synapse).
        let ownOnly = changed.keys.allSatisfy { $0 == .userSigning }
        try await app.keys.changingKeys(of: requester.userID, change: .init(crossSigning: !ownOnly, ownOnly: ownOnly)) { db in
            var any = false
            for write in writes where try KeyStore.setCrossSigningKey(db, userID: userID, type: write.type, json: write.json) {
                any = true
            }
            return ((), any)
        }
        return .json([:])
    }

    /// Whether `deviceID` is the public key of one of the user's cross-signing keys (a
    /// device may not take such an id: verification names keys and devices alike).
    static func isCrossSigningKey(_ deviceID: String, of user: UserID, _ database: Database) async throws -> Bool {
        try await storedKeys(database, of: user).values.contains { CrossSigningKey.publicKeyString(of: $0) == deviceID }
    }

    /// The user's stored cross-signing keys by usage (unparsed JSON; unreadable rows left out).
    static func storedKeys(_ database: Database, of user: UserID) async throws -> [CrossSigningKey.Usage: JSON] {
        var keys: [CrossSigningKey.Usage: JSON] = [:]
        for (_, type, bytes) in try await database.keys.crossSigningKeys(of: user) {
            guard let usage = CrossSigningKey.Usage(rawValue: type), let json = try? JSON.parse(bytes) else { continue }
            keys[usage] = json
        }
        return keys
    }

    // MARK: signatures/upload

    /// At most this many signed objects in one `/keys/signatures/upload` (each costs a
    /// signature check; clients send a handful).
    static let maxSignedObjects = 1_000

    /// A signed object that cannot be accepted: reported under `failures.<user>.<key id>`.
    struct Failure: Error {
        var code: MatrixError.Code
        var status: Int
        var message: String

        static func invalidSignature(_ message: String) -> Failure { Failure(code: .invalidSignature, status: 400, message: message) }
        static func notFound(_ message: String) -> Failure { Failure(code: .notFound, status: 404, message: message) }

        var json: JSON { ["errcode": .string(code.rawValue), "error": .string(message), "status": .int(Int64(status))] }
    }

    /// `POST /keys/signatures/upload`: `{user: {key id: signed object}}`. Each object is
    /// checked on its own and either all its new signatures are stored or it is reported in
    /// `failures` (errcodes as Synapse: `M_INVALID_SIGNATURE` for a missing or wrong
    /// signature, `M_NOT_FOUND` for an unknown device or key or a missing signing key,
    /// `M_UNKNOWN` when the object is not the stored key):
    /// - the requester's devices, signed by their self-signing key;
    /// - the requester's master key, signed by their devices (or the master key itself);
    /// - other users' master keys, signed by the requester's user-signing key.
    /// The object must be the stored key apart from `signatures` and `unsigned`.
    static func uploadSignatures(_ context: RequestContext) async throws -> HTTPResponse {
        let app = context.app
        let requester = try await context.requireUser()
        try context.rateLimit("key-uploads", app.configuration.rateLimits.keyUploads, user: requester.userID)
        let body = try await context.jsonObject()
        let me = requester.userID.rawValue

        var count = 0
        for (user, keys) in body {
            guard let keys = keys.objectValue else { throw MatrixError(.badJSON, "\(user) must be an object of signed keys") }
            for (keyID, signed) in keys where signed.objectValue == nil {
                throw MatrixError(.badJSON, "\(user).\(keyID) must be a signed key object")
            }
            count += keys.count
        }
        guard count <= maxSignedObjects else {
            throw MatrixError(.tooLarge, "At most \(maxSignedObjects) signed keys per request")
        }

        var failures: [String: [String: JSON]] = [:]
        var own: [KeyStore.Signature] = []
        var others: [KeyStore.Signature] = []
        var signedDevices = Set<String>()
        var signedMaster = false

        if let mine = body[me]?.objectValue, !mine.isEmpty {
            let result = try await ownSignatures(app, me: requester.userID, mine)
            own = result.signatures
            signedDevices = result.devices
            signedMaster = result.master
            if !result.failures.isEmpty { failures[me] = result.failures }
        }
        let otherUsers = body.filter { $0.key != me && !($0.value.objectValue ?? [:]).isEmpty }
        if !otherUsers.isEmpty {
            let result = try await otherSignatures(app, me: requester.userID, otherUsers.mapValues { $0.objectValue ?? [:] })
            others = result.signatures
            for (user, failed) in result.failures { failures[user] = failed }
        }

        try await app.keys.recordSignatures(by: requester.userID, own: own, others: others,
                                            change: .init(devices: signedDevices.sorted(), crossSigning: signedMaster))
        return .json(["failures": .object(failures.mapValues { .object($0) })])
    }

    /// Signatures on the requester's own keys: (signatures to store, failures by key id, the
    /// devices signed, whether the master key was signed).
    static func ownSignatures(_ app: MyelinApp, me: UserID, _ objects: [String: JSON]) async throws
        -> (signatures: [KeyStore.Signature], failures: [String: JSON], devices: Set<String>, master: Bool) {
        let userID = me.rawValue
        let (deviceRows, crossRows) = try await app.database.read { db in
            (try KeyStore.deviceKeys(db, users: [userID]), try KeyStore.crossSigningKeys(db, users: [userID]))
        }
        var devices: [String: JSON] = [:]
        for (_, device, bytes) in deviceRows { devices[device] = try? JSON.parse(bytes) }
        var cross: [CrossSigningKey.Usage: CrossSigningKey] = [:]
        for (_, type, bytes) in crossRows {
            guard let usage = CrossSigningKey.Usage(rawValue: type), let json = try? JSON.parse(bytes),
                  let key = try? CrossSigningKey(json, userID: userID, usage: usage) else { continue }
            cross[usage] = key
        }

        var signatures: [KeyStore.Signature] = []
        var failures: [String: JSON] = [:]
        var signedDevices = Set<String>()
        var signedMaster = false
        for (keyID, signed) in objects.sorted(by: { $0.key < $1.key }) {
            do {
                guard let mine = signed["signatures"]?[userID]?.objectValue, !mine.isEmpty else {
                    throw Failure.invalidSignature("No signature by \(userID)")
                }
                if let master = cross[.master], keyID == master.publicKey {
                    signatures += try masterSignatures(signed, master: master, mine: mine, devices: devices)
                    signedMaster = true
                    continue
                }
                guard let stored = devices[keyID] else { throw Failure.notFound("Unknown device \(keyID)") }
                guard let selfSigning = cross[.selfSigning] else { throw Failure.notFound("No self-signing key found for \(userID)") }
                guard let signature = mine[selfSigning.keyID]?.stringValue else {
                    throw Failure.invalidSignature("No signature by the self-signing key \(selfSigning.keyID)")
                }
                try check(signed, matches: stored, signer: selfSigning.keyID, userID: userID, key: selfSigning.verifyKey)
                signatures.append(.init(signerUserID: userID, signerKeyID: selfSigning.keyID, targetUserID: userID,
                                        targetKey: keyID, signature: signature))
                signedDevices.insert(keyID)
            } catch let failure as Failure {
                failures[keyID] = failure.json
            }
        }
        return (signatures, failures, signedDevices, signedMaster)
    }

    /// The signatures under the owner's name on their master key: each by one of their
    /// devices' ed25519 keys or by the master key itself, and all valid (else none is kept).
    static func masterSignatures(_ signed: JSON, master: CrossSigningKey, mine: [String: JSON],
                                 devices: [String: JSON]) throws -> [KeyStore.Signature] {
        var result: [KeyStore.Signature] = []
        for (signer, value) in mine.sorted(by: { $0.key < $1.key }) {
            guard let signature = value.stringValue else { throw Failure.invalidSignature("Signature \(signer) is not a string") }
            let key: VerifyKey
            if signer == master.keyID {
                key = master.verifyKey
            } else {
                guard signer.hasPrefix("ed25519:"), let device = devices[String(signer.dropFirst("ed25519:".count))],
                      let text = device["keys"]?[signer]?.stringValue, let bytes = Base64.decode(text),
                      let deviceKey = try? VerifyKey(bytes: bytes) else {
                    throw Failure.invalidSignature("\(signer) is not a key of one of \(master.userID)'s devices")
                }
                key = deviceKey
            }
            try check(signed, matches: master.json, signer: signer, userID: master.userID, key: key)
            result.append(.init(signerUserID: master.userID, signerKeyID: signer, targetUserID: master.userID,
                                targetKey: master.publicKey, signature: signature))
        }
        return result
    }

    /// Signatures by the requester's user-signing key on other users' master keys, the only
    /// keys of others one may sign: (signatures, failures by user and key id).
    static func otherSignatures(_ app: MyelinApp, me: UserID, _ byUser: [String: [String: JSON]]) async throws
        -> (signatures: [KeyStore.Signature], failures: [String: [String: JSON]]) {
        let signer = me.rawValue
        var failures: [String: [String: JSON]] = [:]
        func failAll(_ user: String, _ failure: Failure) {
            failures[user] = (byUser[user] ?? [:]).mapValues { _ in failure.json }
        }
        let userSigning = try await storedKeys(app.database, of: me)[.userSigning]
            .flatMap { try? CrossSigningKey($0, userID: signer, usage: .userSigning) }
        guard let userSigning else {
            for user in byUser.keys { failAll(user, .notFound("No user-signing key found for \(signer)")) }
            return ([], failures)
        }

        // The targets' master keys: local ones from the store, remote ones as `/keys/query`
        // finds them (the device-list cache, else their server).
        var masters: [String: JSON] = [:]
        var local: [String] = []
        var remote: [ServerName: [String: JSON]] = [:]
        for user in byUser.keys {
            guard let id = try? UserID(parsing: user) else {
                failAll(user, Failure(code: .invalidParam, status: 400, message: "Invalid user id \(user)"))
                continue
            }
            if id.serverName.rawValue == app.configuration.serverName {
                local.append(user)
            } else {
                remote[id.serverName, default: [:]][user] = []
            }
        }
        let frozenLocal = local
        for (user, type, bytes) in try await app.database.read({ db in try KeyStore.crossSigningKeys(db, users: frozenLocal) })
        where type == CrossSigningKey.Usage.master.rawValue {
            masters[user] = try? JSON.parse(bytes)
        }
        if !remote.isEmpty {
            var response: [String: JSON] = [:]
            _ = try await app.queryRemoteKeys(remote, timeout: nil, into: &response, failures: [:])
            for (user, key) in response["master_keys"]?.objectValue ?? [:] { masters[user] = key }
        }

        var signatures: [KeyStore.Signature] = []
        for (user, objects) in byUser.sorted(by: { $0.key < $1.key }) where failures[user] == nil {
            guard let json = masters[user], let master = try? CrossSigningKey(json, userID: user, usage: .master) else {
                failAll(user, .notFound("No master key found for \(user)"))
                continue
            }
            var userFailures: [String: JSON] = [:]
            for (keyID, signed) in objects {
                do {
                    guard keyID == master.publicKey else {
                        throw Failure.notFound("\(keyID) is not \(user)'s master key: only master keys of others can be signed")
                    }
                    guard let signature = signed["signatures"]?[signer]?[userSigning.keyID]?.stringValue else {
                        throw Failure.invalidSignature("No signature by the user-signing key \(userSigning.keyID)")
                    }
                    try check(signed, matches: master.json, signer: userSigning.keyID, userID: signer, key: userSigning.verifyKey)
                    signatures.append(.init(signerUserID: signer, signerKeyID: userSigning.keyID, targetUserID: user,
                                            targetKey: keyID, signature: signature))
                } catch let failure as Failure {
                    userFailures[keyID] = failure.json
                }
            }
            if !userFailures.isEmpty { failures[user] = userFailures }
        }
        return (signatures, failures)
    }

    /// `signed` is `stored` apart from signatures and unsigned data, and carries a valid
    /// signature by `userID` with `signer` (public half `key`).
    static func check(_ signed: JSON, matches stored: JSON, signer: String, userID: String, key: VerifyKey) throws {
        guard CrossSigningKey.sameKey(signed, stored) else {
            throw Failure(code: .unknown, status: 400, message: "Key does not match the stored key")
        }
        do {
            try CrossSigningKey.checkSignature(on: signed, by: userID, keyID: signer, key: key)
        } catch {
            throw Failure.invalidSignature("Invalid signature by \(signer)")
        }
    }
}
