import Logging
import Matrix
import Persistence
import Synchronization

/// Collects the last-seen time, IP and user agent of devices from every `SessionActor` and
/// writes them in one transaction per flush (`DeviceStore.recordLastSeen`), so that a busy
/// server writes each active device at most once per interval instead of once per request.
/// Owned by `Sessions` (one per process), whose upkeep runs `runFlushes(every:)` and flushes
/// once more at shutdown; the devices API overlays `pending(_:_:)`, so clients see a
/// sighting at once. A flush's batch stays visible to `pending` while it is written and until
/// the next flush: a reader that read the store just before the write committed still finds
/// it (a slow commit on a loaded machine once showed a device's registration time again).
/// Losing an unflushed entry in a crash only makes a "last seen" a little older.
public final class LastSeenBatcher: Sendable {
    /// One device's newest sighting.
    public struct Sighting: Sendable, Equatable {
        public var timestamp: Int64
        public var ip: String
        public var userAgent: String?
        public init(timestamp: Int64, ip: String, userAgent: String?) {
            self.timestamp = timestamp
            self.ip = ip
            self.userAgent = userAgent
        }
    }

    private let store: DeviceStore
    private let logger: Logger
    /// Keyed by the raw ids (see `RawDeviceKey`): this runs on every request.
    private let pending = Mutex<[RawDeviceKey: Sighting]>([:])
    /// The batch being written, then the last one written (replaced by the next flush).
    private let flushing = Mutex<[RawDeviceKey: Sighting]>([:])
    private let flushed = Atomic<Int>(0)
    /// Signalled when a sighting arrives with nothing pending: the flush loop then waits
    /// one interval and writes, so a sighting is written at most one interval later.
    private let arrivals: AsyncStream<Void>
    private let arrival: AsyncStream<Void>.Continuation

    public init(store: DeviceStore, logger: Logger = Logger(label: "myelin.sessions")) {
        self.store = store
        self.logger = logger
        (arrivals, arrival) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Records a sighting; only the newest per device is kept until the next flush. A
    /// request without a user agent keeps the one seen before (the store does the same).
    public func record(_ key: SessionKey, _ sighting: Sighting) {
        let key = RawDeviceKey(key)
        let first = pending.withLock { pending in
            let first = pending.isEmpty
            Self.merge(sighting, into: &pending[key])  // one hash lookup
            return first
        }
        if first { arrival.yield() }
    }

    private static func merge(_ sighting: Sighting, into entry: inout Sighting?) {
        guard let existing = entry else {
            entry = sighting
            return
        }
        if existing.timestamp > sighting.timestamp { return }
        entry = Sighting(timestamp: sighting.timestamp, ip: sighting.ip, userAgent: sighting.userAgent ?? existing.userAgent)
    }

    /// The newest sighting of a device not yet written, being written, or written by the
    /// last flush, if any. Callers overlay it on what the store says when it is newer.
    public func pending(_ key: SessionKey) -> Sighting? {
        let raw = RawDeviceKey(key)
        // `pending` first: a flush copies its batch into `flushing` before it leaves `pending`,
        // so a sighting that moved after this read is found in `flushing` by the next one.
        var newest = pending.withLock { $0[raw] }
        if let recent = flushing.withLock({ $0[raw] }) {
            Self.merge(recent, into: &newest)
            // As the store would have it: a newer sighting without a user agent keeps the one written.
            if newest?.userAgent == nil { newest?.userAgent = recent.userAgent }
        }
        return newest
    }

    /// Forgets the pending sightings of a deleted device, or with `device` nil of every
    /// device of the user.
    public func forget(_ user: UserID, device: DeviceID? = nil) {
        let matches = { (key: RawDeviceKey) in key.user == user.rawValue && (device == nil || key.device == device?.rawValue) }
        pending.withLock { pending in pending = pending.filter { key, _ in !matches(key) } }
        flushing.withLock { flushing in flushing = flushing.filter { key, _ in !matches(key) } }
    }

    /// Devices waiting for the next flush.
    public var pendingCount: Int { pending.withLock { $0.count } }

    /// Rows written by all flushes so far.
    public var rowsWritten: Int { flushed.load(ordering: .relaxed) }

    /// Writes every pending sighting in one transaction. On failure they are put back
    /// (unless newer ones arrived) and the error is rethrown.
    public func flush() async throws {
        // Published as the flushing batch before it leaves `pending` (see `pending(_:)`).
        let batch = pending.withLock { pending in
            defer { pending = [:] }
            if !pending.isEmpty { flushing.withLock { $0 = pending } }
            return pending
        }
        guard !batch.isEmpty else { return }
        do {
            try await store.recordLastSeen(batch.map { key, sighting in
                (key.user, key.device, sighting.timestamp, sighting.ip, sighting.userAgent)
            })
            flushed.add(batch.count, ordering: .relaxed)
        } catch {
            pending.withLock { pending in
                for (key, sighting) in batch { Self.merge(sighting, into: &pending[key]) }
            }
            throw error
        }
    }

    /// Until the calling task is cancelled (then flushes once more): whenever sightings
    /// are pending, waits `interval` and flushes, so that each is written at most one
    /// interval after it was recorded and an idle server writes nothing. A failed flush is
    /// logged; its sightings wait for the next one.
    public func runFlushes(every interval: Duration) async {
        for await _ in arrivals {
            do { try await Task.sleep(for: interval) } catch { break }
            await flushLogged()
            if pendingCount > 0 { arrival.yield() }  // a failed flush, or sightings since
        }
        await flushLogged()
    }

    /// `flush`, logging a failure instead of throwing it (the sightings stay pending).
    public func flushLogged() async {
        do {
            try await flush()
        } catch {
            logger.warning("last-seen flush of \(pendingCount) devices failed: \(error)")
        }
    }
}
