// libFuzzer target for the client-server filter model; built by scripts/fuzz-filter.sh together with
// the Matrix sources and the filter declarations of the App module, cut unmodified out of
// Sources/App (EventFilter, SyncFilter, Filters.validate & co, RequestBounds; see the script).
//
// The input is parsed as JSON (two ways: the filter itself, and the filter inside an inline
// `filter=` query parameter of the same bytes). For every value:
//  - Filters.validate(filter:) on objects, eventFilter / roomEventFilter on the value and on every
//    nested member, throwing only MatrixError M_BAD_JSON;
//  - SyncFilter(json) (as /sync builds it) and EventFilter(json) on the value and its members;
//    limits are always nil or in 0...RequestBounds.maxTimelineLimit; a validated filter's declared
//    timeline limit is kept;
//  - allowsRoom / allows(type:sender:) / allows(type:sender:clientBytes:) with strings taken from
//    the input and fixed ones; applyingEventFields on an event built from the input and on a
//    fixed event (its output must parse as JSON);
//  - EventFilter.matches on every pair of strings of the input (up to 24 strings), with these
//    invariants: "*" matches anything, a pattern matches itself, a pattern without "*" matches
//    exactly the equal string.
// Nothing may trap.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFilter(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let value = try? JSON.parse(bytes) else {
        // Still exercise the wildcard matcher on raw text split at a NUL byte.
        let text = String(decoding: bytes, as: UTF8.self)
        let parts = text.split(separator: "\u{0}", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 2 {
            checkAlone(String(parts[0]))
            checkAlone(String(parts[1]))
            checkMatch(String(parts[0]), String(parts[1]))
        }
        return 0
    }
    var strings: [String] = []
    collectStrings(value, into: &strings)
    checkFilter(value, strings: strings)
    // Members too (a client may nest anything anywhere).
    if case .object(let o) = value {
        for (_, v) in o {
            checkEventFilter(v, strings: strings)
            if case .object(let inner) = v { for (_, w) in inner { checkEventFilter(w, strings: strings) } }
        }
    }
    let sample = strings.prefix(24)
    for p in sample {
        checkAlone(p)
        for v in sample { checkMatch(p, v) }
        _ = SyncFilter.fieldPath(p)
    }
    return 0
}

private func collectStrings(_ value: JSON, into out: inout [String]) {
    guard out.count < 64 else { return }
    switch value {
    case .string(let s): out.append(s)
    case .array(let a): for v in a { collectStrings(v, into: &out) }
    case .object(let o): for (k, v) in o { out.append(k); collectStrings(v, into: &out) }
    default: break
    }
}

/// "*" matches anything; a pattern matches itself.
private func checkAlone(_ text: String) {
    if !EventFilter.matches("*", text) { fatalError("\"*\" does not match \(text.debugDescription)") }
    if !EventFilter.matches(text, text) { fatalError("pattern \(text.debugDescription) does not match itself") }
}

/// A pattern without "*" matches exactly the equal string.
private func checkMatch(_ pattern: String, _ value: String) {
    let m = EventFilter.matches(pattern, value)
    if m && !pattern.contains("*") && pattern != value {
        fatalError("pattern \(pattern.debugDescription) without wildcard matches \(value.debugDescription)")
    }
}

private func validates(_ body: () throws -> Void) -> Bool {
    do {
        try body()
        return true
    } catch let error as MatrixError {
        if error.code != .badJSON { fatalError("filter validation threw \(error.code)") }
        return false
    } catch {
        fatalError("filter validation threw a non-Matrix error: \(error)")
    }
}

private let fixedEvent: [UInt8] = Array(#"{"type":"m.room.message","sender":"@a:b","content":{"body":"x","url":"mxc://a/b","a.b":{"c":1}},"unsigned":{"age":1},"event_id":"$e"}"#.utf8)

private func checkLimit(_ f: EventFilter) {
    if let limit = f.limit, limit < 0 || limit > RequestBounds.maxTimelineLimit {
        fatalError("filter limit \(limit) outside 0...\(RequestBounds.maxTimelineLimit)")
    }
}

private func exercise(_ f: EventFilter, strings: [String]) {
    checkLimit(f)
    _ = f.passesAll
    let types = ["m.room.message", "m.room.member", ""] + strings.prefix(6)
    let senders = ["@a:b", ""] + strings.prefix(4)
    for t in types {
        _ = f.allowsRoom(t)
        for s in senders { _ = f.allows(type: t, sender: s) }
    }
    _ = f.allows(type: "m.room.message", sender: "@a:b", clientBytes: fixedEvent)
    _ = f.allows(type: "m.room.message", sender: "@a:b", clientBytes: [])
}

private func checkEventFilter(_ value: JSON, strings: [String]) {
    let roomOK = validates { try Filters.roomEventFilter(value, "x") }
    let eventOK = validates { try Filters.eventFilter(value, "x") }
    if roomOK && !eventOK { fatalError("a valid RoomEventFilter is not a valid EventFilter") }
    let f = EventFilter(value)
    exercise(f, strings: strings)
    if eventOK, let declared = value["limit"]?.intValue, f.limit == nil {
        fatalError("validated limit \(declared) was dropped")
    }
}

private func checkFilter(_ value: JSON, strings: [String]) {
    var valid = false
    if let object = value.objectValue {
        valid = validates { try Filters.validate(filter: object) }
    }
    checkEventFilter(value, strings: strings)
    let filter = SyncFilter(value)
    for f in [filter.timeline, filter.state, filter.ephemeral, filter.roomAccountData, filter.accountData,
              filter.presence, filter.rooms] {
        exercise(f, strings: strings)
    }
    _ = filter.lazyLoadMembers
    _ = filter.includeLeave
    if valid, value["room"]?["timeline"]?["limit"] != nil, filter.timeline.limit == nil {
        fatalError("validated timeline limit dropped")
    }
    for event in [fixedEvent, value.encoded()] {
        let out = filter.applyingEventFields(event)
        if (try? JSON.parse(out)) == nil { fatalError("applyingEventFields produced invalid JSON") }
    }
    _ = SyncFilter(nil)
}
