import Actors
import Matrix
import Persistence

/// The documented bounds of what a request may ask for, in one place (docs/security.md lists
/// them). Every number, length and position that comes from the network passes through the
/// parsers below before a handler computes with it: Swift traps on integer overflow and on
/// out-of-range indexing even in release builds, so an unbounded value is a crash waiting for
/// the next `+ 1`.
enum RequestBounds {
    /// Identifiers (user, room, event ids, aliases, thread ids): 255 bytes (spec: "Common
    /// Identifier Format", and Synapse's check on thread ids).
    static let maxIdentifierBytes = 255
    /// Event `type` and `state_key` (Synapse: 255 bytes each).
    static let maxEventTypeBytes = 255
    static let maxStateKeyBytes = 255
    /// Transaction ids in paths (`/send/.../{txnId}`, `/sendToDevice/.../{txnId}`).
    static let maxTransactionIDBytes = 255
    /// Presence `status_msg` (Synapse has no limit but its request size; one status line).
    static let maxStatusMessageBytes = 1024
    /// The highest stream position a token may name: no stream of this server reaches it
    /// (2^53, the largest integer canonical JSON can carry), and arithmetic on anything
    /// below it cannot overflow.
    static let maxPosition: Int64 = StreamToken.maxPosition
    /// Pagination offsets (`/search`'s `next_batch`).
    static let maxOffset = 100_000
    /// Timeline limits of filters, `/initialSync` and `/sync`.
    static let maxTimelineLimit = 1000
    /// `/search` results per page and context events on each side.
    static let maxSearchLimit = 100
    static let maxSearchContext = 20
    /// `/createRoom`: `initial_state` entries and invitees; each one is an event written with
    /// the room's creation, so the request's cost grows with them.
    static let maxInitialState = 100
    static let maxInvites = 100
}

extension RequestContext {
    /// A count parameter (`limit` and friends): absent gives `defaultValue`; anything but a
    /// non-negative decimal integer is `M_INVALID_PARAM`; values above `max` are clamped (as
    /// Synapse clamps `/messages` to 1,000), values below `min` raised to it.
    func limit(_ name: String = "limit", default defaultValue: Int, max: Int, min: Int = 0) throws -> Int {
        guard let text = query[name] else { return defaultValue }
        return Swift.max(min, Swift.min(try RequestBounds.count(text, name), max))
    }

    /// A non-negative integer parameter within `range` (out of range is `M_INVALID_PARAM`).
    func integer(_ name: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let text = query[name] else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw MatrixError(.invalidParam, "\(name) must be an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return value
    }

    /// A pagination token parameter as the room-events position it names (bounded).
    func position(_ name: String) throws -> Int64? {
        try query[name].map(RequestBounds.position(of:))
    }
}

extension RequestBounds {
    /// A non-negative decimal count; anything larger than `Int32.max` is clamped there (the
    /// caller clamps further), so a 40-digit limit is a big limit, not an error.
    static func count(_ text: String, _ name: String) throws -> Int {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw MatrixError(.invalidParam, "\(name) must be a non-negative integer")
        }
        return Int(text).map { Swift.min($0, Int(Int32.max)) } ?? Int(Int32.max)
    }

    /// The room-events position a pagination token names (`tN`, or a sync token's
    /// room-events field), at most `maxPosition`.
    static func position(of token: String) throws -> Int64 {
        if token.hasPrefix("t"), let value = Int64(token.dropFirst()), value >= 0, value <= maxPosition { return value }
        // Backfilled history lies below `RoomEventStore.backfillCeiling` (`/messages` tokens only).
        if token.hasPrefix("t"), let value = Int64(token.dropFirst()),
           value <= RoomEventStore.backfillCeiling, value > RoomEventStore.backfillFloor - 2 { return value }
        if token.hasPrefix("s") { return try StreamToken(parsing: token)[.roomEvents] }
        throw MatrixError(.invalidParam, "Invalid pagination token")
    }

    /// A count in a JSON body (`limit` of a filter, `before_limit`...): absent or null gives
    /// `defaultValue`; above `max` it is clamped. A non-integer or negative value is
    /// `M_BAD_JSON`, or with `lenient` (endpoints that always accepted such values) a
    /// negative becomes 0 and an integral float its integer.
    static func count(_ value: JSON?, _ name: String, default defaultValue: Int, max: Int, lenient: Bool = false) throws -> Int {
        guard let value, !value.isNull else { return defaultValue }
        guard case .int(let number) = value else {
            if lenient, let number = value.intValue { return Int(Swift.max(0, Swift.min(number, Int64(max)))) }
            throw MatrixError(.badJSON, "\(name) must be an integer")
        }
        if number < 0 {
            if lenient { return 0 }
            throw MatrixError(.badJSON, "\(name) must not be negative")
        }
        return Int(Swift.min(number, Int64(max)))
    }

    /// A string no longer than `maxBytes` UTF-8 bytes, or `M_INVALID_PARAM` naming `name`.
    @discardableResult
    static func text(_ value: String, _ name: String, maxBytes: Int) throws -> String {
        guard value.utf8.count <= maxBytes else {
            throw MatrixError(.invalidParam, "\(name) is longer than \(maxBytes) bytes")
        }
        return value
    }
}

extension RequestContext {
    /// The client's address for limits and logs: the TCP peer, or, when the peer is a
    /// configured trusted proxy (`rate_limits.trusted_proxies`), the nearest address in
    /// `X-Forwarded-For` that is not itself a trusted proxy (the rightmost entries were
    /// added by our proxies; anything left of them is whatever the client claimed).
    var clientAddress: String {
        let peer = request.remoteAddress
        let proxies = app.configuration.rateLimits.trustedProxies
        guard !proxies.isEmpty, proxies.contains(peer) else { return peer }
        let hops = request.headers.values("X-Forwarded-For").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: " \t") }.filter { !$0.isEmpty }
        for hop in hops.reversed() where !proxies.contains(String(hop)) { return String(hop.prefix(64)) }
        return peer
    }

    /// Takes a token from the bucket of `action` for `user` (or the client's address).
    func rateLimit(_ action: String, _ limit: Configuration.RateLimit, user: UserID? = nil) throws {
        try app.accounts.rateLimiter.check(action, client: user?.rawValue ?? clientAddress, limit)
    }
}

private extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var result = self
        while let first = result.first, set.contains(first) { result = result.dropFirst() }
        while let last = result.last, set.contains(last) { result = result.dropLast() }
        return result
    }
}
