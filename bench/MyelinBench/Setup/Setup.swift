import Foundation
import Synchronization

/// The set-up phase shared by every scenario: registers the run's users, creates its rooms,
/// joins their members and does each user's initial sync. Everything is named with the run's
/// prefix so that runs never collide. A step whose endpoint the server does not serve stops
/// the run with a message naming that endpoint.
struct Setup {
    let api: MatrixAPI
    let prefix: String
    let concurrency: Int
    let tally: Tally

    /// Sync filter used by every scenario: the timeline only, members lazily, nothing else.
    static func syncFilter(timelineLimit: Int, ephemeral: Bool) -> String {
        let eph = ephemeral ? "{}" : "{\"not_types\":[\"*\"]}"
        return "{\"room\":{\"timeline\":{\"limit\":\(timelineLimit)},\"state\":{\"lazy_load_members\":true},"
            + "\"ephemeral\":\(eph),\"account_data\":{\"not_types\":[\"*\"]}},"
            + "\"presence\":{\"not_types\":[\"*\"]},\"account_data\":{\"not_types\":[\"*\"]}}"
    }

    /// Runs `work(i)` for i in 0..<count with at most `concurrency` in flight, each worker on
    /// its own connection. The first failure that says "endpoint not served" aborts the step.
    func forEach(_ label: String, count: Int, concurrency: Int? = nil,
                 _ work: @escaping @Sendable (Int, ClientConnection) async -> Result<Void, CallFailure>) async throws {
        guard count > 0 else { return }
        let progress = Progress(label, total: count)
        let nextIndex = Locked(0)
        let fatal = Locked<CallFailure?>(nil)
        let lastFailure = Locked<CallFailure?>(nil)
        let workers = min(concurrency ?? self.concurrency, count)
        let http = api.http
        let tally = self.tally
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    let conn = http.makeConnection()
                    while true {
                        if fatal.withLock({ $0 != nil }) { return }
                        let i = nextIndex.withLock { v in defer { v += 1 }; return v }
                        if i >= count { return }
                        var attempt = 0
                        var throttled = 0
                        while true {
                            let r = await work(i, conn)
                            switch r {
                            case .success:
                                progress.step()
                            case .failure(let f) where f.statusCode == 429 && throttled < 200:
                                // The server sheds load (e.g. its bounded password-hashing
                                // queue): back off and retry without counting a failure, so a
                                // high --concurrency runs at the server's pace.
                                throttled += 1
                                try? await Task.sleep(for: .milliseconds(min(50 * throttled, 1000)))
                                continue
                            case .failure(let f):
                                tally.add("setup " + f.tallyKey)
                                if f.isUnrecognized {
                                    fatal.withLock { if $0 == nil { $0 = f } }
                                    return
                                }
                                if case .transport(.connectRefused) = f.kind {
                                    fatal.withLock { if $0 == nil { $0 = f } }
                                    return
                                }
                                attempt += 1
                                if attempt < 3 {
                                    try? await Task.sleep(for: .milliseconds(200 * attempt))
                                    continue
                                }
                                progress.step(ok: false)
                                lastFailure.withLock { $0 = f }
                                if progress.failed.load(ordering: .relaxed) > max(10, count / 20) {
                                    fatal.withLock { if $0 == nil { $0 = f } }
                                }
                            }
                            break
                        }
                    }
                }
            }
        }
        progress.finish()
        if let f = fatal.withLock({ $0 }) {
            throw BenchError("set-up step \"\(label)\" failed: \(f)")
        }
        if progress.failed.load(ordering: .relaxed) > 0 {
            let last = lastFailure.withLock { $0 }.map { "; last: \($0)" } ?? ""
            throw BenchError("set-up step \"\(label)\": \(progress.failed.load(ordering: .relaxed)) of \(count) failed\(last)")
        }
    }

    /// Checks that the server answers at all before a long set-up.
    func probeVersions() async throws {
        let conn = api.http.makeConnection()
        let r = await api.call(conn, "GET", "/_matrix/client/versions", token: nil, label: "versions", timeout: 10)
        if case .failure(let f) = r { throw BenchError("server not usable: \(f)") }
    }

    /// Registers `count` users named `<prefix>u<i>` with the UIA dummy flow (or an admin
    /// shared secret when given), returning them in index order.
    func registerUsers(count: Int, sharedSecret: String?) async throws -> [BenchUser] {
        let users = Locked<[BenchUser?]>(Array(repeating: nil, count: count))
        let api = self.api
        let prefix = self.prefix
        try await forEach("registering users", count: count) { i, conn in
            let localpart = "\(prefix)u\(i)"
            let password = "bench-\(prefix)-\(i)"
            let result: Result<[String: Any], CallFailure>
            if let sharedSecret {
                result = await registerWithSharedSecret(api: api, conn: conn, localpart: localpart,
                                                        password: password, secret: sharedSecret)
            } else {
                result = await registerWithDummyAuth(api: api, conn: conn, localpart: localpart, password: password)
            }
            switch result {
            case .success(let json):
                guard let token = json["access_token"] as? String, let userID = json["user_id"] as? String else {
                    return .failure(CallFailure(endpoint: "POST \(MatrixAPI.v3)/register", label: "registration",
                                                kind: .badBody("no access_token/user_id")))
                }
                users.withLock { $0[i] = BenchUser(index: i, userID: userID, token: token) }
                return .success(())
            case .failure(let f):
                return .failure(f)
            }
        }
        return users.withLock { $0.compactMap { $0 } }
    }

    /// Creates `rooms` rooms; room r's members are `members` consecutive users starting at
    /// r * members (wrapping), so each user sits in about rooms * members / users rooms.
    func createRooms(_ rooms: Int, members: Int, users: [BenchUser]) async throws -> [BenchRoom] {
        let plans = (0..<rooms).map { r in
            (0..<min(members, users.count)).map { (r * members + $0) % users.count }
        }
        let created = Locked<[String?]>(Array(repeating: nil, count: rooms))
        let api = self.api
        let prefix = self.prefix
        try await forEach("creating rooms", count: rooms) { r, conn in
            let creator = users[plans[r][0]]
            let body: [String: Any] = ["preset": "public_chat", "name": "\(prefix) room \(r)",
                                       "visibility": "private"]
            let result = await api.call(conn, "POST", "\(MatrixAPI.v3)/createRoom", token: creator.token,
                                        body: body, label: "room creation")
            switch result {
            case .success(let json):
                guard let id = json["room_id"] as? String else {
                    return .failure(CallFailure(endpoint: "POST \(MatrixAPI.v3)/createRoom", label: "room creation",
                                                kind: .badBody("no room_id")))
                }
                created.withLock { $0[r] = id }
                return .success(())
            case .failure(let f):
                return .failure(f)
            }
        }
        let ids = created.withLock { $0 }
        let rooms = zip(ids, plans).map { BenchRoom(roomID: $0.0 ?? "", members: $0.1) }
        // Joins, interleaved across rooms (a server serialises joins within one room).
        var joinList: [(room: Int, user: Int)] = []
        let longest = plans.map(\.count).max() ?? 0
        for k in 1..<max(1, longest) {
            for r in 0..<rooms.count where k < plans[r].count { joinList.append((r, plans[r][k])) }
        }
        let joins = joinList
        try await forEach("joining rooms", count: joins.count) { j, conn in
            let (r, u) = joins[j]
            let result = await api.call(conn, "POST", "\(MatrixAPI.v3)/join/\(percentEncode(rooms[r].roomID))",
                                        token: users[u].token, body: [:], label: "joining rooms")
            return result.map { _ in () }
        }
        return rooms
    }

    /// Each user's initial sync, recording `next_batch`.
    func initialSyncs(_ users: [BenchUser], filter: String) async throws -> [BenchUser] {
        let out = Locked<[BenchUser]>(users)
        let api = self.api
        let query = "filter=\(percentEncode(filter))&timeout=0"
        try await forEach("initial syncs", count: users.count) { i, conn in
            let result = await api.call(conn, "GET", "\(MatrixAPI.v3)/sync", query: query, token: users[i].token,
                                        label: "sync", timeout: 300)
            switch result {
            case .success(let json):
                guard let nb = json["next_batch"] as? String else {
                    return .failure(CallFailure(endpoint: "GET \(MatrixAPI.v3)/sync", label: "sync", kind: .badBody("no next_batch")))
                }
                out.withLock { $0[i].nextBatch = nb }
                return .success(())
            case .failure(let f):
                return .failure(f)
            }
        }
        // One catch-up sync each: what happened during the others' initial syncs (their
        // presence coming online, mostly) is not charged to the first measured long-polls.
        let synced = out.withLock { $0 }
        try await forEach("catch-up syncs", count: synced.count) { i, conn in
            let since = "since=\(percentEncode(synced[i].nextBatch ?? ""))&"
            let result = await api.call(conn, "GET", "\(MatrixAPI.v3)/sync", query: since + query, token: synced[i].token,
                                        label: "sync", timeout: 300)
            switch result {
            case .success(let json):
                if let nb = json["next_batch"] as? String { out.withLock { $0[i].nextBatch = nb } }
                return .success(())
            case .failure(let f):
                return .failure(f)
            }
        }
        return out.withLock { $0 }
    }
}

/// UIA registration with the dummy stage: the request carries `auth: m.login.dummy` at once;
/// a server that insists on a session first answers 401 with one, and the call is repeated.
func registerWithDummyAuth(api: MatrixAPI, conn: ClientConnection, localpart: String,
                           password: String) async -> Result<[String: Any], CallFailure> {
    var body: [String: Any] = ["username": localpart, "password": password,
                               "initial_device_display_name": "myelin-bench",
                               "auth": ["type": "m.login.dummy"]]
    let first = await api.call(conn, "POST", "\(MatrixAPI.v3)/register", token: nil, body: body,
                               label: "registration", timeout: 120)
    if case .failure(let f) = first, f.statusCode == 401 {
        // Learn the session from a bare request, then complete the dummy stage.
        let probe = await api.rawJSON(conn, "POST", "\(MatrixAPI.v3)/register",
                                      body: ["username": localpart, "password": password])
        if let session = probe?["session"] as? String {
            body["auth"] = ["type": "m.login.dummy", "session": session]
            return await api.call(conn, "POST", "\(MatrixAPI.v3)/register", token: nil, body: body,
                                  label: "registration", timeout: 120)
        }
    }
    return first
}

extension MatrixAPI {
    /// The JSON body of any response, error or not (for UIA's 401 bodies).
    func rawJSON(_ conn: ClientConnection, _ method: String, _ path: String, body: [String: Any]) async -> [String: Any]? {
        let bytes = (try? JSONSerialization.data(withJSONObject: body)).map { [UInt8]($0) }
        guard case .success(let r) = await raw(conn, method, path, token: nil, body: bytes, timeout: 60) else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any]
    }
}

/// Synapse's shared-secret admin registration (`/_synapse/admin/v1/register`): nonce, then
/// HMAC-SHA1 over nonce, user, password and "notadmin".
func registerWithSharedSecret(api: MatrixAPI, conn: ClientConnection, localpart: String,
                              password: String, secret: String) async -> Result<[String: Any], CallFailure> {
    let path = "/_synapse/admin/v1/register"
    let nonceResult = await api.call(conn, "GET", path, token: nil, label: "shared-secret registration")
    guard case .success(let nonceJSON) = nonceResult, let nonce = nonceJSON["nonce"] as? String else {
        if case .failure(let f) = nonceResult { return .failure(f) }
        return .failure(CallFailure(endpoint: "GET \(path)", label: "shared-secret registration", kind: .badBody("no nonce")))
    }
    var message = Array(nonce.utf8); message.append(0)
    message += Array(localpart.utf8); message.append(0)
    message += Array(password.utf8); message.append(0)
    message += Array("notadmin".utf8)
    let mac = hmacSHA1(key: Array(secret.utf8), message: message).map { String(format: "%02x", $0) }.joined()
    return await api.call(conn, "POST", path, token: nil,
                          body: ["nonce": nonce, "username": localpart, "password": password, "admin": false, "mac": mac],
                          label: "shared-secret registration", timeout: 120)
}

/// A value shared between tasks under a lock (a class, so escaping closures can capture it).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
