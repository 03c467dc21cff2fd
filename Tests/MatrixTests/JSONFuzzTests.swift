import Testing
@testable import Matrix

/// A deterministic generator (SplitMix64) so failures reproduce.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}

let fuzzSeeds: [String] = [
    #"{"type":"m.room.message","content":{"body":"héllo \"w\" \\ \n 😀","n":-12,"f":1.5e3,"ok":true,"no":null},"a":[1,2,[3,{}]]}"#,
    #"[{"a":"\u0041\ud83d\ude00\u00e9"},-0,0.0,1E+2,9223372036854775807,-9223372036854775808,18446744073709551616]"#,
    #"{"nested":{"deeper":{"deepest":[[[[[]]]]]}},"s":"\t\b\f\r\/"}"#,
    "\"just a string\"", "12345", "true", "null", "[]", "{}",
]

let fuzzTokens: [[UInt8]] = ["{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\\udc00", "-", "0", "1e", ".",
                              "true", "null", "fals", " ", "\u{0}", "\u{1f}", "é", "😀"].map { Array($0.utf8) }
    + [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]]

func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var b = input
    for _ in 0..<(1 + rng.below(4)) {
        switch rng.below(7) {
        case 0 where !b.isEmpty: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())
        case 1 where !b.isEmpty: b.remove(at: rng.below(b.count))
        case 2: b.insert(contentsOf: fuzzTokens[rng.below(fuzzTokens.count)], at: rng.below(b.count + 1))
        case 3 where !b.isEmpty: b = Array(b.prefix(rng.below(b.count)))
        case 4 where b.count > 2:
            let i = rng.below(b.count), j = rng.below(b.count)
            b.insert(contentsOf: b[min(i, j)..<max(i, j)], at: rng.below(b.count + 1))
        case 5 where !b.isEmpty: b[rng.below(b.count)] ^= UInt8(1 << rng.below(8))
        default: b.append(fuzzTokens[rng.below(fuzzTokens.count)].first ?? 0)
        }
    }
    return b
}

/// The JSON parser's fuzz target: 50,000 mutated inputs. Every input must either parse or throw
/// `M_NOT_JSON`; whatever parses must survive encode → parse unchanged, and canonical encoding
/// must either succeed (and re-parse to the same value, up to float normalisation) or throw
/// `M_BAD_JSON`. A crash fails the whole test run.
@Test func jsonParserFuzz() throws {
    var rng = SplitMix64(state: 0x4D79_656C_696E)
    var parsed = 0, rejected = 0
    for i in 0..<50_000 {
        let seed = Array(fuzzSeeds[i % fuzzSeeds.count].utf8)
        let input = mutate(seed, &rng)
        let value: JSON
        do {
            value = try JSON.parse(input)
        } catch {
            #expect(error.code == .notJSON)
            rejected += 1
            continue
        }
        parsed += 1
        let again = try JSON.parse(value.encoded())
        #expect(again == value, "round trip of \(input)")
        do {
            let canonical = try value.canonicalEncoded()
            let reparsed = try JSON.parse(canonical)
            #expect(try reparsed.canonicalEncoded() == canonical, "canonical form is stable")
        } catch {
            #expect(error.code == .badJSON)
        }
    }
    // Both paths must have been exercised, or the target is not testing anything.
    #expect(parsed > 1_000 && rejected > 1_000)
}

/// Random byte strings, including long ones, never crash the parser.
@Test func jsonParserRandomBytes() {
    var rng = SplitMix64(state: 42)
    for _ in 0..<5_000 {
        let n = rng.below(64)
        let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        do { _ = try JSON.parse(bytes) } catch { #expect(error.code == .notJSON) }
    }
}

/// Identifier parsers and the event path (PDU, redaction, hashes, auth, state resolution) on
/// mutated input: errors are thrown, nothing traps.
@Test func identifiersAndEventsNeverTrap() throws {
    var rng = SplitMix64(state: 7)
    let seeds = ["@alice:example.org", "!room:example.org:8448", "$ev:[::1]:80", "#a:b", "mxc://s/m", "1.2.3.4:5",
                 "!" + String(repeating: "A", count: 43)]
    for i in 0..<20_000 {
        let s = String(decoding: mutate(Array(seeds[i % seeds.count].utf8), &rng), as: UTF8.self)
        _ = try? ServerName(parsing: s); _ = try? UserID(parsing: s); _ = try? RoomID(parsing: s)
        _ = try? EventID(parsing: s); _ = try? RoomAlias(parsing: s); _ = try? MXCURI(parsing: s)
        _ = try? DeviceID(parsing: s); _ = try? UserID.validateLocalpart(s)
    }
    var room = try TestRoom.standard(.v12, users: ["@mod:a": 50])
    try room.join("@mod:a")
    let template = room.make("m.room.member", sender: "@mod:a", stateKey: "@x:a",
                             content: ["membership": "ban", "reason": "spam", "third_party_invite": ["signed": ["mxid": "@x:a", "token": "t"]]])
    let bytes = JSON.object(template.json).encoded()
    var events = 0
    for _ in 0..<5_000 {
        guard let json = try? JSON.parse(mutate(bytes, &rng)) else { continue }
        for version in [RoomVersion.v1, .v6, .v10, .v12] {
            _ = Redaction.redact(json, roomVersion: version)
            _ = try? EventHashing.referenceHash(of: json, roomVersion: version)
            _ = try? EventHashing.contentHash(of: json, roomVersion: version)
            guard let pdu = try? PDU(json: json, roomVersion: version, eventID: EventID(parsing: "$fuzz:a")) else { continue }
            events += 1
            _ = try? EventAuth.authorize(pdu, against: room.state)
            _ = try? EventAuth.checkAuthEvents(pdu, authEvents: Array(room.state.values))
            _ = try? pdu.checkSizeLimits()
            var state: StateMap = [:]
            for (k, v) in room.state { state[k] = v.eventID }
            var other = state
            if let key = pdu.stateEntry { other[key] = pdu.eventID }
            var known = Dictionary(uniqueKeysWithValues: room.state.values.map { ($0.eventID, $0) })
            known[pdu.eventID] = pdu
            _ = try? StateResolution.resolve([state, other], roomVersion: version) { known[$0] }
        }
    }
    #expect(events > 100) // mutated events that still made valid PDUs went through every stage
}
