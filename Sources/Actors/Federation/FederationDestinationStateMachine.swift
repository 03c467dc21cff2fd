import Matrix

/// The decisions of one federation destination, as a value with no I/O and an injected
/// clock (`now` is passed in; jitter is passed in): what to send next, when, and what to
/// remember after a transaction succeeded or failed. `FederationDestinationActor` is the
/// shell that reads the store, sends, and reports back; tests drive this type directly.
///
/// What it holds: the persisted position (every local PDU of this destination's rooms at or
/// below it was delivered), whether PDUs may be waiting after it, the in-memory EDU queue
/// (coalesced, bounded, dropped when stale) and the backoff state. PDUs themselves are never
/// queued here: the store is the outbox, and the shell reads at most one transaction's worth
/// after the position. At most one transaction is in flight (spec: "Transactions": a server
/// sends one transaction at a time to a destination; Synapse `PerDestinationQueue`).
public struct FederationDestinationStateMachine: Sendable {
    /// Limits of one destination (spec: "Transactions": at most 50 PDUs and 100 EDUs).
    public struct Limits: Sendable, Equatable {
        public var maxPDUs = 50
        public var maxEDUs = 100
        /// The first delay after a failure; doubled at each further failure.
        public var backoffInitial: Duration
        /// No delay exceeds this.
        public var backoffMax: Duration
        /// EDUs held while waiting to send, at most (new ones beyond are dropped).
        public var maxQueuedEDUs = 1_000
        /// A typing notification older than this is not worth sending (the client-server
        /// default typing timeout).
        public var typingLifetime: Duration = .seconds(30)
        /// A presence update older than this is superseded by the remote's own expiry.
        public var presenceLifetime: Duration = .seconds(60)

        public init(backoffInitial: Duration = .seconds(1), backoffMax: Duration = .seconds(3_600)) {
            self.backoffInitial = max(backoffInitial, .milliseconds(1))
            self.backoffMax = max(backoffMax, self.backoffInitial)
        }
    }

    /// What an EDU replaces when a newer one with the same key is queued.
    public enum EDUKey: Hashable, Sendable {
        /// `m.typing` of one user in one room.
        case typing(room: String, user: String)
        /// `m.presence` of one user.
        case presence(user: String)
        /// `m.receipt` of one user, type and thread in one room.
        case receipt(room: String, type: String, user: String, thread: String)
        /// Never coalesced (device list updates, ...).
        case unique(UInt64)
    }

    /// An EDU waiting to be sent.
    public struct QueuedEDU: Sendable, Equatable {
        public var key: EDUKey
        /// Distinguishes a replaced entry from its replacement.
        public var sequence: UInt64
        public var edu: JSON
        /// After this instant (the machine's clock) it is dropped unsent; nil: never stale.
        public var expires: Duration?
    }

    /// One transaction as the shell sends it.
    public struct Transaction: Sendable, Equatable {
        public var id: String
        public var pdus: [[UInt8]]
        /// The in-memory EDUs followed by the stored ones (to-device), at most `maxEDUs`.
        public var edus: [JSON]
        /// The queued EDUs included, by sequence (removed from the queue after a 200).
        public var queuedSequences: [UInt64]
        /// Stored EDUs included (the shell deletes them after a 200), by their store id.
        public var storedEDUIDs: [Int64]
        /// The position persisted after a 200.
        public var newPosition: Int64
        /// Whether more PDUs may wait after `newPosition` (the read was cut at the limit).
        public var morePDUs: Bool
        /// Whether stored EDUs were cut at the limit.
        public var moreStoredEDUs: Bool
    }

    /// What the shell reads from the store for the next transaction.
    public struct Read: Sendable, Equatable {
        /// PDUs after the position, oldest first, with their positions, at most `maxPDUs + 1`
        /// (one more tells that the read was cut).
        public var pdus: [(position: Int64, bytes: [UInt8])]
        /// The position the read covered (the visible position of the room-events stream
        /// when it started): nothing of this destination's rooms is left up to it beyond
        /// `pdus`.
        public var upTo: Int64
        /// Stored EDUs (to-device) by id, oldest first, at most `maxEDUs + 1`.
        public var storedEDUs: [(id: Int64, edu: JSON)]

        public init(pdus: [(position: Int64, bytes: [UInt8])], upTo: Int64, storedEDUs: [(id: Int64, edu: JSON)] = []) {
            self.pdus = pdus
            self.upTo = upTo
            self.storedEDUs = storedEDUs
        }

        public static func == (a: Read, b: Read) -> Bool {
            a.upTo == b.upTo && a.pdus.map(\.position) == b.pdus.map(\.position)
                && a.storedEDUs.map(\.id) == b.storedEDUs.map(\.id)
        }
    }

    /// What the shell does next.
    public enum Step: Sendable, Equatable {
        /// Nothing to send; wait for a wake-up.
        case idle
        /// A transaction is in flight; its result will come.
        case inFlight
        /// Backing off until this instant (retry then if anything is pending).
        case wait(until: Duration)
        /// Read the store after `position` (PDUs and, if `storedEDUs`, to-device EDUs),
        /// then call `transaction(from:now:)`.
        case read(after: Int64, storedEDUs: Bool)
    }

    public let limits: Limits
    /// Persisted: every local PDU of this destination's rooms at or below it was delivered.
    public private(set) var position: Int64
    /// PDUs may wait after `position` (a wake-up came, or the last read was cut).
    public private(set) var pdusPending: Bool
    /// Stored EDUs (to-device) may wait.
    public private(set) var storedEDUsPending: Bool
    public private(set) var queue: [QueuedEDU] = []
    /// Consecutive failed transactions.
    public private(set) var failures = 0
    /// No transaction before this instant.
    public private(set) var retryAt: Duration?
    public private(set) var inFlight: Transaction?
    private var reading = false
    private var nextUnique: UInt64 = 0
    private var nextTransaction: UInt64 = 0
    /// Makes transaction ids unique across restarts (the shell passes the start time).
    private let transactionPrefix: String

    /// - Parameters:
    ///   - position: the persisted position (0 for a destination never sent to).
    ///   - transactionPrefix: unique per activation (e.g. the wall-clock milliseconds).
    public init(limits: Limits, position: Int64, transactionPrefix: String) {
        self.limits = limits
        self.position = position
        self.transactionPrefix = transactionPrefix
        // After an activation the store may hold anything after the position: look once.
        pdusPending = true
        storedEDUsPending = true
    }

    // MARK: Inputs

    /// New local events (or to-device messages) exist for this destination. A wake-up
    /// during a read or a flight is kept for the next read (the read may have started
    /// before the event became visible).
    public mutating func wake(storedEDUs: Bool = false) {
        pdusPending = true
        if storedEDUs { storedEDUsPending = true }
    }

    /// Queues an EDU, replacing a queued one with the same key (typing, presence and
    /// receipts are coalesced). Dropped while backing off (the destination holds only its
    /// position then) and when the queue is full. Returns whether it was queued.
    @discardableResult
    public mutating func enqueue(_ edu: JSON, key: EDUKey?, now: Duration) -> Bool {
        if let retryAt, now < retryAt { return false }
        let lifetime: Duration?
        switch key {
        case .typing: lifetime = limits.typingLifetime
        case .presence: lifetime = limits.presenceLifetime
        default: lifetime = nil
        }
        let resolvedKey: EDUKey
        if let key {
            resolvedKey = key
        } else {
            nextUnique += 1
            resolvedKey = .unique(nextUnique)
        }
        nextUnique += 1
        let entry = QueuedEDU(key: resolvedKey, sequence: nextUnique, edu: edu, expires: lifetime.map { now + $0 })
        if let index = queue.firstIndex(where: { $0.key == resolvedKey }) {
            // The newer one goes to the end: its order relative to other EDUs is its own.
            queue.remove(at: index)
            queue.append(entry)
            return true
        }
        guard queue.count < limits.maxQueuedEDUs else { return false }
        queue.append(entry)
        return true
    }

    /// The remote spoke to us: it is up, so stop backing off (Synapse resets its retry
    /// timings when a destination contacts it).
    public mutating func heardFrom(now: Duration) {
        guard inFlight == nil else { return }
        retryAt = nil
        failures = 0
    }

    // MARK: Decisions

    /// The next step at `now`.
    public mutating func step(now: Duration) -> Step {
        if inFlight != nil || reading { return .inFlight }
        if let retryAt, now < retryAt { return .wait(until: retryAt) }
        dropStale(now: now)
        if pdusPending || storedEDUsPending {
            reading = true
            let stored = storedEDUsPending
            // Consumed by this read; a wake-up from now on asks for another.
            pdusPending = false
            storedEDUsPending = false
            return .read(after: position, storedEDUs: stored)
        }
        if !queue.isEmpty {
            // Only EDUs: no read needed.
            reading = true
            return .read(after: position, storedEDUs: false)
        }
        return .idle
    }

    /// Builds the transaction from what the shell read (`step` returned `.read`); nil when
    /// there is nothing to send (the position then moves to `read.upTo`, which the shell
    /// persists if it changed).
    public mutating func transaction(from read: Read, now: Duration) -> Transaction? {
        reading = false
        dropStale(now: now)
        let morePDUs = read.pdus.count > limits.maxPDUs
        let pdus = read.pdus.prefix(limits.maxPDUs)
        let newPosition = morePDUs ? (pdus.last?.position ?? position) : max(position, read.upTo)
        let queuedEntries = queue.prefix(limits.maxEDUs)
        let queued = queuedEntries.map(\.edu)
        let storedRoom = limits.maxEDUs - queued.count
        let stored = read.storedEDUs.prefix(storedRoom)
        let moreStored = read.storedEDUs.count > stored.count
        if pdus.isEmpty && queued.isEmpty && stored.isEmpty {
            position = newPosition
            return nil
        }
        nextTransaction += 1
        let transaction = Transaction(id: "\(transactionPrefix)-\(nextTransaction)", pdus: pdus.map(\.bytes),
                                      edus: queued + stored.map(\.edu),
                                      queuedSequences: queuedEntries.map(\.sequence), storedEDUIDs: stored.map(\.id),
                                      newPosition: newPosition, morePDUs: morePDUs, moreStoredEDUs: moreStored)
        inFlight = transaction
        return transaction
    }

    /// The read failed (the store): try again after a backoff step, as for a failed send.
    public mutating func readFailed(now: Duration, jitter: Double) {
        reading = false
        pdusPending = true
        storedEDUsPending = true
        backOff(now: now, jitter: jitter)
    }

    /// The remote answered 200: the position advances, the sent EDUs leave the queue, the
    /// backoff resets.
    public mutating func succeeded(now: Duration) {
        guard let sent = inFlight else { return }
        inFlight = nil
        position = max(position, sent.newPosition)
        // A queued EDU replaced during the flight (newer typing, presence) stays: only the
        // entries sent leave.
        let sentSequences = Set(sent.queuedSequences)
        queue.removeAll { sentSequences.contains($0.sequence) }
        if sent.morePDUs { pdusPending = true }
        if sent.moreStoredEDUs { storedEDUsPending = true }
        failures = 0
        retryAt = nil
    }

    /// The transaction failed (unreachable, timeout, non-200): back off with jitter; the
    /// ephemeral EDUs are dropped (the destination holds only its position), PDUs and
    /// stored EDUs stay in the store and are read again.
    public mutating func failed(now: Duration, jitter: Double) {
        guard inFlight != nil else { return }
        inFlight = nil
        pdusPending = true
        storedEDUsPending = true
        backOff(now: now, jitter: jitter)
    }

    // MARK: Backoff

    /// The delay after the `failures`-th consecutive failure: `initial · 2^(failures-1)`,
    /// capped at `max`, scaled by a jitter factor in [0.75, 1.25) (`jitter` in [0, 1)) and
    /// capped again, so that destinations that failed together do not retry together.
    public static func backoffDelay(failures: Int, jitter: Double, limits: Limits) -> Duration {
        let exponent = min(max(failures - 1, 0), 40)
        let initialMs = Double(limits.backoffInitial.milliseconds)
        let maxMs = Double(limits.backoffMax.milliseconds)
        let base = min(initialMs * Double(UInt64(1) << UInt64(exponent)), maxMs)
        let factor = 0.75 + 0.5 * min(max(jitter, 0), 0.999_999)
        return .milliseconds(Int64(min(base * factor, maxMs)))
    }

    private mutating func backOff(now: Duration, jitter: Double) {
        failures = min(failures + 1, 1_000)
        retryAt = now + Self.backoffDelay(failures: failures, jitter: jitter, limits: limits)
        queue.removeAll()
    }

    private mutating func dropStale(now: Duration) {
        queue.removeAll { entry in entry.expires.map { $0 <= now } ?? false }
    }
}

extension Duration {
    /// Whole milliseconds (truncated).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
