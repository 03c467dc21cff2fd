import Transport
import Actors
import Matrix
import Persistence
import Synchronization

/// Notification and highlight counts per (user, room): each event from someone else after the
/// user's read receipt is put through the user's push rules (`PushEvaluator` with the user's
/// rule set from `app.pushRules`: their own rules and the server defaults, with the room's
/// joined member count and their display name in it); it counts when the actions notify, and
/// as a highlight when they highlight. Kept in memory and advanced with the timeline sync
/// already holds; computed from the store on a miss or after a gap; reset by the user's
/// receipt. Counted events keep the verdict of the rules they were counted with: a rule
/// change applies from the next event on (as Synapse, which stores the actions per event).
final class UnreadCounts: Sendable {
    struct Entry {
        var countedUpTo: Int64
        /// Counts of the main timeline (events in no thread).
        var notify: Int
        var highlight: Int
        /// Counts per thread root, for clients that ask for them apart
        /// (`unread_thread_notifications`); otherwise added to the main counts.
        var threads: [String: Counts] = [:]
        /// The user's display name in the room, lowercased, as last read from its state.
        var displayname: String?
        /// The room's joined members, as last counted from its state (`room_member_count`).
        var memberCount: Int?
    }

    struct Counts: Equatable, Sendable {
        var notify = 0
        var highlight = 0
    }

    /// What sync reports for one room.
    struct RoomCounts: Sendable {
        var main: Counts
        var threads: [String: Counts]

        /// Everything in one figure, for clients that do not split threads.
        var total: Counts {
            threads.values.reduce(main) { Counts(notify: $0.notify + $1.notify, highlight: $0.highlight + $1.highlight) }
        }
    }

    private let entries = Mutex<[Key: Entry]>([:])
    /// Events scanned at most when counting from the store.
    static let maxScan = 1000

    private struct Key: Hashable {
        let user: UserID
        let room: RoomID
    }

    private static func key(_ user: UserID, _ room: RoomID) -> Key { Key(user: user, room: room) }

    /// The user read the room: counts restart from the store at the next sync.
    func invalidate(_ user: UserID, _ room: RoomID) {
        _ = entries.withLock { $0.removeValue(forKey: Self.key(user, room)) }
    }

    func counts(_ app: MyelinApp, user: UserID, roomID: RoomID, actor: () async throws -> RoomActor,
                timeline: [SyncBuilder.TimelineEvent], limited: Bool, upper: Int64) async throws -> RoomCounts {
        let key = Self.key(user, roomID)
        let cached = entries.withLock { $0[key] }
        if let entry = cached, entry.countedUpTo >= upper { return entry.roomCounts }
        let userID = user.rawValue
        let first = timeline.first?.position ?? (upper + 1)
        let advancing = cached.map { !limited || first - 1 <= $0.countedUpTo } ?? false
        // The display name and the member count are kept with the counts until a member
        // event goes by (the user's own for the name); after a gap they are read again.
        let ownMemberChanged = timeline.contains { $0.type == EventType.roomMember && $0.stateKey == userID }
        let membersChanged = ownMemberChanged || timeline.contains { $0.type == EventType.roomMember }
        var displayname = cached?.displayname
        var memberCount = cached?.memberCount
        if !advancing || ownMemberChanged {
            displayname = try await actor().stateEvent(.member(userID))?.content["displayname"]?.stringValue?.lowercased()
        }
        if !advancing || membersChanged || memberCount == nil {
            memberCount = await Self.joinedMembers(try await actor())
        }
        let rules = try await app.pushRules.ruleSet(for: user)
        let matcher = Matcher(user: user, rules: rules, displayname: displayname, memberCount: memberCount, shared: self)
        var entry: Entry
        if let cachedEntry = cached, advancing {
            // Advance with the timeline sync already holds.
            entry = cachedEntry
            entry.displayname = displayname
            entry.memberCount = memberCount
            for event in timeline where event.position > entry.countedUpTo {
                try await count(event.type, event.sender, event.bytes, event.position, matcher, &entry, actor)
            }
        } else {
            // From the store: events after the read receipts (oldest first). An unthreaded
            // receipt reads everything up to it; a threaded one its thread (`main`: the
            // events in no thread).
            let (rows, reads) = try await app.database.receipts.unread(by: user, in: roomID, upTo: upper, limit: Self.maxScan)
            entry = Entry(countedUpTo: 0, notify: 0, highlight: 0, displayname: displayname, memberCount: memberCount)
            for row in rows {
                let thread = matcher.threadRoot(of: row.clientJSON, position: row.streamOrdering) ?? "main"
                if let read = reads[thread], row.streamOrdering <= read { continue }
                try await count(row.type, row.sender, row.clientJSON, row.streamOrdering, matcher, &entry, actor)
            }
        }
        entry.countedUpTo = upper
        let stored = entry
        entries.withLock { entries in
            // Bounded: past the cap every count is recomputed from the store once.
            if entries.count >= Self.maxEntries { entries.removeAll(keepingCapacity: true) }
            entries[key] = stored
        }
        return entry.roomCounts
    }

    static let maxEntries = 200_000

    /// The room's joined members, counted from its current state.
    static func joinedMembers(_ room: RoomActor) async -> Int? {
        guard let state = await room.currentState else { return nil }
        var joined = 0
        for (key, pdu) in state where key.type == EventType.roomMember && pdu.membership == MembershipState.join.rawValue {
            joined += 1
        }
        return joined
    }

    private func count(_ type: String, _ sender: String, _ bytes: [UInt8], _ position: Int64, _ matcher: Matcher,
                       _ entry: inout Entry, _ actor: () async throws -> RoomActor) async throws {
        guard sender != matcher.user || type == EventType.roomMessage || type == EventType.roomEncrypted else { return }
        let thread = matcher.threadRoot(of: bytes, position: position)
        // The user's own message means they read the room, or the thread it is in (clients
        // send a receipt with it).
        if sender == matcher.user && (type == EventType.roomMessage || type == EventType.roomEncrypted) {
            if let thread {
                entry.threads[thread] = nil
            } else {
                entry.notify = 0
                entry.highlight = 0
                entry.threads = [:]
            }
            return
        }
        var counts = Counts()
        switch matcher.evaluate(type: type, sender: sender, bytes: bytes, eventPosition: position) {
        case .none: return
        case .notify: counts.notify = 1
        case .highlight: counts = Counts(notify: 1, highlight: 1)
        case .roomMention:
            // The rules need the sender's power to notify: read only now (rare).
            let room = try await actor()
            var power: PowerLevels?
            if let version = await room.version {
                power = PowerLevels(content: await room.stateEvent(.powerLevels)?.content, roomVersion: version,
                                    create: await room.stateEvent(.create))
            }
            switch matcher.evaluate(type: type, sender: sender, bytes: bytes, eventPosition: position,
                                    mayNotify: { power?.canNotify(sender, key: $0) ?? false }) {
            case .none, .roomMention: return
            case .notify: counts.notify = 1
            case .highlight: counts = Counts(notify: 1, highlight: 1)
            }
        }
        if let thread {
            entry.threads[thread, default: Counts()].notify += counts.notify
            entry.threads[thread, default: Counts()].highlight += counts.highlight
        } else {
            entry.notify += counts.notify
            entry.highlight += counts.highlight
        }
    }

    /// What the rules look at in one message, parsed once per event for all its recipients.
    struct Features: Sendable {
        /// The thread root, for an event in a thread (`m.relates_to` of type `m.thread`).
        var threadRoot: String?
        var event: PushEvent
    }

    /// Features by event position (bounded; cleared when full).
    let features = Mutex<[Int64: Features]>([:])

    /// What the rules decided; `roomMention`: they need the sender's power to notify
    /// (`sender_notification_permission`), which the caller reads and evaluates again with.
    enum Outcome { case none, notify, highlight, roomMention }

    /// The push rules of one user in one room, evaluated per event with no hop unless the
    /// sender's power is needed.
    struct Matcher {
        let user: String
        let rules: PushRuleSet
        let context: PushContext
        let shared: UnreadCounts?

        /// `rules` nil: the server defaults.
        init(user: UserID, rules: PushRuleSet? = nil, displayname: String?, memberCount: Int? = nil, shared: UnreadCounts?) {
            self.user = user.rawValue
            self.rules = rules ?? PushRuleSet.serverDefault(for: user)
            context = PushContext(displayName: displayname, memberCount: memberCount)
            self.shared = shared
        }

        func features(of bytes: [UInt8]) -> Features? {
            guard let event = try? JSON.parse(bytes), let content = event["content"] else { return nil }
            let relation = content["m.relates_to"]
            let threadRoot = relation?["rel_type"]?.stringValue == RelationType.thread ? relation?["event_id"]?.stringValue : nil
            return Features(threadRoot: threadRoot, event: PushEvent(event))
        }

        /// The features of one event, parsed once for all its recipients.
        func cachedFeatures(of bytes: [UInt8], position: Int64) -> Features? {
            if let shared, let cached = shared.features.withLock({ $0[position] }) { return cached }
            let found = features(of: bytes)
            if let shared, let found {
                shared.features.withLock { cache in
                    if cache.count >= 8192 { cache.removeAll(keepingCapacity: true) }
                    cache[position] = found
                }
            }
            return found
        }

        func threadRoot(of bytes: [UInt8], position: Int64) -> String? {
            cachedFeatures(of: bytes, position: position)?.threadRoot
        }

        /// Counts cover the events of others that the rules say notify (messages, calls,
        /// polls, tombstones, ...: the user's own events never count); `mayNotify` answers
        /// `sender_notification_permission` once the caller has read the power levels.
        func evaluate(type: String, sender: String, bytes: [UInt8], eventPosition: Int64,
                      mayNotify: ((String) -> Bool)? = nil) -> Outcome {
            guard sender != user else { return .none }
            guard let features = cachedFeatures(of: bytes, position: eventPosition) else {
                // Unreadable (never expected of a stored event): a message still counts.
                return type == EventType.roomMessage || type == EventType.roomEncrypted ? .notify : .none
            }
            // The user's own invite notifies where invites are listed, not as an unread event
            // of the room they then join.
            if type == EventType.roomMember && features.event.properties["state_key"]?.stringValue == user { return .none }
            var context = self.context
            context.senderNotificationPermission = mayNotify
            switch PushEvaluator.evaluate(rules, features.event, context) {
            case .noMatch: return .none
            case .needsPowerLevels: return .roomMention
            case .matched(_, let actions):
                if !actions.notifies { return .none }
                return actions.highlights ? .highlight : .notify
            }
        }
    }
}

extension UnreadCounts.Entry {
    var roomCounts: UnreadCounts.RoomCounts {
        UnreadCounts.RoomCounts(main: UnreadCounts.Counts(notify: notify, highlight: highlight), threads: threads)
    }
}
