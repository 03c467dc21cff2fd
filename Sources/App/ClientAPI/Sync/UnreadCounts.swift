import Transport
import Actors
import Matrix
import Persistence
import Synchronization

/// Notification and highlight counts per (user, room) from the default push rules (spec:
/// "Push Rules", the predefined rules): every message or encrypted event from someone else
/// after the user's read receipt notifies; it highlights when it mentions the user
/// (`m.mentions`, or without it the display name or localpart in the body) or is an
/// `@room` from a sender allowed to notify the room. Kept in memory and advanced with the
/// timeline sync already holds; computed from the store on a miss or after a gap; reset by
/// the user's receipt. (User-defined push rules come later.)
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
        // The display name is kept with the counts until the user's member event changes.
        let ownMemberChanged = timeline.contains { $0.type == "m.room.member" && $0.stateKey == userID }
        var displayname = cached?.displayname
        if cached == nil || ownMemberChanged {
            displayname = try await actor().stateEvent(.member(userID))?.content["displayname"]?.stringValue?.lowercased()
        }
        let matcher = Matcher(user: user, displayname: displayname, shared: self)
        var entry: Entry
        let first = timeline.first?.position ?? (upper + 1)
        if let cachedEntry = cached, !limited || first - 1 <= cachedEntry.countedUpTo {
            // Advance with the timeline sync already holds.
            entry = cachedEntry
            entry.displayname = displayname
            for event in timeline where event.position > entry.countedUpTo {
                try await count(event.type, event.sender, event.bytes, event.position, matcher, &entry, actor)
            }
        } else {
            // From the store: events after the read receipts (oldest first). An unthreaded
            // receipt reads everything up to it; a threaded one its thread (`main`: the
            // events in no thread).
            let (rows, reads) = try await app.database.receipts.unread(by: user, in: roomID, upTo: upper, limit: Self.maxScan)
            entry = Entry(countedUpTo: 0, notify: 0, highlight: 0, displayname: displayname)
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

    private func count(_ type: String, _ sender: String, _ bytes: [UInt8], _ position: Int64, _ matcher: Matcher,
                       _ entry: inout Entry, _ actor: () async throws -> RoomActor) async throws {
        let thread = type == "m.room.message" || type == "m.room.encrypted" ? matcher.threadRoot(of: bytes, position: position) : nil
        // The user's own message means they read the room, or the thread it is in (clients
        // send a receipt with it).
        if sender == matcher.user && (type == "m.room.message" || type == "m.room.encrypted") {
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
            counts.notify = 1
            let room = try await actor()
            if let version = await room.version {
                let power = PowerLevels(content: await room.stateEvent(.powerLevels)?.content, roomVersion: version,
                                        create: await room.stateEvent(.create))
                if power.canNotifyRoom(sender) { counts.highlight = 1 }
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
        var notice: Bool
        var mentions: (users: Set<String>, room: Bool)?
        /// The body, lowercased, as bytes (word matches run on bytes).
        var body: [UInt8]
        /// The body contains `@room`.
        var mentionsRoomInBody: Bool
    }

    /// Features by event position (bounded; cleared when full).
    let features = Mutex<[Int64: Features]>([:])

    enum Outcome { case none, notify, highlight, roomMention }

    /// The default rules for one user in one room. `@room` needs the sender's power, which
    /// the caller reads from the room only then (rare), so evaluating needs no hop otherwise.
    struct Matcher {
        let user: String
        let localpart: [UInt8]
        let displayname: [UInt8]?
        let shared: UnreadCounts?

        init(user: UserID, displayname: String?, shared: UnreadCounts?) {
            self.user = user.rawValue
            localpart = Array(String(user.localpart).lowercased().utf8)
            self.displayname = displayname.map { Array($0.utf8) }
            self.shared = shared
        }

        func features(of bytes: [UInt8]) -> Features? {
            guard let content = (try? JSON.parse(bytes))?["content"] else { return nil }
            let relation = content["m.relates_to"]
            let threadRoot = relation?["rel_type"]?.stringValue == "m.thread" ? relation?["event_id"]?.stringValue : nil
            var mentions: (Set<String>, Bool)?
            if let object = content["m.mentions"]?.objectValue {
                mentions = (Set(object["user_ids"]?.arrayValue?.compactMap(\.stringValue) ?? []), object["room"]?.boolValue == true)
            }
            let body = Array((content["body"]?.stringValue ?? "").lowercased().utf8)
            return Features(threadRoot: threadRoot, notice: content["msgtype"]?.stringValue == "m.notice", mentions: mentions,
                            body: body, mentionsRoomInBody: Self.contains(body, Array("@room".utf8)))
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

        func evaluate(type: String, sender: String, bytes: [UInt8], eventPosition: Int64) -> Outcome {
            guard sender != user, type == "m.room.message" || type == "m.room.encrypted" else { return .none }
            guard type == "m.room.message" else { return .notify }
            guard let features = cachedFeatures(of: bytes, position: eventPosition) else { return .notify }
            if features.notice { return .none }
            if let mentions = features.mentions {
                if mentions.users.contains(user) { return .highlight }
                return mentions.room ? .roomMention : .notify
            }
            let body = features.body
            if Self.containsWord(body, localpart) { return .highlight }
            if let displayname, Self.containsWord(body, displayname) { return .highlight }
            if features.mentionsRoomInBody { return .roomMention }
            return .notify
        }

        /// Whether `needle` occurs in `haystack` at a start that `accept` takes.
        static func contains(_ haystack: [UInt8], _ needle: [UInt8], where accept: (Int) -> Bool = { _ in true }) -> Bool {
            guard !needle.isEmpty, needle.count <= haystack.count else { return false }
            for start in 0...(haystack.count - needle.count)
            where haystack[start] == needle[0] && haystack[start..<start + needle.count].elementsEqual(needle) && accept(start) {
                return true
            }
            return false
        }

        /// Word-boundary match as the push rule glob `contains_display_name` does (both sides
        /// are lowercased already).
        static func containsWord(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
            func isWordByte(_ byte: UInt8) -> Bool {
                byte >= 0x80 || (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A)
                    || byte == UInt8(ascii: "_")
            }
            return contains(haystack, needle) { start in
                let end = start + needle.count
                return (start == 0 || !isWordByte(haystack[start - 1])) && (end == haystack.count || !isWordByte(haystack[end]))
            }
        }
    }
}

extension UnreadCounts.Entry {
    var roomCounts: UnreadCounts.RoomCounts {
        UnreadCounts.RoomCounts(main: UnreadCounts.Counts(notify: notify, highlight: highlight), threads: threads)
    }
}
