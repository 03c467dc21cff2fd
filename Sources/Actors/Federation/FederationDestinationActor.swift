import Matrix
import Persistence

/// The outbound queue to one remote server (key: its server name), supervised by the
/// `FederationDestinations` registry. A thin shell around `FederationDestinationStateMachine`:
/// one worker task asks the machine for the next step, reads the store (local events of the
/// destination's rooms after its persisted position, queued to-device EDUs), sends one
/// transaction at a time (`PUT /_matrix/federation/v1/send/{txnId}`, spec: "Transactions"),
/// and persists the position only after a 200. Between transactions, and while backing
/// off, it holds its position, the set of its rooms and a bounded EDU queue; nothing else.
/// Woken by `FederationDestinations` when a room publishes a local event.
public actor FederationDestinationActor: RegistryMember {
    public nonisolated let destination: ServerName
    private let shared: FederationDestinations.Shared
    private var machine: FederationDestinationStateMachine
    /// Rooms with joined members of the destination (loaded at activation, grown by wake-ups).
    private var rooms: Set<RoomID>
    private var worker: Task<Void, Never>?
    private var waiter: CheckedContinuation<Void, Never>?
    private var timer: Task<Void, Never>?
    private var closed = false
    /// Transactions answered 200 since activation (tests and diagnostics).
    public private(set) var transactionsSent = 0
    /// Failed transactions since activation (tests and diagnostics).
    public private(set) var transactionsFailed = 0

    init(destination: ServerName, shared: FederationDestinations.Shared, position: Int64, rooms: Set<RoomID>) {
        self.destination = destination
        self.shared = shared
        self.rooms = rooms
        machine = FederationDestinationStateMachine(limits: shared.limits, position: position,
                                                    transactionPrefix: String(currentTimeMillis()))
    }

    /// Builds the actor of `destination` from the store and starts its worker.
    static func activate(_ destination: ServerName, shared: FederationDestinations.Shared) async throws -> FederationDestinationActor {
        let store = shared.database.federationOutbox
        // A destination never sent to starts at the present: its history is what it gets
        // when it joins (send_join), not a replay of every event of its rooms.
        var position = try await store.position(of: destination)
        let hint = shared.startHints.withLock { $0.removeValue(forKey: destination) }
        if position == nil {
            let now = min(hint ?? .max, shared.events.visiblePosition)
            try await store.setPosition(now, of: destination)
            position = now
        }
        var rooms = Set(try await store.rooms(joinedBy: destination))
        if let room = shared.startRooms.withLock({ $0.removeValue(forKey: destination) }) { rooms.insert(room) }
        let actor = FederationDestinationActor(destination: destination, shared: shared, position: position ?? 0, rooms: rooms)
        await actor.start()
        return actor
    }

    private func start() {
        worker = Task { await self.run() }
    }

    // MARK: Inputs

    /// New local events in `room` (it has members of this destination), or to-device EDUs.
    public func wake(room: RoomID? = nil, toDevice: Bool = false) {
        if let room { rooms.insert(room) }
        machine.wake(storedEDUs: toDevice)
        resumeWorker()
    }

    /// Queues an ephemeral EDU (typing, receipt, presence, device list update).
    public func enqueue(_ edu: JSON, key: FederationDestinationStateMachine.EDUKey?) {
        if machine.enqueue(edu, key: key, now: shared.clock.now()) { resumeWorker() }
    }

    /// The destination spoke to us: stop backing off.
    public func heardFrom() {
        machine.heardFrom(now: shared.clock.now())
        resumeWorker()
    }

    /// The persisted position (tests and diagnostics).
    public var position: Int64 { machine.position }
    /// Consecutive failures now (tests and diagnostics).
    public var failures: Int { machine.failures }

    public func deactivate() async {
        closed = true
        resumeWorker()
        await worker?.value
    }

    // MARK: Worker

    private func run() async {
        while !closed {
            let now = shared.clock.now()
            switch machine.step(now: now) {
            case .idle, .inFlight:
                await pause(for: nil)
            case .wait(let until):
                await pause(for: until - now)
            case .read(let after, let storedEDUs):
                await sendNext(after: after, storedEDUs: storedEDUs)
            }
        }
        timer?.cancel()
    }

    private func sendNext(after: Int64, storedEDUs: Bool) async {
        let limits = shared.limits
        let read: FederationDestinationStateMachine.Read
        do {
            let upTo = shared.events.visiblePosition
            let store = shared.database.federationOutbox
            let pdus = try await store.pendingEvents(in: Array(rooms), after: after, upTo: upTo,
                                                     localServer: shared.localServer,
                                                     perRoom: FederationDestinations.catchUpEventsPerRoom,
                                                     limit: limits.maxPDUs + 1)
            let stored = storedEDUs ? try await store.toDevice(for: destination, limit: limits.maxEDUs + 1) : []
            read = .init(pdus: pdus, upTo: upTo, storedEDUs: stored)
        } catch {
            machine.readFailed(now: shared.clock.now(), jitter: shared.jitter())
            return
        }
        let before = machine.position
        guard let transaction = machine.transaction(from: read, now: shared.clock.now()) else {
            if machine.position != before { try? await shared.database.federationOutbox.setPosition(machine.position, of: destination) }
            return
        }
        if await deliver(transaction) {
            // Persisted before the machine moves on: a crash now resends, never skips.
            do {
                try await shared.database.federationOutbox.setPosition(transaction.newPosition, of: destination)
                try await shared.database.federationOutbox.deleteToDevice(transaction.storedEDUIDs)
            } catch {
                machine.failed(now: shared.clock.now(), jitter: shared.jitter())
                return
            }
            transactionsSent += 1
            machine.succeeded(now: shared.clock.now())
        } else {
            transactionsFailed += 1
            machine.failed(now: shared.clock.now(), jitter: shared.jitter())
        }
    }

    /// Sends one transaction; true on a 200 (per-PDU errors in the answer are the remote's
    /// verdicts on those events, not a reason to resend: spec "PUT /send/{txnId}").
    private func deliver(_ transaction: FederationDestinationStateMachine.Transaction) async -> Bool {
        guard let requester = shared.requester() else { return false }
        var pdus: [JSON] = []
        pdus.reserveCapacity(transaction.pdus.count)
        for bytes in transaction.pdus {
            if let pdu = try? JSON.parse(bytes) { pdus.append(pdu) }
        }
        let body: JSON = [
            "origin": .string(shared.localServer.rawValue),
            "origin_server_ts": .int(currentTimeMillis()),
            "pdus": .array(pdus),
            "edus": .array(transaction.edus),
        ]
        let path = "/_matrix/federation/v1/send/" + FederationDestinations.percentEncoded(transaction.id)
        do {
            let reply = try await requester.request(destination, method: "PUT", path: path, body: body)
            return reply.status == 200
        } catch {
            return false
        }
    }

    /// Waits for a wake-up, or `duration` (nil: no deadline).
    private func pause(for duration: Duration?) async {
        if closed { return }
        await withCheckedContinuation { continuation in
            waiter = continuation
            if let duration {
                timer = Task { [weak self] in
                    try? await Task.sleep(for: max(duration, .milliseconds(1)))
                    await self?.resumeWorker()
                }
            }
        }
    }

    private func resumeWorker() {
        timer?.cancel()
        timer = nil
        waiter?.resume()
        waiter = nil
    }
}
