import Actors
import Logging
import Matrix
import Persistence
import Synchronization

/// Push rules applied once per event per local recipient, off the room actors: each room
/// actor hands its published batch here (`PushPipelineHook`, a bounded in-memory queue),
/// one worker task evaluates the batch for the room's local joined members (and the
/// invitee of an invite), records the notifying outcomes in one transaction
/// (`PushActionStore`, read by `GET /notifications`) and gives them to the users' pushers
/// (`PusherDeliveries`). Built by `RoomService`; started and stopped by `MyelinServer`.
final class PushPipeline: PushPipelineHook, Sendable {
    /// One room batch as the room published it, with the state after it.
    struct Batch: Sendable {
        var roomID: RoomID
        var events: [PersistedEvent]
        var state: AuthState
        var members: PushMembers
    }

    private struct Queue {
        var batches: [Batch] = []
        var events = 0
        var dropped = 0
    }

    /// Events waiting at most; past it batches are dropped (and logged): a burst must not
    /// grow memory without bound, and notifications are best effort.
    static let maxQueuedEvents = 100_000
    /// Outcomes recorded per transaction at most.
    static let actionsPerTransaction = 2_000

    let database: Database
    let localServer: ServerName
    let configuration: Configuration.Push
    let deliveries: PusherDeliveries
    private let queue = Mutex(Queue())
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let worker = Mutex<Task<Void, Never>?>(nil)
    /// The user's effective push rules (the push rules service once the App connects it):
    /// from its cache without suspending, else loaded.
    /// A class, not a tuple of closures: a `Mutex` holds its value in the generic form, and
    /// each `withLock` that hands a function value out as `inout` converts it and writes the
    /// converted one back, a thunk around the last: after a million reads every call went
    /// through a million thunks (the CPU of the push pipeline grew all run long).
    private final class RulesSource: Sendable {
        let cached: @Sendable (UserID) -> PushRuleSet?
        let load: @Sendable (UserID) async throws -> PushRuleSet

        init(cached: @escaping @Sendable (UserID) -> PushRuleSet?, load: @escaping @Sendable (UserID) async throws -> PushRuleSet) {
            self.cached = cached
            self.load = load
        }
    }

    private let rulesSource = Mutex<RulesSource?>(nil)
    private let logger = Logger(label: "myelin.push")
    /// Batches processed (tests and the bench wait on it).
    let processedEvents = Atomic<Int>(0)

    init(database: Database, localServer: ServerName, configuration: Configuration.Push) {
        self.database = database
        self.localServer = localServer
        self.configuration = configuration
        deliveries = PusherDeliveries(database: database, configuration: configuration)
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Where each user's rules come from.
    func connectRules(cached: @escaping @Sendable (UserID) -> PushRuleSet?,
                      load: @escaping @Sendable (UserID) async throws -> PushRuleSet) {
        rulesSource.withLock { $0 = RulesSource(cached: cached, load: load) }
    }

    /// The user's effective push rules (server defaults when nothing is connected).
    func rules(for user: UserID) async -> PushRuleSet {
        guard let source = rulesSource.withLock({ $0 }) else { return PushRuleSet.serverDefault(for: user) }
        if let rules = source.cached(user) { return rules }
        if let rules = try? await source.load(user) { return rules }
        return PushRuleSet.serverDefault(for: user)
    }

    // MARK: PushPipelineHook (on the room actor)

    func published(_ roomID: RoomID, events: [PersistedEvent], state: AuthState, members: PushMembers) {
        let accepted = queue.withLock { queue -> Bool in
            guard queue.events + events.count <= Self.maxQueuedEvents else {
                queue.dropped += events.count
                return false
            }
            queue.batches.append(Batch(roomID: roomID, events: events, state: state, members: members))
            queue.events += events.count
            return true
        }
        if accepted { wake.yield() }
    }

    // MARK: worker

    /// Starts the worker and the daily retention sweep.
    func start() async {
        await deliveries.load()
        let task = Task { [self] in
            var lastSweep: Int64 = 0
            for await _ in wakes {
                await drain()
                let now = Clock.nowMilliseconds()
                if now - lastSweep > 3_600_000 {
                    lastSweep = now
                    await sweepRetention(now: now)
                }
            }
        }
        worker.withLock { $0 = task }
    }

    func stop() {
        wake.finish()
        worker.withLock { $0?.cancel() }
        deliveries.shutdown()
    }

    func sweepRetention(now: Int64) async {
        let cutoff = now - Int64(configuration.notificationRetentionDays) * 86_400_000
        do { try await database.pushActions.deleteOlder(than: cutoff) } catch {
            logger.warning("push actions retention sweep failed: \(error)")
        }
    }

    private func drain() async {
        while true {
            let (batches, dropped) = queue.withLock { queue -> ([Batch], Int) in
                defer { queue = Queue() }
                return (queue.batches, queue.dropped)
            }
            if dropped > 0 { logger.warning("push pipeline queue full: \(dropped) events not evaluated") }
            if batches.isEmpty { return }
            await process(batches)
        }
    }

    /// What one pull decided: the outcomes to record and the pushes to hand over after them.
    private struct Outcomes {
        var actions: [PushActionStore.Action] = []
        var pushes: [(UserID, PendingPush)] = []
        var events = 0
    }

    /// Every batch of one pull evaluated, their outcomes recorded in one transaction, then
    /// handed to the pushers. One transaction per pull, not per batch: each recipient's row
    /// goes into the page of their part of the table, so a page a recipient's rows share is
    /// written once for all the events a pull holds (while a transaction runs, the next
    /// batches queue up and go together: the busier the rooms, the fewer writes per event).
    /// Each user's rules are read once per pull: every batch pulled was published before the
    /// pull, so a rule changed before an event's send applies to it.
    func process(_ batches: [Batch]) async {
        let started = Clock.monotonicNanoseconds()
        var rules: [UserID: PushRuleSet] = [:]
        var outcomes = Outcomes()
        for batch in batches { await evaluate(batch, rules: &rules, into: &outcomes) }
        let evaluated = Clock.monotonicNanoseconds()
        // Bounded transactions: the writer is shared with the sends, which wait behind one.
        for start in stride(from: 0, to: outcomes.actions.count, by: Self.actionsPerTransaction) {
            let chunk = outcomes.actions[start..<min(start + Self.actionsPerTransaction, outcomes.actions.count)]
            do {
                try await database.pushActions.record(Array(chunk))
            } catch {
                logger.warning("recording \(chunk.count) push actions of \(batches.count) room batches failed: \(error)")
            }
        }
        processedEvents.add(outcomes.events, ordering: .relaxed)
        // After the record: the badge count a gateway receives includes this event.
        let recorded = Clock.monotonicNanoseconds()
        for (user, push) in outcomes.pushes { await deliveries.enqueue(push, for: user) }
        let done = Clock.monotonicNanoseconds()
        if done - started > 250_000_000 {
            logger.warning("slow push pull: \(batches.count) room batches, \(outcomes.events) events, \(outcomes.actions.count) outcomes, evaluation \((evaluated - started) / 1_000_000) ms, record \((recorded - evaluated) / 1_000_000) ms, hand-off \((done - recorded) / 1_000_000) ms")
        }
    }

    /// `batch` evaluated with `ruleSets` as a cache of the users' rules (filled as needed).
    private func evaluate(_ batch: Batch, rules ruleSets: inout [UserID: PushRuleSet], into outcomes: inout Outcomes) async {
        let state = batch.state
        let recipients = batch.members.local
        let joined = batch.members.joined
        var power: PowerLevels?
        var encodedActions: (list: [PushAction], text: String)?
        let now = Clock.nowMilliseconds()
        outcomes.events += batch.events.count
        for event in batch.events {
            guard let json = try? JSON.parse(event.clientBytes.isEmpty ? event.bytes : event.clientBytes) else { continue }
            let pushEvent = PushEvent(json)
            var targets = recipients
            // The invitee is not joined yet; `.m.rule.invite_for_me` is for them.
            if event.type == EventType.roomMember, json["content"]?["membership"]?.stringValue == MembershipState.invite.rawValue,
               let key = event.stateKey, let invitee = try? UserID(parsing: key), invitee.serverName == localServer,
               !targets.contains(where: { $0.user == invitee }) {
                targets.append(PushMembers.Member(user: invitee, displayName: nil))
            }
            let relation = json["content"]?["m.relates_to"]
            let thread = relation?["rel_type"]?.stringValue == RelationType.thread ? relation?["event_id"]?.stringValue : nil
            // What a push says of the event, built for its first recipient with a pusher.
            var template: PendingPush?
            for recipient in targets where recipient.user.rawValue != event.sender {
                let rules: PushRuleSet
                if let known = ruleSets[recipient.user] {
                    rules = known
                } else if let cached = rulesSource.withLock({ $0 })?.cached(recipient.user) {
                    rules = cached
                    ruleSets[recipient.user] = cached
                } else {
                    rules = await self.rules(for: recipient.user)
                    ruleSets[recipient.user] = rules
                }
                var context = PushContext(displayName: recipient.displayName, memberCount: joined)
                var outcome = PushEvaluator.evaluate(rules, pushEvent, context)
                if case .needsPowerLevels = outcome {
                    if power == nil, let create = state[.create] {
                        power = PowerLevels(content: state[.powerLevels]?.content, roomVersion: create.roomVersion, create: create)
                    }
                    let levels = power
                    let sender = event.sender
                    context.senderNotificationPermission = { levels?.canNotify(sender, key: $0) ?? false }
                    outcome = PushEvaluator.evaluate(rules, pushEvent, context)
                }
                let list = outcome.actions
                guard list.notifies else { continue }
                // Most recipients of an event get the same actions: encoded once.
                if encodedActions?.list != list { encodedActions = (list, Self.encode(list).encodedString) }
                outcomes.actions.append(PushActionStore.Action(
                    userID: recipient.user.rawValue, roomID: batch.roomID.rawValue, eventID: event.eventID.rawValue,
                    streamOrdering: event.streamOrdering, actions: encodedActions!.text,
                    highlight: list.highlights, threadID: thread, ts: now))
                if deliveries.hasPushers(recipient.user) {
                    let push = template ?? PendingPush(event: event, json: json, roomID: batch.roomID, state: state,
                                                       includeContent: configuration.includeContent, queuedAt: now)
                    template = push
                    outcomes.pushes.append((recipient.user, push.addressed(to: recipient.user, actions: list)))
                }
            }
        }
    }

    /// Actions as the client-server API writes them.
    static func encode(_ actions: [PushAction]) -> JSON {
        .array(actions.map { action in
            switch action {
            case .notify: return .string("notify")
            case .setTweak(let name, let value):
                var tweak: [String: JSON] = ["set_tweak": .string(name)]
                if let value { tweak["value"] = value }
                return .object(tweak)
            }
        })
    }
}
