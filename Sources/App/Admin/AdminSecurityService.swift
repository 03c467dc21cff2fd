import Glibc
import Logging
import Matrix
import Persistence
import Synchronization
import Transport

/// The security extension's state (docs/admin.md, "Security"): IP blocks, the reputation of
/// each client address, and the security event log. Owned by `MyelinApp`; fed by its
/// respond path (`observe`), by the transport's refusals of malformed requests, and by the
/// admin handlers in `AdminSecurity.swift`.
///
/// - **Blocks** are stored (`ip_blocks`) and compiled into `addressFilter`, which every
///   listener consults at accept. A background task re-reads the table every
///   `blockRefreshMs` (deleting expired rows), so another process sharing the database
///   learns of a block, and expired rows leave the table; between refreshes the filter
///   itself stops applying an expired block (it checks expiry on a match). The same task
///   re-reads the rate-limit overrides.
/// - **Reputation** is in memory only (a restart forgets it), bounded to `maxAddresses`.
/// - **Events** are queued in memory (at most `maxQueuedEvents`; past that they are counted
///   and dropped) and written in batches every second; the table keeps the newest
///   `security.event_log_capacity` rows.
final class SecurityService: Sendable {
    let addressFilter = AddressFilter()
    let configuration: Configuration.Security
    /// Addresses never auto-blocked (the reverse proxies).
    let trustedProxies: Set<String>
    let store: SecurityStore
    let logger: Logger
    let reputation: ReputationTable

    static let blockRefreshMs: Int64 = 30_000
    static let maxQueuedEvents = 10_000

    private struct EventQueue {
        var pending: [SecurityEventRecord] = []
        var dropped = 0
        var writtenSinceTrim = 0
    }

    private let queue = Mutex(EventQueue())
    private let upkeep = Mutex<Task<Void, Never>?>(nil)
    /// The newest flush: each flush runs after the one before it, so a flush that returns
    /// has written every event queued before it was asked for, including those a flush
    /// already in flight had taken from the queue (the events listing reads right after).
    private let lastFlush = Mutex<Task<Void, Never>?>(nil)
    /// The blocks as last loaded (the listing's cache and the auto-block's "already blocked").
    private let loadedBlocks = Mutex<[IPBlockRecord]>([])

    /// Whose per-user overrides the upkeep re-reads (nil in tests of the service alone).
    let rateLimiter: RateLimiter?

    init(configuration: Configuration.Security, trustedProxies: [String], database: Database, logger: Logger,
         rateLimiter: RateLimiter? = nil) {
        self.configuration = configuration
        self.rateLimiter = rateLimiter
        self.trustedProxies = Set(trustedProxies)
        store = database.security
        self.logger = logger
        reputation = ReputationTable(halfLifeMs: Int64(configuration.reputationHalfLifeSeconds) * 1000)
    }

    /// Loads the blocks into the filter and starts the upkeep task (refresh, event writes).
    func start() async throws {
        try await reloadBlocks()
        let count = loadedBlocks.withLock { $0.count }
        if count > 0 { logger.info("\(count) IP block(s) in force, refused at accept") }
        let task = Task.detached { [weak self] in
            var sinceRefresh: Int64 = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard let self else { return }
                await self.flushEvents()
                sinceRefresh += 1000
                if sinceRefresh >= Self.blockRefreshMs {
                    sinceRefresh = 0
                    do { try await self.reloadBlocks() } catch { self.logger.warning("IP blocks not refreshed: \(error)") }
                    if let rateLimiter = self.rateLimiter {
                        do { try await rateLimiter.loadOverrides(from: self.store) } catch {
                            self.logger.warning("rate-limit overrides not refreshed: \(error)")
                        }
                    }
                }
            }
        }
        upkeep.withLock { $0 = task }
    }

    /// Stops the upkeep task and writes the queued events.
    func stop() async {
        let task = upkeep.withLock { t -> Task<Void, Never>? in defer { t = nil }; return t }
        task?.cancel()
        await task?.value
        await flushEvents()
    }

    // MARK: Blocks

    /// Reads the blocks (dropping expired rows) and compiles them into the filter.
    func reloadBlocks() async throws {
        let now = Clock.nowMilliseconds()
        try await store.removeExpiredBlocks(now: now)
        let records = try await store.blocks()
        install(records)
    }

    private func install(_ records: [IPBlockRecord]) {
        loadedBlocks.withLock { $0 = records }
        addressFilter.replace(records.compactMap { record in
            IPRange(record.range).map { AddressFilter.Rule(range: $0, expiresAtMs: record.expiresTs) }
        })
    }

    /// The blocks in force (expired ones left out even before the next refresh).
    func blocks(now: Int64 = Clock.nowMilliseconds()) -> [IPBlockRecord] {
        loadedBlocks.withLock { $0 }.filter { ($0.expiresTs ?? Int64.max) > now }
    }

    func block(_ range: IPRange, reason: String?, by: String?, expiresAtMs: Int64?, auto: Bool = false) async throws -> IPBlockRecord {
        let record = IPBlockRecord(range: AdminSecurity.text(range), reason: reason, blockedBy: by, blockedTs: Clock.nowMilliseconds(),
                                   expiresTs: expiresAtMs)
        try await store.putBlock(record)
        try await reloadBlocks()
        var details: [String: JSON] = ["range": .string(record.range)]
        if let reason { details["reason"] = .string(reason) }
        if let expiresAtMs { details["expires_at"] = .int(expiresAtMs) }
        self.record(auto ? "ip_auto_blocked" : "ip_blocked", userID: by, ip: record.range, details: details)
        return record
    }

    func unblock(_ range: IPRange, by: String?) async throws -> Bool {
        let removed = try await store.removeBlock(AdminSecurity.text(range))
        try await reloadBlocks()
        if removed { record("ip_unblocked", userID: by, ip: AdminSecurity.text(range), details: [:]) }
        return removed
    }

    // MARK: Events

    /// Queues an event for the log.
    func record(_ type: String, userID: String?, ip: String?, details: [String: JSON]) {
        let event = SecurityEventRecord(type: type, userID: userID, ip: ip, ts: Clock.nowMilliseconds(),
                                        details: details.isEmpty ? nil : JSON.object(details).encodedString)
        queue.withLock { q in
            if q.pending.count >= Self.maxQueuedEvents { q.dropped += 1 } else { q.pending.append(event) }
        }
    }

    /// Writes the queued events and trims the table to its capacity now and then; returns
    /// once they and those of any flush in flight are written.
    func flushEvents() async {
        let flush = lastFlush.withLock { last -> Task<Void, Never> in
            let previous = last
            let next = Task { [self] in
                await previous?.value
                await writeQueuedEvents()
            }
            last = next
            return next
        }
        await flush.value
    }

    private func writeQueuedEvents() async {
        let (batch, dropped, trim) = queue.withLock { q -> ([SecurityEventRecord], Int, Bool) in
            let batch = q.pending
            let dropped = q.dropped
            q.pending = []
            q.dropped = 0
            q.writtenSinceTrim += batch.count
            let trim = q.writtenSinceTrim >= max(1, configuration.eventLogCapacity / 10)
            if trim { q.writtenSinceTrim = 0 }
            return (batch, dropped, trim)
        }
        if dropped > 0 { logger.warning("security event log: \(dropped) events dropped (queue full)") }
        guard !batch.isEmpty else { return }
        do {
            try await store.appendEvents(batch)
            if trim { try await store.trimEvents(keeping: configuration.eventLogCapacity) }
        } catch {
            logger.warning("security event log: \(batch.count) events not written: \(error)")
        }
    }

    // MARK: Observations

    /// What one answered request says about its client (called by `MyelinApp.respond` for
    /// every request; returns at once unless the request is a login, an admin action, a
    /// 429, or malformed).
    func observe(_ context: RequestContext, status: Int, errcode: MatrixError.Code?) {
        let method = context.request.method
        let path = context.request.head.path
        let isLogin = method == .post && path.hasPrefix("/_matrix/client/") && path.hasSuffix("/login")
        let isAdminWrite = method != .get && method != .head && method != .options && status < 400 && Self.isAdminPath(path)
        let malformed = errcode == .notJSON || errcode == .badJSON
        guard isLogin || isAdminWrite || status == 429 || malformed else { return }
        let ip = context.clientAddress
        let now = Clock.nowMilliseconds()
        if status == 429 {
            let first = reputation.note(ip, .rateLimited, now: now)
            // One event per address per ten seconds: a flood is one line, not thousands.
            if first { record("rate_limited", userID: nil, ip: ip, details: ["path": .string(String(path.prefix(200)))]) }
        } else if malformed {
            reputation.note(ip, .malformed, now: now)
        }
        if isLogin {
            if status == 200 {
                reputation.note(ip, .login, now: now)
            } else if status == 403 || status == 401 {
                reputation.note(ip, .failedLogin, now: now)
                record("login_failed", userID: Self.loginUser(context.request.body), ip: ip, details: [:])
            }
        }
        if isAdminWrite {
            let pathText = String(path.prefix(300))
            let methodText = method.description
            Task { [weak self] in
                let user = try? await context.requireUser().userID.rawValue
                self?.record("admin_action", userID: user, ip: ip, details: ["method": .string(methodText), "path": .string(pathText)])
            }
        }
        considerAutoBlock(ip, now: now)
    }

    /// A request the transport refused as malformed (loop thread: no waiting here).
    func observeMalformed(address: String) {
        guard !address.isEmpty else { return }
        let now = Clock.nowMilliseconds()
        reputation.note(address, .malformed, now: now)
        considerAutoBlock(address, now: now)
    }

    private func considerAutoBlock(_ ip: String, now: Int64) {
        let threshold = configuration.autoBlockScore
        guard threshold > 0, !trustedProxies.contains(ip), reputation.score(ip, now: now) >= threshold,
              let address = IPAddress(ip), !addressFilter.current.blocks(address, nowMs: now),
              reputation.claimAutoBlock(ip) else { return }
        let range = IPRange(network: address.embeddedIPv4 ?? address, prefixLength: (address.embeddedIPv4 ?? address).bytes.count * 8)
        let until = now + Int64(configuration.autoBlockDurationSeconds) * 1000
        Task { [weak self] in
            guard let self else { return }
            do {
                _ = try await self.block(range, reason: "reputation score reached \(threshold)", by: nil, expiresAtMs: until, auto: true)
            } catch {
                self.logger.warning("auto-block of \(ip) failed: \(error)")
            }
        }
    }

    static func isAdminPath(_ path: Substring) -> Bool {
        if path.hasPrefix("/_synapse/admin/") || path.hasPrefix("/_myelin/admin/api/") { return true }
        guard path.hasPrefix("/_matrix/client/") else { return false }
        let parts = path.split(separator: "/", maxSplits: 4)
        return parts.count >= 4 && parts[3] == "admin"
    }

    /// The user a login body names, if it names one (for the event log).
    static func loginUser(_ body: RequestBody) -> String? {
        guard case .buffered(let bytes) = body, let object = try? JSON.parse(bytes).objectValue else { return nil }
        let user = object["identifier"]?["user"]?.stringValue ?? object["user"]?.stringValue
        return user.map { String($0.prefix(255)) }
    }
}

/// A score per client address from its failures, decaying over time (docs/admin.md,
/// "Reputation"): each failed login adds 3 points, each rate-limited request 1, each
/// malformed request (the parser's 400, `M_NOT_JSON`, `M_BAD_JSON`) 2; the sum halves every
/// `halfLifeMs` (`penalty(t) = penalty(t0) * 2^(-(t - t0) / halfLife)`); the score is the
/// penalty rounded, capped at 100. 0 is a clean address. Bounded: past `maxAddresses`, the
/// lowest-scoring entries go first.
final class ReputationTable: Sendable {
    enum Kind { case login, failedLogin, rateLimited, malformed }

    struct Entry: Sendable {
        var penalty: Double = 0
        var updatedMs: Int64 = 0
        var firstSeenMs: Int64 = 0
        var lastSeenMs: Int64 = 0
        var loginAttempts: Int64 = 0
        var failedLogins: Int64 = 0
        var rateLimited: Int64 = 0
        var malformed: Int64 = 0
        var lastRateLimitEventMs: Int64 = Int64.min / 2
        var autoBlocked = false
    }

    static let maxAddresses = 100_000
    let halfLifeMs: Int64
    private let entries = Mutex<[String: Entry]>([:])

    init(halfLifeMs: Int64) { self.halfLifeMs = max(1000, halfLifeMs) }

    /// One spelling per address (IPv4-mapped IPv6 as IPv4), whatever text it came as.
    static func key(_ address: String) -> String {
        guard let parsed = IPAddress(address) else { return String(address.prefix(64)) }
        return AdminSecurity.text(parsed.embeddedIPv4 ?? parsed)
    }

    static func weight(_ kind: Kind) -> Double {
        switch kind {
        case .login: return 0
        case .failedLogin: return 3
        case .rateLimited: return 1
        case .malformed: return 2
        }
    }

    func decayed(_ entry: Entry, now: Int64) -> Double {
        let elapsed = Double(max(0, now - entry.updatedMs))
        return entry.penalty * pow2(-elapsed / Double(halfLifeMs))
    }

    private func pow2(_ x: Double) -> Double {
        // 2^x for x <= 0 (Glibc).
        x < -1000 ? 0 : exp2(x)
    }

    /// Counts one observation; for a rate-limit hit, true if no rate-limit event was logged
    /// for the address in the last ten seconds (and marks one as logged now).
    @discardableResult
    func note(_ address: String, _ kind: Kind, now: Int64) -> Bool {
        let address = Self.key(address)
        return entries.withLock { table in
            if table[address] == nil && table.count >= Self.maxAddresses { evict(&table, now: now) }
            var entry = table[address] ?? Entry(updatedMs: now, firstSeenMs: now)
            entry.penalty = decayed(entry, now: now) + Self.weight(kind)
            entry.updatedMs = now
            entry.lastSeenMs = now
            var first = false
            switch kind {
            case .login: entry.loginAttempts += 1
            case .failedLogin: entry.loginAttempts += 1; entry.failedLogins += 1
            case .malformed: entry.malformed += 1
            case .rateLimited:
                entry.rateLimited += 1
                if now - entry.lastRateLimitEventMs >= 10_000 { entry.lastRateLimitEventMs = now; first = true }
            }
            table[address] = entry
            return first
        }
    }

    func score(_ address: String, now: Int64) -> Int {
        let address = Self.key(address)
        guard let entry = entries.withLock({ $0[address] }) else { return 0 }
        return Self.score(decayed(entry, now: now))
    }

    static func score(_ penalty: Double) -> Int { Int(min(100, penalty.rounded())) }

    func entry(_ address: String) -> Entry? {
        let address = Self.key(address)
        return entries.withLock { $0[address] }
    }

    /// True once per address until its score falls back (so one address is auto-blocked once).
    func claimAutoBlock(_ address: String) -> Bool {
        let address = Self.key(address)
        return entries.withLock { table in
            guard var entry = table[address], !entry.autoBlocked else { return false }
            entry.autoBlocked = true
            table[address] = entry
            return true
        }
    }

    var count: Int { entries.withLock { $0.count } }

    private func evict(_ table: inout [String: Entry], now: Int64) {
        let keep = Self.maxAddresses * 3 / 4
        let ranked = table.map { ($0.key, decayed($0.value, now: now)) }.sorted { $0.1 > $1.1 }
        table = Dictionary(uniqueKeysWithValues: ranked.prefix(keep).map { ($0.0, table[$0.0]!) })
    }
}
