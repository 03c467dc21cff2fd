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
        var notify: Int
        var highlight: Int
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// Events scanned at most when counting from the store.
    static let maxScan = 1000

    private static func key(_ user: UserID, _ room: RoomID) -> String { user.rawValue + "|" + room.rawValue }

    /// The user read the room: counts restart from the store at the next sync.
    func invalidate(_ user: UserID, _ room: RoomID) {
        _ = entries.withLock { $0.removeValue(forKey: Self.key(user, room)) }
    }

    func counts(_ app: MyelinApp, user: UserID, roomID: RoomID, actor: RoomActor, timeline: [SyncBuilder.TimelineEvent],
                limited: Bool, upper: Int64) async throws -> (notify: Int, highlight: Int) {
        let key = Self.key(user, roomID)
        let cached = entries.withLock { $0[key] }
        let matcher = await Matcher(user: user, actor: actor)
        if var entry = cached {
            if entry.countedUpTo >= upper { return (entry.notify, entry.highlight) }
            let first = timeline.first?.position ?? (upper + 1)
            if !limited || first - 1 <= entry.countedUpTo {
                for event in timeline where event.position > entry.countedUpTo {
                    let (n, h) = matcher.evaluate(type: event.type, sender: event.sender, bytes: event.bytes)
                    if n { entry.notify += 1 }
                    if h { entry.highlight += 1 }
                }
                entry.countedUpTo = upper
                let stored = entry
                entries.withLock { $0[key] = stored }
                return (entry.notify, entry.highlight)
            }
        }
        // From the store: events after the newest read receipt.
        let room = roomID.rawValue, userID = user.rawValue
        let rows = try await app.database.read { db -> [RoomEventStore.EventRow] in
            let receipts = try db.query("""
                SELECT e.stream_ordering FROM receipts r JOIN events e ON e.event_id = r.event_id
                WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private')
                """, .text(room), .text(userID))
            let readUpTo = try receipts.map { try $0.int(0) }.max() ?? 0
            return try RoomClientStore.events(db, roomID: room, after: readUpTo, upTo: upper, backwards: true, limit: Self.maxScan)
        }
        var entry = Entry(countedUpTo: upper, notify: 0, highlight: 0)
        for row in rows {
            // Counting stops at the user's own message (it implies they read the room).
            if row.sender == userID && (row.type == "m.room.message" || row.type == "m.room.encrypted") { break }
            let (n, h) = matcher.evaluate(type: row.type, sender: row.sender, bytes: row.clientJSON)
            if n { entry.notify += 1 }
            if h { entry.highlight += 1 }
        }
        let stored = entry
        entries.withLock { $0[key] = stored }
        return (entry.notify, entry.highlight)
    }

    /// The default rules for one user in one room.
    struct Matcher {
        let user: String
        let localpart: String
        let displayname: String?
        let power: PowerLevels?

        init(user: UserID, actor: RoomActor) async {
            self.user = user.rawValue
            localpart = String(user.localpart)
            displayname = await actor.stateEvent(.member(user.rawValue))?.content["displayname"]?.stringValue
            if let version = await actor.version {
                power = PowerLevels(content: await actor.stateEvent(.powerLevels)?.content, roomVersion: version,
                                    create: await actor.stateEvent(.create))
            } else {
                power = nil
            }
        }

        func evaluate(type: String, sender: String, bytes: [UInt8]) -> (notify: Bool, highlight: Bool) {
            guard sender != user, type == "m.room.message" || type == "m.room.encrypted" else { return (false, false) }
            guard type == "m.room.message", let content = (try? JSON.parse(bytes))?["content"] else { return (true, false) }
            if content["msgtype"]?.stringValue == "m.notice" { return (false, false) }
            if let mentions = content["m.mentions"]?.objectValue {
                let mentioned = mentions["user_ids"]?.arrayValue?.contains(.string(user)) ?? false
                let room = mentions["room"]?.boolValue == true && (power?.canNotifyRoom(sender) ?? false)
                return (true, mentioned || room)
            }
            let body = (content["body"]?.stringValue ?? "").lowercased()
            if Self.containsWord(body, localpart.lowercased()) { return (true, true) }
            if let displayname, !displayname.isEmpty, Self.containsWord(body, displayname.lowercased()) { return (true, true) }
            if body.contains("@room"), power?.canNotifyRoom(sender) ?? false { return (true, true) }
            return (true, false)
        }

        /// Word-boundary match as the push rule glob `contains_display_name` does.
        static func containsWord(_ text: String, _ word: String) -> Bool {
            guard !word.isEmpty else { return false }
            var rest = Substring(text)
            while let range = rest.range(of: word) {
                let before = range.lowerBound == rest.startIndex ? nil : rest[rest.index(before: range.lowerBound)]
                let after = range.upperBound == rest.endIndex ? nil : rest[range.upperBound]
                let boundary: (Character?) -> Bool = { c in c.map { !($0.isLetter || $0.isNumber) } ?? true }
                if boundary(before) && boundary(after) { return true }
                rest = rest[range.upperBound...]
            }
            return false
        }
    }
}
