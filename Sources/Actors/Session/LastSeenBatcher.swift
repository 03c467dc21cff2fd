import Matrix
import Persistence
import Synchronization

/// Collects the last-seen time, IP and user agent of devices from every `SessionActor` and
/// writes them in one transaction per flush, so that a busy server writes each active
/// device at most once per interval instead of once per request. Owned by the App (one per
/// process), which runs `runFlushes(every:)`; losing an unflushed entry in a crash only
/// makes a "last seen" a little older.
public final class LastSeenBatcher: Sendable {
    /// One device's newest sighting.
    public struct Sighting: Sendable, Equatable {
        public var timestamp: Int64
        public var ip: String?
        public var userAgent: String?
        public init(timestamp: Int64, ip: String?, userAgent: String?) {
            self.timestamp = timestamp
            self.ip = ip
            self.userAgent = userAgent
        }
    }

    struct DeviceKey: Hashable, Sendable {
        var user: UserID
        var device: DeviceID
    }

    private let database: Database
    private let pending = Mutex<[DeviceKey: Sighting]>([:])
    private let flushed = Atomic<Int>(0)

    public init(database: Database) {
        self.database = database
    }

    /// Records a sighting; only the newest per device is kept until the next flush.
    public func record(_ user: UserID, _ device: DeviceID, _ sighting: Sighting) {
        pending.withLock { pending in
            let key = DeviceKey(user: user, device: device)
            if let existing = pending[key], existing.timestamp > sighting.timestamp { return }
            pending[key] = sighting
        }
    }

    /// Devices waiting for the next flush.
    public var pendingCount: Int { pending.withLock { $0.count } }

    /// Rows written by all flushes so far.
    public var rowsWritten: Int { flushed.load(ordering: .relaxed) }

    /// Writes every pending sighting in one transaction. On failure they are put back
    /// (unless newer ones arrived) and the error is rethrown.
    public func flush() async throws {
        let batch = pending.withLock { pending in
            defer { pending = [:] }
            return pending
        }
        guard !batch.isEmpty else { return }
        let rows = batch.map { ($0.key.user.rawValue, $0.key.device.rawValue, $0.value) }
        do {
            try await database.write { db in
                for (user, device, sighting) in rows {
                    try db.execute("""
                        UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?
                        WHERE user_id = ? AND device_id = ? AND (last_seen_ts IS NULL OR last_seen_ts <= ?)
                        """, .int(sighting.timestamp), .text(sighting.ip), .text(sighting.userAgent),
                        .text(user), .text(device), .int(sighting.timestamp))
                }
            }
            flushed.add(rows.count, ordering: .relaxed)
        } catch {
            for (key, sighting) in batch { record(key.user, key.device, sighting) }
            throw error
        }
    }

    /// Flushes every `interval` until the calling task is cancelled, then once more.
    public func runFlushes(every interval: Duration) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { break }
            try? await flush()
        }
        try? await flush()
    }
}
