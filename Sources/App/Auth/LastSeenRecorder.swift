import Logging
import Persistence
import Synchronization

/// Devices' `last_seen_ts`/`last_seen_ip`, kept in memory per request and written to the
/// store in one batch every `interval` (never a database write per request). Reads of the
/// devices API overlay the pending values, so clients see them at once.
///
/// This belongs to the SessionActor (one per logged-in device) once the actor runtime lands;
/// it is a component of its own so that it can move there unchanged: `record` becomes a
/// SessionActor method and the flush its periodic work. Owned by `Accounts`.
final class LastSeenRecorder: Sendable {
    struct Seen: Sendable {
        var ts: Int64
        var ip: String
        var userAgent: String?
    }

    struct Key: Hashable, Sendable {
        let userID: String
        let deviceID: String
    }

    static let intervalSeconds = 5
    private let pending = Mutex<[Key: Seen]>([:])
    private let store: AccountStore
    private let logger: Logger
    private let flusher = Mutex<Task<Void, Never>?>(nil)

    init(store: AccountStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func record(userID: String, deviceID: String, ts: Int64, ip: String, userAgent: String?) {
        let startFlusher = pending.withLock { pending in
            let wasEmpty = pending.isEmpty
            let key = Key(userID: userID, deviceID: deviceID)
            pending[key] = Seen(ts: ts, ip: ip, userAgent: userAgent ?? pending[key]?.userAgent)
            return wasEmpty
        }
        if startFlusher { scheduleFlush() }
    }

    /// The pending value of a device, if newer than what the store has.
    func pendingSeen(userID: String, deviceID: String) -> Seen? {
        pending.withLock { $0[Key(userID: userID, deviceID: deviceID)] }
    }

    /// Forgets a device's pending value (the device was deleted).
    func forget(userID: String, deviceID: String? = nil) {
        pending.withLock { pending in
            pending = pending.filter { key, _ in !(key.userID == userID && (deviceID == nil || key.deviceID == deviceID)) }
        }
    }

    private func scheduleFlush() {
        flusher.withLock { task in
            guard task == nil else { return }
            task = Task.detached { [weak self] in
                try? await Task.sleep(for: .seconds(Self.intervalSeconds))
                guard let self else { return }
                self.flusher.withLock { $0 = nil }
                await self.flush()
            }
        }
    }

    /// Writes every pending value now (also called at shutdown, before the store closes).
    func flush() async {
        let batch = pending.withLock { pending in
            let batch = pending
            pending.removeAll()
            return batch
        }
        guard !batch.isEmpty else { return }
        do {
            try await store.recordLastSeen(batch.map { ($0.key.userID, $0.key.deviceID, $0.value.ts, $0.value.ip, $0.value.userAgent) })
        } catch {
            logger.warning("last-seen flush of \(batch.count) devices failed: \(error)")
        }
    }
}
