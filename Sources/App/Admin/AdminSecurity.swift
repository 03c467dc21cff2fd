import Matrix
import Persistence
import Transport

/// The seed's security extension of the admin API (`ext:admin-security`, docs/admin.md,
/// "Security"): IP blocks enforced by the transport at accept, the reputation of an address,
/// and the security event log. State in `SecurityService`.
enum AdminSecurity {
    static let prefix = "/_synapse/admin/v1/security"

    static func register(_ routes: inout RouteBuilder) {
        routes.post(prefix + "/ip/block", block)
        routes.post(prefix + "/ip/unblock", unblock)
        routes.get(prefix + "/ip/blocks", blocks)
        routes.get(prefix + "/ip/reputation/{ip}", reputation)
        routes.get(prefix + "/events", events)
        AdminRateLimits.register(&routes)
        AdminRegistrationTokens.register(&routes)
    }

    /// The longest block accepted (ten years) and the longest reason kept.
    static let maxBlockMs: Int64 = 10 * 365 * 86_400_000
    static let maxReasonBytes = 1000

    /// A range from the admin's text: an address (a single host) or CIDR, host bits cleared,
    /// IPv4-mapped IPv6 written as IPv4. 400 `M_INVALID_PARAM` otherwise.
    static func range(_ text: String) throws -> IPRange {
        guard text.utf8.count <= 64, let parsed = IPRange(text.trimmingSpaces) else {
            throw MatrixError(.invalidParam, "Not an IP address or CIDR range: \(text.prefix(64))")
        }
        var network = parsed.network
        var prefix = parsed.prefixLength
        if let v4 = network.embeddedIPv4, prefix >= 96 {
            network = v4
            prefix -= 96
        }
        var bytes = network.bytes
        var remaining = prefix
        for i in bytes.indices {
            let keep = min(8, max(0, remaining))
            bytes[i] &= keep == 8 ? 0xff : (keep == 0 ? 0 : ~(0xff >> UInt8(keep)))
            remaining -= 8
        }
        return IPRange(network: IPAddress(bytes: bytes)!, prefixLength: prefix)
    }

    /// An address as text, IPv6 in RFC 5952's form (the longest run of zero groups as `::`),
    /// as clients and the access log write it.
    static func text(_ address: IPAddress) -> String {
        guard !address.isIPv4 else { return address.description }
        var groups: [UInt16] = []
        for i in stride(from: 0, to: 16, by: 2) { groups.append(UInt16(address.bytes[i]) << 8 | UInt16(address.bytes[i + 1])) }
        var best = (start: -1, length: 0)
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > best.length && j - i >= 2 { best = (i, j - i) }
                i = j
            } else {
                i += 1
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.start >= 0 else { return hex.joined(separator: ":") }
        let head = hex[..<best.start].joined(separator: ":")
        let tail = hex[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    /// A range as stored and shown: `address/prefix`.
    static func text(_ range: IPRange) -> String { "\(text(range.network))/\(range.prefixLength)" }

    /// The seed's `ip` text of a block: the bare address for a single host, CIDR otherwise.
    static func displayed(_ rangeText: String) -> String {
        guard let range = IPRange(rangeText) else { return rangeText }
        return range.prefixLength == range.network.bytes.count * 8 ? text(range.network) : text(range)
    }

    static func json(_ record: IPBlockRecord) -> JSON {
        .object([
            "ip": .string(displayed(record.range)),
            "range": .string(record.range),
            "reason": record.reason.map { .string($0) } ?? .null,
            "blocked_at": .int(record.blockedTs),
            "blocked_by": record.blockedBy.map { .string($0) } ?? .null,
            "expires_at": record.expiresTs.map { .int($0) } ?? .null,
        ])
    }

    /// `POST .../security/ip/block` `{ip, reason?, expires_at? | duration_ms?}`: refuses the
    /// address or range at accept from now on (every listener), until the expiry if given.
    static func block(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let body = try await context.jsonObject()
        guard let given = (body["ip"] ?? body["ip_range"])?.stringValue else { throw MatrixError(.missingParam, "Missing ip") }
        let range = try range(given)
        var reason: String?
        if let value = body["reason"], !value.isNull {
            guard let string = value.stringValue else { throw MatrixError(.invalidParam, "reason must be a string") }
            reason = try RequestBounds.text(string, "reason", maxBytes: maxReasonBytes)
        }
        let now = Clock.nowMilliseconds()
        var expires: Int64?
        if let value = body["expires_at"], !value.isNull {
            guard let at = value.intValue, at > now, at - now <= maxBlockMs else {
                throw MatrixError(.invalidParam, "expires_at must be a time in the future (milliseconds since the epoch), at most ten years away")
            }
            expires = at
        }
        if let value = body["duration_ms"], !value.isNull {
            guard expires == nil else { throw MatrixError(.invalidParam, "Give expires_at or duration_ms, not both") }
            guard let ms = value.intValue, ms > 0, ms <= maxBlockMs else {
                throw MatrixError(.invalidParam, "duration_ms must be a positive integer of at most ten years")
            }
            expires = now + ms
        }
        let record = try await context.app.security.block(range, reason: reason, by: admin.userID.rawValue, expiresAtMs: expires)
        var answer = json(record).objectValue ?? [:]
        answer["blocked"] = true
        return .json(.object(answer))
    }

    /// `POST .../security/ip/unblock` `{ip}`: `unblocked` says whether a block was removed.
    static func unblock(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let body = try await context.jsonObject()
        guard let given = (body["ip"] ?? body["ip_range"])?.stringValue else { throw MatrixError(.missingParam, "Missing ip") }
        let range = try range(given)
        let removed = try await context.app.security.unblock(range, by: admin.userID.rawValue)
        return .json(["unblocked": .bool(removed), "ip": .string(displayed(text(range)))])
    }

    /// `GET .../security/ip/blocks?from=&limit=`: the blocks in force, in range order.
    static func blocks(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (from, limit) = try paging(context)
        let all = context.app.security.blocks()
        let page = all.dropFirst(from).prefix(limit)
        var answer: [String: JSON] = ["blocks": .array(page.map(json)), "total": .int(Int64(all.count))]
        if from + page.count < all.count { answer["next_token"] = .string(String(from + page.count)) }
        return .json(.object(answer))
    }

    /// `GET .../security/ip/reputation/{ip}`: the address's score (0 clean ... 100) and counts.
    static func reputation(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let given = context.parameter("ip")
        guard given.utf8.count <= 64, let address = IPAddress(given) else {
            throw MatrixError(.invalidParam, "Not an IP address: \(given.prefix(64))")
        }
        let security = context.app.security
        let now = Clock.nowMilliseconds()
        let key = ReputationTable.key(text(address))
        let entry = security.reputation.entry(key)
        let score = entry.map { ReputationTable.score(security.reputation.decayed($0, now: now)) } ?? 0
        let judged = address.embeddedIPv4 ?? address
        let block = security.blocks(now: now).first { IPRange($0.range)?.contains(judged) ?? false }
        let lastSeen: JSON = entry.map { .int($0.lastSeenMs) } ?? .null
        let firstSeen: JSON = entry.map { .int($0.firstSeenMs) } ?? .null
        let blockJSON: JSON = block.map(json) ?? .null
        let answer: [String: JSON] = [
            "ip": .string(text(address.embeddedIPv4 ?? address)),
            "score": .int(Int64(score)),
            "last_seen": lastSeen,
            "first_seen": firstSeen,
            "login_attempts": .int(entry?.loginAttempts ?? 0),
            "failed_logins": .int(entry?.failedLogins ?? 0),
            "rate_limited": .int(entry?.rateLimited ?? 0),
            "malformed_requests": .int(entry?.malformed ?? 0),
            "blocked": .bool(block != nil),
            "block": blockJSON,
        ]
        return .json(.object(answer))
    }

    /// `GET .../security/events?from=&limit=&type=`: newest first; `from` is the `next_token`
    /// of the previous page (an event id: the page starts below it).
    static func events(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let query = context.query
        var before: Int64?
        if let from = query["from"] {
            guard let id = Int64(from), id > 0 else { throw MatrixError(.invalidParam, "from must be a positive integer") }
            before = id
        }
        let limit = try limitParameter(query["limit"])
        var type: String?
        if let value = query["type"] { type = try RequestBounds.text(value, "type", maxBytes: 64) }
        let security = context.app.security
        await security.flushEvents()
        let (events, total) = try await security.store.events(before: before, limit: limit, type: type)
        var answer: [String: JSON] = [
            "events": .array(events.map { event in
                var object: [String: JSON] = [
                    "id": .int(event.id), "type": .string(event.type), "timestamp": .int(event.ts),
                    "user_id": event.userID.map { .string($0) } ?? .null, "ip": event.ip.map { .string($0) } ?? .null,
                ]
                if let details = event.details, let parsed = try? JSON.parse(Array(details.utf8)) { object["details"] = parsed }
                return .object(object)
            }),
            "total": .int(total),
        ]
        if events.count == limit, let last = events.last { answer["next_token"] = .string(String(last.id)) }
        return .json(.object(answer))
    }

    static func limitParameter(_ text: String?) throws -> Int {
        guard let text else { return 100 }
        guard let limit = Int(text), (1...1000).contains(limit) else {
            throw MatrixError(.invalidParam, "limit must be an integer from 1 to 1000")
        }
        return limit
    }

    static func paging(_ context: RequestContext) throws -> (from: Int, limit: Int) {
        let query = context.query
        var from = 0
        if let text = query["from"] {
            guard let value = Int(text), value >= 0, value <= 10_000_000 else {
                throw MatrixError(.invalidParam, "from must be a non-negative integer")
            }
            from = value
        }
        return (from, try limitParameter(query["limit"]))
    }
}

private extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
