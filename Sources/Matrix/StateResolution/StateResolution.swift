/// A room state: (type, state key) to event ID.
public typealias StateMap = [StateKey: EventID]

/// State resolution (room version 2 "State resolution", with room version 12's changes,
/// MSC4297). Given the states at the forward extremities, computes the room state. Called by the
/// RoomActor when an event has several `prev_events` with different states, and by federation
/// when joining or catching up.
///
/// Pure: events come from `fetch`, which must know every event of the state sets and their auth
/// chains (the caller loads them from the store first). `rejected` lists events rejected on their
/// auth chain; they are ignored as auth events, as the specification requires.
public enum StateResolution {
    /// Looks up an event by ID (from the caller's cache or store); nil if unknown.
    public typealias Fetch = (EventID) -> PDU?

    /// Resolves `stateSets` with the algorithm of `roomVersion` (v2, or v2.1 for room version 12;
    /// version 1 rooms use the v1 algorithm).
    public static func resolve(_ stateSets: [StateMap], roomVersion: RoomVersion, rejected: Set<EventID> = [],
                               fetch: Fetch) throws(MatrixError) -> StateMap {
        if roomVersion.stateResolution == .v1 {
            return try StateResolutionV1.resolve(stateSets, roomVersion: roomVersion, fetch: fetch)
        }
        return try withoutActuallyEscaping(fetch) { (f) throws(MatrixError) -> StateMap in
            var resolver = StateResolutionV2(roomVersion: roomVersion, rejected: rejected, fetch: f)
            return try resolver.resolve(stateSets)
        }
    }

    /// Splits states into the unconflicted map and the conflicted entries. As Synapse does, a key
    /// missing from some state set is conflicted.
    public static func separate(_ stateSets: [StateMap]) -> (unconflicted: StateMap, conflicted: [StateKey: Set<EventID>]) {
        var unconflicted: StateMap = [:]
        var conflicted: [StateKey: Set<EventID>] = [:]
        guard let first = stateSets.first else { return ([:], [:]) }
        var keys = Set(first.keys)
        for s in stateSets.dropFirst() { keys.formUnion(s.keys) }
        unconflicted.reserveCapacity(keys.count)
        for key in keys {
            // Most keys agree everywhere: check that without building a set.
            var first: EventID? = nil
            var agree = true
            for s in stateSets {
                guard let id = s[key] else { agree = false; break }
                if let f = first { if f != id { agree = false; break } } else { first = id }
            }
            if agree, let first { unconflicted[key] = first; continue }
            conflicted[key] = Set(stateSets.compactMap { $0[key] })
        }
        return (unconflicted, conflicted)
    }
}

/// One run of state resolution v2 / v2.1. Internal; `StateResolution.resolve` is the entry.
struct StateResolutionV2 {
    let roomVersion: RoomVersion
    let rejected: Set<EventID>
    let fetch: StateResolution.Fetch
    var cache: [EventID: PDU] = [:]

    init(roomVersion: RoomVersion, rejected: Set<EventID>, fetch: @escaping StateResolution.Fetch) {
        self.roomVersion = roomVersion
        self.rejected = rejected
        self.fetch = fetch
    }

    mutating func event(_ id: EventID) throws(MatrixError) -> PDU {
        if let e = cache[id] { return e }
        guard let e = fetch(id) else { throw MatrixError(.notFound, "State resolution: missing event \(id)") }
        cache[id] = e
        return e
    }

    /// The event's auth events; from room version 12 the create event is implied by the room ID
    /// and added here, as Synapse's `auth_event_ids()` does.
    func authEvents(of e: PDU) -> [EventID] {
        guard roomVersion.hashBasedRoomIDs, e.type != EventType.roomCreate, let create = e.roomID?.createEventID else {
            return e.authEvents
        }
        return e.authEvents.contains(create) ? e.authEvents : e.authEvents + [create]
    }

    mutating func resolve(_ stateSets: [StateMap]) throws(MatrixError) -> StateMap {
        let (unconflicted, conflicted) = StateResolution.separate(stateSets)
        if conflicted.isEmpty { return unconflicted }
        let conflictedSet = Set(conflicted.values.joined())
        // Conflicted events must be known; auth chain events we cannot load are left out (Synapse).
        for id in conflictedSet { _ = try event(id) }

        // Full conflicted set: conflicted events, the auth difference and (v2.1) the subgraph.
        var full = conflictedSet
        full.formUnion(try authDifference(stateSets))
        if roomVersion.stateResolution == .v2_1 { full.formUnion(try conflictedSubgraph(conflictedSet)) }
        full = full.filter { fetchable($0) }

        // 1. Power events and their auth chains within the full conflicted set.
        var power: [EventID] = []
        for id in full where isPowerEvent(try event(id)) { power.append(id) }
        let sortedPower = try reverseTopologicalPowerSort(power, within: full)
        // 2. Iterative auth checks from the unconflicted state (v2) or empty (v2.1).
        var state = try iterativeAuthChecks(sortedPower, base: roomVersion.stateResolution == .v2_1 ? [:] : unconflicted)
        // 3. The rest, by mainline of the resolved power levels.
        let powerSet = Set(sortedPower)
        let leftover = full.filter { !powerSet.contains($0) }
        let ordered = try mainlineSort(Array(leftover), powerLevels: state[.powerLevels])
        // 4. Iterative auth checks on top.
        state = try iterativeAuthChecks(ordered, base: state)
        // 5. Unconflicted state wins.
        state.merge(unconflicted) { _, u in u }
        return state
    }

    mutating func fetchable(_ id: EventID) -> Bool { (try? event(id)) != nil }

    func isPowerEvent(_ e: PDU) -> Bool {
        guard let sk = e.stateKey else { return false }
        switch e.type {
        case EventType.roomPowerLevels, EventType.roomJoinRules, EventType.roomCreate: return sk.isEmpty
        case EventType.roomMember:
            let m = e.membership
            return (m == MembershipState.leave || m == MembershipState.ban) && e.sender.rawValue != sk
        default: return false
        }
    }

    /// ∪ Cᵢ − ∩ Cᵢ, where Cᵢ is the auth chain of state set i including its own events (as Synapse).
    mutating func authDifference(_ stateSets: [StateMap]) throws(MatrixError) -> Set<EventID> {
        var chains: [Set<EventID>] = []
        for s in stateSets { chains.append(try closure(of: Array(s.values))) }
        guard var union = chains.first else { return [] }
        var intersection = union
        for c in chains.dropFirst() {
            union.formUnion(c)
            intersection.formIntersection(c)
        }
        return union.subtracting(intersection)
    }

    /// The events reachable from `start` over auth edges, `start` included.
    mutating func closure(of start: [EventID]) throws(MatrixError) -> Set<EventID> {
        var seen = Set(start)
        var stack = start
        while let id = stack.popLast() {
            guard let e = try? event(id) else { continue }
            for a in authEvents(of: e) where seen.insert(a).inserted { stack.append(a) }
        }
        return seen
    }

    /// v2.1: every event on an auth path between two conflicted events (endpoints included):
    /// events reachable from a conflicted event that themselves reach a conflicted event.
    mutating func conflictedSubgraph(_ conflicted: Set<EventID>) throws(MatrixError) -> Set<EventID> {
        let reachable = try closure(of: Array(conflicted))
        var reaches: [EventID: Bool] = [:]
        for c in conflicted { reaches[c] = true }
        // Iterative DFS computing "reaches a conflicted event" for each reachable event.
        // `entered` guards against cycles, which only forged version 1–2 events can form.
        var entered: Set<EventID> = []
        for root in reachable where reaches[root] == nil {
            var stack: [(EventID, Bool)] = [(root, false)]
            while let (id, expanded) = stack.popLast() {
                guard let e = try? event(id) else { reaches[id] = false; continue }
                let parents = authEvents(of: e)
                if expanded {
                    if reaches[id] == nil { reaches[id] = parents.contains { reaches[$0] == true } }
                } else {
                    if reaches[id] != nil || !entered.insert(id).inserted { continue }
                    stack.append((id, true))
                    for p in parents where reaches[p] == nil && !entered.contains(p) { stack.append((p, false)) }
                }
            }
        }
        return reachable.filter { reaches[$0] == true }
    }

    /// The sender's power level from the event's own auth events (used for ordering only).
    mutating func senderPowerLevel(_ e: PDU) throws(MatrixError) -> Int64 {
        var pl: PDU? = nil
        var create: PDU? = nil
        for a in authEvents(of: e) {
            guard let ae = try? event(a) else { continue }
            if ae.type == EventType.roomPowerLevels && ae.stateKey == "" { pl = ae }
            if ae.type == EventType.roomCreate && ae.stateKey == "" { create = ae }
        }
        let sender = e.sender.rawValue
        if roomVersion.privilegedCreators, let create,
           PowerLevels.creators(of: create, roomVersion: roomVersion).contains(sender) {
            return PowerLevels.infinite
        }
        guard let pl else {
            if let create {
                let creator = roomVersion.createHasCreator ? create.content["creator"]?.stringValue : create.sender.rawValue
                if creator == sender { return 100 }
            }
            return 0
        }
        let integerOnly = roomVersion.integerPowerLevels
        if let v = pl.content["users"]?[sender], let l = PowerLevels.parseLevel(v, integerOnly: integerOnly) { return l }
        if let v = pl.content["users_default"], let l = PowerLevels.parseLevel(v, integerOnly: integerOnly) { return l }
        return 0
    }

    /// Kahn's algorithm over the auth DAG restricted to `within`, taking at each step the
    /// smallest of (-power level, origin_server_ts, event_id).
    mutating func reverseTopologicalPowerSort(_ ids: [EventID], within: Set<EventID>) throws(MatrixError) -> [EventID] {
        var graph: [EventID: [EventID]] = [:]
        for id in ids {
            var stack = [id]
            while let eid = stack.popLast() {
                if graph[eid] != nil { continue }
                let e = try event(eid)
                let edges = authEvents(of: e).filter { within.contains($0) }
                graph[eid] = edges
                for a in edges where graph[a] == nil { stack.append(a) }
            }
        }
        var keys: [EventID: PowerOrder] = [:]
        for id in graph.keys {
            let e = try event(id)
            keys[id] = PowerOrder(power: try senderPowerLevel(e), ts: e.originServerTS, id: id)
        }
        return Self.topologicalSort(graph: graph, keys: keys)
    }

    struct PowerOrder: Comparable {
        var power: Int64, ts: Int64, id: EventID
        static func < (a: PowerOrder, b: PowerOrder) -> Bool {
            if a.power != b.power { return a.power > b.power }
            if a.ts != b.ts { return a.ts < b.ts }
            return a.id < b.id
        }
    }

    /// Lexicographically smallest topological order where each event comes after its auth events.
    static func topologicalSort<K: Comparable>(graph: [EventID: [EventID]], keys: [EventID: K]) -> [EventID] {
        var outdegree: [EventID: Int] = [:]
        var reverse: [EventID: [EventID]] = [:]
        for (node, edges) in graph {
            let unique = Set(edges)
            outdegree[node] = unique.count
            for a in unique { reverse[a, default: []].append(node) }
        }
        var heap = Heap<HeapEntry<K>>()
        for (node, d) in outdegree where d == 0 { heap.insert(HeapEntry(key: keys[node]!, id: node)) }
        var out: [EventID] = []
        out.reserveCapacity(graph.count)
        while let next = heap.popMin() {
            out.append(next.id)
            for parent in reverse[next.id] ?? [] {
                outdegree[parent]! -= 1
                if outdegree[parent] == 0 { heap.insert(HeapEntry(key: keys[parent]!, id: parent)) }
            }
        }
        return out
    }

    struct HeapEntry<K: Comparable>: Comparable {
        var key: K, id: EventID
        static func < (a: HeapEntry, b: HeapEntry) -> Bool { a.key < b.key }
        static func == (a: HeapEntry, b: HeapEntry) -> Bool { a.id == b.id }
    }

    /// Applies each event in order if it passes the auth rules against the state so far, with
    /// missing keys filled from its (non-rejected) auth events.
    mutating func iterativeAuthChecks(_ ids: [EventID], base: StateMap) throws(MatrixError) -> StateMap {
        var state = base
        for id in ids {
            let e = try event(id)
            var auth: AuthState = [:]
            for a in authEvents(of: e) {
                guard !rejected.contains(a), let ae = try? event(a), let key = ae.stateEntry else { continue }
                auth[key] = ae
            }
            var keys = AuthEventsSelection.stateKeys(for: e)
            keys.append(.create)
            for key in keys {
                if let sid = state[key], !rejected.contains(sid), let se = try? event(sid) { auth[key] = se }
            }
            if rejected.contains(id) { continue }
            do {
                try EventAuth.authorize(e, against: auth)
                if let key = e.stateEntry { state[key] = id }
            } catch {
                // Not allowed: the event is left out of the resolved state.
            }
        }
        return state
    }

    /// Orders events by their position on the mainline of `powerLevels`, then timestamp, then ID.
    mutating func mainlineSort(_ ids: [EventID], powerLevels: EventID?) throws(MatrixError) -> [EventID] {
        if ids.isEmpty { return [] }
        var mainline: [EventID] = []
        var onMainline: Set<EventID> = []
        var current = powerLevels
        while let p = current, onMainline.insert(p).inserted {
            mainline.append(p)
            current = try powerLevelsParent(of: try event(p))
        }
        var position: [EventID: Int] = [:]
        for (i, id) in mainline.reversed().enumerated() { position[id] = i + 1 }
        var keyed: [(depth: Int, ts: Int64, id: EventID)] = []
        keyed.reserveCapacity(ids.count)
        for id in ids {
            var depth = 0
            var cursor: PDU? = try event(id)
            var visited: Set<EventID> = []
            while let c = cursor, visited.insert(c.eventID).inserted {
                if let d = position[c.eventID] { depth = d; break }
                cursor = try powerLevelsParent(of: c).map { (p) throws(MatrixError) -> PDU in try event(p) }
            }
            keyed.append((depth, try event(id).originServerTS, id))
        }
        keyed.sort { a, b in
            if a.depth != b.depth { return a.depth < b.depth }
            if a.ts != b.ts { return a.ts < b.ts }
            return a.id < b.id
        }
        return keyed.map(\.id)
    }

    mutating func powerLevelsParent(of e: PDU) throws(MatrixError) -> EventID? {
        for a in authEvents(of: e) {
            if let ae = try? event(a), ae.type == EventType.roomPowerLevels, ae.stateKey == "" { return a }
        }
        return nil
    }
}

/// A binary min-heap.
struct Heap<Element: Comparable> {
    var items: [Element] = []

    mutating func insert(_ x: Element) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[i] < items[p] { items.swapAt(i, p); i = p } else { break }
        }
    }

    mutating func popMin() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let min = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l] < items[m] { m = l }
            if r < items.count && items[r] < items[m] { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return min
    }
}
