// `myelin-session-bench`: the cost of authenticating a resident token and of a sync's
// to-device acknowledgement lookup, through `Sessions` (issue 15) and through a replica of
// the path it replaced (`AccessTokenCache` + `LastSeenRecorder`, commit 6f0a2ed). One task,
// no suspension in the loops; wall time per call, min and median of 60 batches of 20,000
// (thread CPU time is unusable: an `await` may resume on another thread). See bench/ACTORS.md.
//
//   swift build -c release --product myelin-session-bench && .build/release/myelin-session-bench
import Actors
import Glibc
import Matrix
import Persistence
import Synchronization

func wallNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
func nowMs() -> Int64 { var ts = timespec(); clock_gettime(CLOCK_REALTIME, &ts); return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000 }

// --- the old path (AccessTokenCache + LastSeenRecorder.record, as in 6f0a2ed) ---
final class OldCache: Sendable {
    struct Session: Sendable { let userID: UserID; let deviceID: String?; let isGuest: Bool; let expiresTs: Int64?; let deactivated: Bool }
    private struct Entry { let session: Session; let cachedAt: Int64 }
    private let entries = Mutex<[String: Entry]>([:])
    func lookup(_ hash: String) -> Session? {
        let now = nowMs()
        return entries.withLock { entries in
            guard let entry = entries[hash] else { return nil }
            if now - entry.cachedAt > 60_000 { entries[hash] = nil; return nil }
            return entry.session
        }
    }
    func insert(_ hash: String, _ session: Session) { let now = nowMs(); entries.withLock { $0[hash] = Entry(session: session, cachedAt: now) } }
}
final class OldLastSeen: Sendable {
    struct Seen: Sendable { var ts: Int64; var ip: String; var userAgent: String? }
    struct Key: Hashable, Sendable { let userID: String; let deviceID: String }
    private let pending = Mutex<[Key: Seen]>([:])
    func record(userID: String, deviceID: String, ts: Int64, ip: String, userAgent: String?) {
        _ = pending.withLock { pending in
            let wasEmpty = pending.isEmpty
            let key = Key(userID: userID, deviceID: deviceID)
            pending[key] = Seen(ts: ts, ip: ip, userAgent: userAgent ?? pending[key]?.userAgent)
            return wasEmpty
        }
    }
}
struct OldRequester { let userID: UserID; let deviceID: String?; let isGuest: Bool; let tokenHash: String }

@inline(never) func oldAuth(_ cache: OldCache, _ seen: OldLastSeen, _ hash: String, ip: String, ua: String?) async throws -> OldRequester {
    let now = nowMs()
    guard let session = cache.lookup(hash) else { fatalError() }
    if let e = session.expiresTs, e <= now { fatalError() }
    if session.deactivated { fatalError() }
    if let device = session.deviceID { seen.record(userID: session.userID.rawValue, deviceID: device, ts: now, ip: ip, userAgent: ua) }
    return OldRequester(userID: session.userID, deviceID: session.deviceID, isGuest: session.isGuest, tokenHash: hash)
}

let users = 2000
let hashes = (0..<users).map { "h\($0)-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab" }
let batch = 20_000

let old = OldCache(), oldSeen = OldLastSeen()
let dir = "/tmp/myelin-session-bench-\(getpid())"
mkdir(dir, 0o700)
let database = try await Database.open(.sqlite(path: dir + "/db.sqlite"))
for (i, h) in hashes.enumerated() {
    let user = "@user\(i):example.org"
    _ = try await database.accounts.createUser(UserRecord(userID: user))
    try await database.devices.upsertDevice(DeviceRecord(userID: user, deviceID: "DEVICE\(i)", createdTs: 0))
    try await database.tokens.insertAccessToken(AccessTokenRecord(tokenHash: h, userID: user, deviceID: "DEVICE\(i)"))
}
let sessions = Sessions(store: database.tokens, limits: RegistryLimits(maxResident: 50_000, idleTimeoutSeconds: 900),
                        lastSeen: LastSeenBatcher(store: database.devices))
for h in hashes { _ = try await sessions.authenticate(tokenHash: h, now: nowMs(), ip: "10.0.0.1", userAgent: "ua") }
let reads = database.readCount

for (i, h) in hashes.enumerated() {
    old.insert(h, .init(userID: try! UserID(parsing: "@user\(i):example.org"), deviceID: "DEVICE\(i)", isGuest: false, expiresTs: nil, deactivated: false))
}
await Task.detached { [old, oldSeen, sessions, hashes] in
    var oldSamples: [Double] = [], newSamples: [Double] = []
    for sample in 0..<60 {
        var start = wallNanos()
        for i in 0..<batch { _ = try! await oldAuth(old, oldSeen, hashes[(i &+ sample) % users], ip: "10.0.0.1", ua: "ua") }
        oldSamples.append(Double(wallNanos() - start) / Double(batch))
        start = wallNanos()
        for i in 0..<batch { _ = try! await sessions.authenticate(tokenHash: hashes[(i &+ sample) % users], now: nowMs(), ip: "10.0.0.1", userAgent: "ua") }
        newSamples.append(Double(wallNanos() - start) / Double(batch))
    }
    oldSamples.sort(); newSamples.sort()
    print("old: min \(Int(oldSamples[0])) ns, median \(Int(oldSamples[30])) ns; new: min \(Int(newSamples[0])) ns, median \(Int(newSamples[30])) ns (wall time per authentication, excluding the token's SHA-256)")
}.value
// The to-device acknowledgement lookup of a sync: before, a concatenated key in one
// dictionary; now the device's resident session.
let acks = Mutex<[String: Int64]>([:])
let userIDs = (0..<users).map { try! UserID(parsing: "@user\($0):example.org") }
let devices = (0..<users).map { "DEVICE\($0)" }
for i in 0..<users { acks.withLock { $0[userIDs[i].rawValue + "|" + devices[i]] = 1 } }
for i in 0..<users { sessions.resident(SessionKey(user: userIDs[i], device: try! DeviceID(parsing: devices[i])))!.recordToDeviceAcknowledged(1) }
@inline(never) func oldAck(_ user: UserID, _ device: String) -> Int64? {
    let key = user.rawValue + "|" + device
    return acks.withLock { $0[key] }
}
@inline(never) func newAck(_ user: UserID, _ device: String) -> Int64? {
    sessions.resident(user, deviceID: device)?.toDeviceAcknowledged
}
var oldAckSamples: [Double] = [], newAckSamples: [Double] = []
for sample in 0..<60 {
    var start = wallNanos()
    for i in 0..<batch { _ = oldAck(userIDs[(i &+ sample) % users], devices[(i &+ sample) % users]) }
    oldAckSamples.append(Double(wallNanos() - start) / Double(batch))
    start = wallNanos()
    for i in 0..<batch { _ = newAck(userIDs[(i &+ sample) % users], devices[(i &+ sample) % users]) }
    newAckSamples.append(Double(wallNanos() - start) / Double(batch))
}
oldAckSamples.sort(); newAckSamples.sort()
print("to-device ack lookup: old min \(Int(oldAckSamples[0])) ns, median \(Int(oldAckSamples[30])) ns; new min \(Int(newAckSamples[0])) ns, median \(Int(newAckSamples[30])) ns")
print("store reads during the measured loops: \(database.readCount - reads)")
await sessions.shutdown()
await database.close()
unlink(dir + "/db.sqlite")
unlink(dir + "/db.sqlite-wal")
unlink(dir + "/db.sqlite-shm")
rmdir(dir)
