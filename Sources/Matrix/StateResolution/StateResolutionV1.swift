/// State resolution for room version 1 (room version 1 "State resolution"), kept only so that
/// federation with version 1 rooms works. Follows Synapse's `state/v1.py` ordering: events by
/// depth descending, then SHA-1 of the event ID.
enum StateResolutionV1 {
    static func resolve(_ stateSets: [StateMap], roomVersion: RoomVersion,
                        fetch: StateResolution.Fetch) throws(MatrixError) -> StateMap {
        // v1 conflicts only where two sets hold different events for a key.
        var unconflicted: StateMap = [:]
        var conflicted: [StateKey: [EventID]] = [:]
        var all: [StateKey: Set<EventID>] = [:]
        for s in stateSets { for (k, v) in s { all[k, default: []].insert(v) } }
        for (k, ids) in all {
            if ids.count == 1 { unconflicted[k] = ids.first! } else { conflicted[k] = Array(ids) }
        }
        if conflicted.isEmpty { return unconflicted }
        func load(_ id: EventID) throws(MatrixError) -> PDU {
            guard let e = fetch(id) else { throw MatrixError(.notFound, "State resolution: missing event \(id)") }
            return e
        }
        // The auth events of the conflicted events, by key.
        var authEvents: AuthState = [:]
        for ids in conflicted.values {
            for id in ids {
                for a in try load(id).authEvents { if let ae = fetch(a), let key = ae.stateEntry { authEvents[key] = ae } }
            }
        }
        for (k, id) in unconflicted where authEvents[k] == nil { if let e = fetch(id) { authEvents[k] = e } }
        var conflictedEvents: [StateKey: [PDU]] = [:]
        for (k, ids) in conflicted {
            var events: [PDU] = []
            for id in ids { events.append(try load(id)) }
            conflictedEvents[k] = events
        }
        var resolved: [StateKey: PDU] = [:]
        if let pls = conflictedEvents[.powerLevels] { resolved[.powerLevels] = resolveAuthEvents(pls, authEvents) }
        authEvents.merge(resolved) { _, r in r }
        for (k, events) in conflictedEvents where k.type == EventType.roomJoinRules { resolved[k] = resolveAuthEvents(events, authEvents) }
        authEvents.merge(resolved) { _, r in r }
        for (k, events) in conflictedEvents where k.type == EventType.roomMember { resolved[k] = resolveAuthEvents(events, authEvents) }
        authEvents.merge(resolved) { _, r in r }
        for (k, events) in conflictedEvents where resolved[k] == nil { resolved[k] = resolveNormalEvents(events, authEvents) }
        var out = unconflicted
        for (k, e) in resolved { out[k] = e.eventID }
        return out
    }

    static func ordered(_ events: [PDU]) -> [PDU] {
        let keyed = events.map { ($0, hex(SHA1.hash(Array($0.eventID.rawValue.utf8)))) }
        return keyed.sorted { a, b in a.0.depth != b.0.depth ? a.0.depth > b.0.depth : a.1 < b.1 }.map(\.0)
    }

    static func resolveAuthEvents(_ events: [PDU], _ authEvents: AuthState) -> PDU {
        let reverse = Array(ordered(events).reversed())
        var keys: Set<StateKey> = []
        for e in events { keys.formUnion(AuthEventsSelection.stateKeys(for: e)) }
        var auth: AuthState = [:]
        for k in keys { if let a = authEvents[k] { auth[k] = a } }
        var prev = reverse[0]
        for e in reverse.dropFirst() {
            if let k = prev.stateEntry { auth[k] = prev }
            do { try EventAuth.authorize(e, against: auth) } catch { return prev }
            prev = e
        }
        return prev
    }

    static func resolveNormalEvents(_ events: [PDU], _ authEvents: AuthState) -> PDU {
        let sorted = ordered(events)
        for e in sorted {
            if (try? EventAuth.authorize(e, against: authEvents)) != nil { return e }
        }
        return sorted.last!
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// SHA-1, only for room version 1 state resolution's tie-break (libsodium has no SHA-1).
enum SHA1 {
    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
        var m = message
        let bitLength = UInt64(message.count) * 8
        m.append(0x80)
        while m.count % 64 != 56 { m.append(0) }
        for i in (0..<8).reversed() { m.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: m.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(m[j]) << 24 | UInt32(m[j + 1]) << 16 | UInt32(m[j + 2]) << 8 | UInt32(m[j + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4]
            for i in 0..<80 {
                let f: UInt32, k: UInt32
                switch i {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5A827999
                case 20..<40: f = b ^ c ^ d; k = 0x6ED9EBA1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC
                default: f = b ^ c ^ d; k = 0xCA62C1D6
                }
                let t = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                e = d; d = c; c = b << 30 | b >> 2; b = a; a = t
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e
        }
        var out: [UInt8] = []
        for v in h { for s in [24, 16, 8, 0] { out.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
        return out
    }
}
