import Testing
@testable import Matrix

// The worked cases of state resolution v2 (ban vs power levels, join rule evasion, off-topic
// power levels, topic races, mainline ordering), built as DAGs the way Synapse's state tests
// build them: events are processed in topological order, the state before an event with several
// prev events is the resolution of their states, and auth events come from that state.

let ALICE = "@alice:example.com", BOB = "@bob:example.com", CHARLIE = "@charlie:example.com"
let EVELYN = "@evelyn:example.com", ZARA = "@zara:example.com"

struct FakeEvent {
    var id: String, sender: String, type: String, stateKey: String?, content: [String: JSON]
    init(_ id: String, _ sender: String, _ type: String, _ stateKey: String?, _ content: [String: JSON] = [:]) {
        self.id = id; self.sender = sender; self.type = type; self.stateKey = stateKey; self.content = content
    }
    var eventID: EventID { try! EventID(parsing: "$\(id):example.com") }
}

let initialEvents = [
    FakeEvent("CREATE", ALICE, "m.room.create", "", ["creator": .string(ALICE)]),
    FakeEvent("IMA", ALICE, "m.room.member", ALICE, ["membership": "join"]),
    FakeEvent("IPOWER", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100]]),
    FakeEvent("IJR", ALICE, "m.room.join_rules", "", ["join_rule": "public"]),
    FakeEvent("IMB", BOB, "m.room.member", BOB, ["membership": "join"]),
    FakeEvent("IMC", CHARLIE, "m.room.member", CHARLIE, ["membership": "join"]),
    FakeEvent("IMZ", ZARA, "m.room.member", ZARA, ["membership": "join"]),
    FakeEvent("START", ZARA, "m.room.message", nil),
    FakeEvent("END", ZARA, "m.room.message", nil),
]
let initialEdges = ["START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"]

/// Room version 2 with state resolution v2.1 (room version 12's algorithm) on v2-style events.
let v2WithV21: RoomVersion = { var v = RoomVersion.v2; v.stateResolution = .v2_1; return v }()

/// Builds the DAG and returns the states at START and END, as node IDs.
func resolveDAG(_ events: [FakeEvent], _ edges: [[String]], version: RoomVersion) throws -> (start: [StateKey: String], end: [StateKey: String]) {
    var fakes: [String: FakeEvent] = [:]
    var graph: [String: Set<String>] = [:]
    for e in initialEvents + events { fakes[e.id] = e; graph[e.id] = [] }
    for chain in [initialEdges] + edges {
        for (a, b) in zip(chain, chain.dropFirst()) { graph[a]!.insert(b) }
    }
    // Topological order: prev events first, ties by node ID.
    var order: [String] = []
    var remaining = graph
    while !remaining.isEmpty {
        let ready = remaining.filter { $0.value.isSubset(of: Set(order)) }.keys.sorted()
        let next = ready.first!
        order.append(next)
        remaining[next] = nil
    }
    var events: [EventID: PDU] = [:]
    var stateAfter: [String: StateMap] = [:]
    var ts: Int64 = 0
    for node in order {
        let fake = fakes[node]!
        let prev = graph[node]!.sorted()
        let before: StateMap
        switch prev.count {
        case 0: before = [:]
        case 1: before = stateAfter[prev[0]]!
        default:
            before = try StateResolution.resolve(prev.map { stateAfter[$0]! }, roomVersion: version) { events[$0] }
        }
        let keys = AuthEventsSelection.stateKeys(type: fake.type, sender: fake.sender, stateKey: fake.stateKey,
                                                 content: fake.content, roomVersion: .v6)
        let auth = keys.compactMap { before[$0] }
        var json: [String: JSON] = [
            "type": .string(fake.type), "sender": .string(fake.sender), "room_id": "!test:example.com",
            "content": .object(fake.content), "origin_server_ts": .int(ts), "depth": 1,
            "auth_events": .array(auth.map { .string($0.rawValue) }),
            "prev_events": .array(prev.map { .string(fakes[$0]!.eventID.rawValue) }),
            "event_id": .string(fake.eventID.rawValue),
        ]
        ts += 1
        if let sk = fake.stateKey { json["state_key"] = .string(sk) }
        let pdu = try PDU(json: .object(json), roomVersion: version)
        events[pdu.eventID] = pdu
        var after = before
        if let key = pdu.stateEntry { after[key] = pdu.eventID }
        stateAfter[node] = after
    }
    func nodes(_ s: StateMap) -> [StateKey: String] { s.mapValues { String($0.rawValue.dropFirst().prefix { $0 != ":" }) } }
    return (nodes(stateAfter["START"]!), nodes(stateAfter["END"]!))
}

/// As Synapse's `do_check`: the END state, restricted to the expected keys and the keys that
/// changed since START, must equal the expected entries.
func check(_ events: [FakeEvent], _ edges: [[String]], expect expected: [String]) throws {
    let all = initialEvents + events
    var want: [StateKey: String] = [:]
    for id in expected {
        let f = all.first { $0.id == id }!
        want[StateKey(f.type, f.stateKey!)] = id
    }
    for version in [RoomVersion.v2, v2WithV21] {
        let (start, end) = try resolveDAG(events, edges, version: version)
        let got = end.filter { want[$0.key] != nil || start[$0.key] != $0.value }
        #expect(got == want, "state resolution \(version.stateResolution)")
    }
}

@Test func banVersusPowerLevels() throws {
    try check([
        FakeEvent("PA", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("MA", ALICE, "m.room.member", ALICE, ["membership": "join"]),
        FakeEvent("MB", ALICE, "m.room.member", BOB, ["membership": "ban"]),
        FakeEvent("PB", BOB, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
    ], [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]], expect: ["PA", "MA", "MB"])
}

@Test func joinRuleEvasion() throws {
    try check([
        FakeEvent("JR", ALICE, "m.room.join_rules", "", ["join_rules": "private"]),
        FakeEvent("ME", EVELYN, "m.room.member", EVELYN, ["membership": "join"]),
    ], [["END", "JR", "START"], ["END", "ME", "START"]], expect: ["JR"])
}

@Test func offTopicPowerLevels() throws {
    try check([
        FakeEvent("PA", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("PB", BOB, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50, CHARLIE: 50]]),
        FakeEvent("PC", CHARLIE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50, CHARLIE: 0]]),
    ], [["END", "PC", "PB", "PA", "START"], ["END", "PA"]], expect: ["PC"])
}

@Test func topicBasic() throws {
    try check([
        FakeEvent("T1", ALICE, "m.room.topic", ""),
        FakeEvent("PA1", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T2", ALICE, "m.room.topic", ""),
        FakeEvent("PA2", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 0]]),
        FakeEvent("PB", BOB, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T3", BOB, "m.room.topic", ""),
    ], [["END", "PA2", "T2", "PA1", "T1", "START"], ["END", "T3", "PB", "PA1"]], expect: ["PA2", "T2"])
}

@Test func topicReset() throws {
    try check([
        FakeEvent("T1", ALICE, "m.room.topic", ""),
        FakeEvent("PA", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T2", BOB, "m.room.topic", ""),
        FakeEvent("MB", ALICE, "m.room.member", BOB, ["membership": "ban"]),
    ], [["END", "MB", "T2", "PA", "T1", "START"], ["END", "T1"]], expect: ["T1", "MB", "PA"])
}

@Test func topicWithPowerLevelRace() throws {
    try check([
        FakeEvent("T1", ALICE, "m.room.topic", ""),
        FakeEvent("PA1", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T2", ALICE, "m.room.topic", ""),
        FakeEvent("PA2", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 0]]),
        FakeEvent("PB", BOB, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T3", BOB, "m.room.topic", ""),
        FakeEvent("MZ1", ZARA, "m.room.message", nil),
        FakeEvent("T4", ALICE, "m.room.topic", ""),
    ], [["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"], ["END", "MZ1", "T3", "PB", "PA1"]],
       expect: ["T4", "PA2"])
}

@Test func mainlineOrdering() throws {
    // T3 wins: the other topics cite older power levels (without mainline ordering T4 would win).
    try check([
        FakeEvent("T1", ALICE, "m.room.topic", ""),
        FakeEvent("PA1", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T2", ALICE, "m.room.topic", ""),
        FakeEvent("PA2", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50], "events": ["m.room.power_levels": 100]]),
        FakeEvent("PB", BOB, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]]),
        FakeEvent("T3", BOB, "m.room.topic", ""),
        FakeEvent("T4", ALICE, "m.room.topic", ""),
    ], [["END", "T3", "PA2", "T2", "PA1", "T1", "START"], ["END", "T4", "PB", "PA1"]], expect: ["T3", "PA2"])
}

@Test func lexicographicalTopologicalSort() {
    func id(_ s: String) -> EventID { EventID(unchecked: "$" + s) }
    let graph: [EventID: [EventID]] = [id("l"): [id("o")], id("m"): [id("n"), id("o")], id("n"): [id("o")],
                                       id("o"): [], id("p"): [id("o")]]
    let keys = Dictionary(uniqueKeysWithValues: graph.keys.map { ($0, $0.rawValue) })
    #expect(StateResolutionV2.topologicalSort(graph: graph, keys: keys).map(\.rawValue) == ["$o", "$l", "$n", "$m", "$p"])
}

@Test func separateTreatsMissingKeysAsConflicted() {
    let a = EventID(unchecked: "$a"), b = EventID(unchecked: "$b")
    let (u, c) = StateResolution.separate([[StateKey.create: a, .joinRules: a], [StateKey.create: a, .powerLevels: b]])
    #expect(u == [.create: a])
    #expect(c == [.joinRules: [a], .powerLevels: [b]])
}

@Test func simpleForkOfJoinsResolvesToBoth() throws {
    let v = RoomVersion.v2
    func ev(_ id: String, _ sender: String, _ type: String, _ sk: String, _ content: [String: JSON], auth: [String], prev: [String], ts: Int64) throws -> PDU {
        try PDU(json: ["type": .string(type), "sender": .string(sender), "state_key": .string(sk), "room_id": "!test:example.com",
                       "content": .object(content), "origin_server_ts": .int(ts), "event_id": .string("$\(id):example.com"),
                       "auth_events": .array(auth.map { .string("$\($0):example.com") }),
                       "prev_events": .array(prev.map { .string("$\($0):example.com") })], roomVersion: v)
    }
    let create = try ev("CREATE", ALICE, "m.room.create", "", ["creator": .string(ALICE)], auth: [], prev: [], ts: 0)
    let ima = try ev("IMA", ALICE, "m.room.member", ALICE, ["membership": "join"], auth: ["CREATE"], prev: ["CREATE"], ts: 1)
    let ijr = try ev("IJR", ALICE, "m.room.join_rules", "", ["join_rule": "public"], auth: ["CREATE", "IMA"], prev: ["IMA"], ts: 2)
    let imb = try ev("IMB", BOB, "m.room.member", BOB, ["membership": "join"], auth: ["CREATE", "IJR"], prev: ["IJR"], ts: 3)
    let imc = try ev("IMC", CHARLIE, "m.room.member", CHARLIE, ["membership": "join"], auth: ["CREATE", "IJR"], prev: ["IJR"], ts: 4)
    let map = Dictionary(uniqueKeysWithValues: [create, ima, ijr, imb, imc].map { ($0.eventID, $0) })
    func state(_ es: [PDU]) -> StateMap { Dictionary(uniqueKeysWithValues: es.map { ($0.stateEntry!, $0.eventID) }) }
    let resolved = try StateResolution.resolve([state([create, ima, ijr, imb]), state([create, ima, ijr, imc])], roomVersion: v) { map[$0] }
    #expect(resolved == state([create, ima, ijr, imb, imc]))
    // A missing event is an error, not a crash.
    #expect(errorCode { _ = try StateResolution.resolve([state([create, ima, ijr, imb]), state([create, ima, ijr, imc])], roomVersion: v) { _ in nil } } == .notFound)
}

@Test func conflictedSubgraphIsThePathsBetweenConflictedEvents() throws {
    // Auth edges: C2 -> X -> C1 -> CREATE, Y -> C1, C2 -> Z. Conflicted: C1 and C2.
    func ev(_ id: String, auth: [String]) throws -> PDU {
        try PDU(json: ["type": "m.room.member", "state_key": .string("@\(id.lowercased()):example.com"),
                       "sender": .string("@\(id.lowercased()):example.com"), "room_id": "!test:example.com",
                       "content": ["membership": "join"], "event_id": .string("$\(id):example.com"),
                       "auth_events": .array(auth.map { .string("$\($0):example.com") })], roomVersion: v2WithV21)
    }
    let events = [try ev("CREATE", auth: []), try ev("C1", auth: ["CREATE"]), try ev("X", auth: ["C1"]),
                  try ev("Y", auth: ["C1"]), try ev("Z", auth: []), try ev("C2", auth: ["X", "Z"])]
    let map = Dictionary(uniqueKeysWithValues: events.map { ($0.eventID, $0) })
    var resolver = StateResolutionV2(roomVersion: v2WithV21, rejected: []) { map[$0] }
    let sub = try resolver.conflictedSubgraph([events[1].eventID, events[5].eventID])
    #expect(Set(sub.map(\.rawValue)) == ["$C1:example.com", "$X:example.com", "$C2:example.com"])
}

@Test func version1ResolutionPrefersTheAuthorisedPowerLevels() throws {
    let v = RoomVersion.v1
    func ev(_ id: String, _ sender: String, _ type: String, _ sk: String, _ content: [String: JSON], auth: [String], depth: Int64) throws -> PDU {
        try PDU(json: ["type": .string(type), "sender": .string(sender), "state_key": .string(sk), "room_id": "!test:example.com",
                       "content": .object(content), "depth": .int(depth), "event_id": .string("$\(id):example.com"),
                       "auth_events": .array(auth.map { .array([.string("$\($0):example.com"), [:]]) }),
                       "prev_events": []], roomVersion: v)
    }
    let create = try ev("CREATE", ALICE, "m.room.create", "", ["creator": .string(ALICE)], auth: [], depth: 1)
    let ima = try ev("IMA", ALICE, "m.room.member", ALICE, ["membership": "join"], auth: ["CREATE"], depth: 2)
    let p0 = try ev("P0", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 50]], auth: ["CREATE", "IMA"], depth: 3)
    let imb = try ev("IMB", BOB, "m.room.member", BOB, ["membership": "join"], auth: ["CREATE", "P0"], depth: 4)
    // Alice demotes Bob; Bob (concurrently, deeper) tries to promote himself over Alice.
    let pa = try ev("PA", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 0]], auth: ["CREATE", "IMA", "P0"], depth: 5)
    let pb = try ev("PB", BOB, "m.room.power_levels", "", ["users": [ALICE: 100, BOB: 100]], auth: ["CREATE", "IMB", "P0"], depth: 6)
    let map = Dictionary(uniqueKeysWithValues: [create, ima, p0, imb, pa, pb].map { ($0.eventID, $0) })
    let base: StateMap = [.create: create.eventID, .member(ALICE): ima.eventID, .member(BOB): imb.eventID]
    var s1 = base, s2 = base
    s1[.powerLevels] = pa.eventID
    s2[.powerLevels] = pb.eventID
    let resolved = try StateResolution.resolve([s1, s2], roomVersion: v) { map[$0] }
    #expect(resolved[.powerLevels] == pa.eventID)
    #expect(resolved[.member(BOB)] == imb.eventID)
    #expect(StateResolutionV1.hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
}

/// Real version 12 events: hash event IDs, room ID from the create event, no create in auth_events.
struct V12Room {
    var events: [EventID: PDU] = [:]
    var ts: Int64 = 0
    let create: PDU

    init() throws {
        create = try PDU(json: ["type": "m.room.create", "state_key": "", "sender": .string(ALICE), "origin_server_ts": 0,
                                "content": ["room_version": "12"], "prev_events": [], "auth_events": [], "depth": 1],
                         roomVersion: .v12)
        events[create.eventID] = create
    }

    /// Builds an event whose auth events are selected from `state`, authorizes it and applies it.
    mutating func send(_ state: inout StateMap, _ type: String, _ sender: String, _ stateKey: String?,
                       _ content: [String: JSON]) throws -> PDU {
        ts += 1
        let auth = AuthEventsSelection.stateKeys(type: type, sender: sender, stateKey: stateKey, content: content,
                                                 roomVersion: .v12).compactMap { state[$0] }
        var json: [String: JSON] = ["type": .string(type), "sender": .string(sender), "room_id": .string(create.effectiveRoomID.rawValue),
                                    "content": .object(content), "origin_server_ts": .int(ts), "depth": .int(ts + 1),
                                    "prev_events": [.string(create.eventID.rawValue)], "auth_events": .array(auth.map { .string($0.rawValue) })]
        if let stateKey { json["state_key"] = .string(stateKey) }
        let e = try PDU(json: .object(json), roomVersion: .v12)
        var authState: AuthState = [:]
        for (k, id) in state { authState[k] = events[id] }
        try EventAuth.authorize(e, against: authState)
        events[e.eventID] = e
        if let key = e.stateEntry { state[key] = e.eventID }
        return e
    }
}

@Test func version12ForkBanBeatsConcurrentKickAndTopic() throws {
    var room = try V12Room()
    var s: StateMap = [.create: room.create.eventID]
    _ = try room.send(&s, "m.room.member", ALICE, ALICE, ["membership": "join"])
    _ = try room.send(&s, "m.room.power_levels", ALICE, "", ["users": [BOB: 50]])
    _ = try room.send(&s, "m.room.join_rules", ALICE, "", ["join_rule": "public"])
    _ = try room.send(&s, "m.room.member", BOB, BOB, ["membership": "join"])
    _ = try room.send(&s, "m.room.member", CHARLIE, CHARLIE, ["membership": "join"])
    var forkA = s, forkB = s
    let ban = try room.send(&forkA, "m.room.member", ALICE, BOB, ["membership": "ban"])
    _ = try room.send(&forkB, "m.room.topic", BOB, "", ["topic": "bob was here"])
    _ = try room.send(&forkB, "m.room.member", BOB, CHARLIE, ["membership": "leave"])
    let events = room.events
    let resolved = try StateResolution.resolve([forkA, forkB], roomVersion: .v12) { events[$0] }
    #expect(resolved[.member(BOB)] == ban.eventID)
    #expect(resolved[.member(CHARLIE)] == s[.member(CHARLIE)]) // Bob's kick fails: he is banned first
    #expect(resolved[StateKey("m.room.topic", "")] == nil)      // and so does his topic
    #expect(resolved[.create] == room.create.eventID)
    // Order of the state sets does not matter.
    #expect(try StateResolution.resolve([forkB, forkA], roomVersion: .v12) { events[$0] } == resolved)
}

@Test func forgedAuthCyclesDoNotHang() throws {
    // Version 2 IDs are chosen by the sender, so a malicious server can forge auth cycles:
    // here two power levels events cite each other, and other events cite both.
    func ev(_ id: String, _ type: String, _ sk: String, _ content: [String: JSON], auth: [String], ts: Int64) throws -> PDU {
        try PDU(json: ["type": .string(type), "state_key": .string(sk), "sender": .string(ALICE), "room_id": "!test:example.com",
                       "content": .object(content), "event_id": .string("$\(id):example.com"),
                       "origin_server_ts": .int(ts), "auth_events": .array(auth.map { .string("$\($0):example.com") })],
                roomVersion: .v2)
    }
    let c = try ev("C", "m.room.create", "", ["creator": .string(ALICE)], auth: [], ts: 0)
    let m = try ev("M", "m.room.member", ALICE, ["membership": "join"], auth: ["C"], ts: 1)
    let a = try ev("A", "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["C", "M", "B"], ts: 2)
    let b = try ev("B", "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["C", "M", "A"], ts: 3)
    // Q and R: a power levels cycle below both forks (in both auth chains), so the mainline walks it.
    let q = try ev("Q", "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["C", "M", "R"], ts: 4)
    let r = try ev("R", "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["C", "M", "Q"], ts: 5)
    let p1 = try ev("P1", "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["C", "M", "Q"], ts: 6)
    let p2 = try ev("P2", "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["C", "M", "Q"], ts: 7)
    let x = try ev("X", "m.room.member", BOB, ["membership": "join"], auth: ["C", "Y", "A"], ts: 8)
    let y = try ev("Y", "m.room.member", BOB, ["membership": "join"], auth: ["C", "X", "B"], ts: 9)
    let t1 = try ev("T1", "m.room.topic", "", [:], auth: ["C", "M", "P1"], ts: 10)
    let t2 = try ev("T2", "m.room.topic", "", [:], auth: ["C", "M", "P2"], ts: 11)
    let map = Dictionary(uniqueKeysWithValues: [c, m, a, b, q, r, p1, p2, x, y, t1, t2].map { ($0.eventID, $0) })
    let topic = StateKey("m.room.topic", "")
    let s1: StateMap = [.create: c.eventID, .member(ALICE): m.eventID, .powerLevels: p1.eventID, topic: t1.eventID,
                        .member(BOB): x.eventID, StateKey("m.x", ""): a.eventID]
    let s2: StateMap = [.create: c.eventID, .member(ALICE): m.eventID, .powerLevels: p2.eventID, topic: t2.eventID,
                        .member(BOB): y.eventID, StateKey("m.x", ""): b.eventID]
    for version in [RoomVersion.v2, v2WithV21] {
        let resolved = try StateResolution.resolve([s1, s2], roomVersion: version) { map[$0] }
        #expect(resolved[.create] == c.eventID && resolved[.powerLevels] != nil)
    }
}

/// Server-server API, "Rejection": a rejected event is never part of the resolved state, even
/// when it would otherwise win its conflict (the room actor passes what it rejected).
@Test func rejectedEventsNeverWinTheirConflict() throws {
    for v in [RoomVersion.v2, v2WithV21] {
        func ev(_ id: String, _ sender: String, _ type: String, _ sk: String, _ content: [String: JSON], auth: [String], ts: Int64) throws -> PDU {
            try PDU(json: ["type": .string(type), "sender": .string(sender), "state_key": .string(sk), "room_id": "!test:example.com",
                           "content": .object(content), "origin_server_ts": .int(ts), "event_id": .string("$\(id):example.com"),
                           "auth_events": .array(auth.map { .string("$\($0):example.com") }), "prev_events": []], roomVersion: v)
        }
        let create = try ev("CREATE", ALICE, "m.room.create", "", ["creator": .string(ALICE)], auth: [], ts: 0)
        let ima = try ev("IMA", ALICE, "m.room.member", ALICE, ["membership": "join"], auth: ["CREATE"], ts: 1)
        let ipower = try ev("IPOWER", ALICE, "m.room.power_levels", "", ["users": [ALICE: 100]], auth: ["CREATE", "IMA"], ts: 2)
        let ijr = try ev("IJR", ALICE, "m.room.join_rules", "", ["join_rule": "public"], auth: ["CREATE", "IMA", "IPOWER"], ts: 3)
        let jr = try ev("JR", ALICE, "m.room.join_rules", "", ["join_rule": "invite"], auth: ["CREATE", "IMA", "IPOWER"], ts: 4)
        // A topic citing the rejected join rule among its auth events is still checked on the state.
        let topic = try ev("T", ALICE, "m.room.topic", "", ["topic": "x"], auth: ["CREATE", "IMA", "IPOWER"], ts: 5)
        let map = Dictionary(uniqueKeysWithValues: [create, ima, ipower, ijr, jr, topic].map { ($0.eventID, $0) })
        let base: StateMap = [.create: create.eventID, .member(ALICE): ima.eventID, .powerLevels: ipower.eventID]
        var s1 = base, s2 = base
        s1[.joinRules] = ijr.eventID
        s2[.joinRules] = jr.eventID
        s2[StateKey("m.room.topic", "")] = topic.eventID
        let plain = try StateResolution.resolve([s1, s2], roomVersion: v) { map[$0] }
        #expect(plain[.joinRules] == jr.eventID, "\(v.stateResolution)")
        let refusing = try StateResolution.resolve([s1, s2], roomVersion: v, rejected: [jr.eventID]) { map[$0] }
        #expect(refusing[.joinRules] == ijr.eventID, "\(v.stateResolution)")
        #expect(refusing[StateKey("m.room.topic", "")] == topic.eventID, "\(v.stateResolution)")
    }
}
