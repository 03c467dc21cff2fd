// myelin-micro: micro-benchmarks of the Matrix protocol core (issue 4).
// Run: swift build -c release --product myelin-micro && .build/release/myelin-micro
// Each benchmark: warm-up, then N timed iterations; reports median and minimum ns per op.
// Time is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: on the shared
// 2-core machine neighbours inflate wall time several-fold, CPU time per op stays stable.
// Foundation is used only for the JSONSerialization comparison.
import Foundation
import Matrix
import Transport

#if canImport(Glibc)
import Glibc
#endif

@inline(never) func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct Result { var name: String; var median: Double; var min: Double; var iterations: Int }

/// Times `body` in batches of `batch` calls, `samples` times, after `warmup` calls.
func measure(_ name: String, samples: Int, batch: Int, warmup: Int, _ body: () -> Void) -> Result {
    for _ in 0..<warmup { body() }
    var perOp: [Double] = []
    perOp.reserveCapacity(samples)
    for _ in 0..<samples {
        let t0 = now()
        for _ in 0..<batch { body() }
        perOp.append(Double(now() - t0) / Double(batch))
    }
    perOp.sort()
    let r = Result(name: name, median: perOp[perOp.count / 2], min: perOp[0], iterations: samples * batch)
    let pad = name.padding(toLength: 58, withPad: " ", startingAt: 0)
    print("\(pad) median \(format(r.median))  min \(format(r.min))  (\(r.iterations) ops)")
    return r
}

func format(_ ns: Double) -> String {
    let s: String
    if ns >= 1_000_000 { s = String(format: "%.2f ms", ns / 1_000_000) }
    else if ns >= 1_000 { s = String(format: "%.2f µs", ns / 1_000) }
    else { s = String(format: "%.0f ns", ns) }
    return s.padding(toLength: 10, withPad: " ", startingAt: 0)
}

// MARK: - A typical ~1 KiB event (a federation PDU: m.room.message with formatted body)

let typicalEvent = #"""
{"auth_events":["$7zd0DZlvm4yVhgKfWaJeoRmSSsSuoZJM8jt6nHQETsA","$Ouz2vaRHmKuRZFHZRDZRXhNtXPeFHq-QDDqXySySI1E","$wvsW8JQXQtHEHAr3H8F4dZ9Qk4-M8yVTbGr5nxqRVjw"],"content":{"body":"Has anyone tried the new release? The changelog says state resolution got a lot faster, and I would like to know whether the upgrade went smoothly for larger rooms before I do it on our server tonight.","format":"org.matrix.custom.html","formatted_body":"Has anyone tried the <b>new release</b>? The changelog says state resolution got a lot faster, and I would like to know whether the upgrade went smoothly for larger rooms before I do it on <i>our</i> server tonight.","m.mentions":{},"msgtype":"m.text"},"depth":48211,"hashes":{"sha256":"Ab2x6qJbZTBv0n4k8Gm1wI0yUqkS9hFqKx9k3yJ0Z7M"},"origin_server_ts":1732368000000,"prev_events":["$Jj0n7CqKk9m3v9TgZ3oXh4x3u7y7pU5d6mY6cP3y2mQ"],"room_id":"!OGEhHVWSdvArJzumhm:matrix.org","sender":"@alice:example.org","signatures":{"example.org":{"ed25519:a_Zfgh":"O8s0lsQQm4tRQGEYs8AJx0XTqnqIMq6aK0zvV8CfrhZ1dOV3GqGJ4C2X4n3xk6ZKg3FG0nQHq2VwUuKQ0yLwDw"}},"type":"m.room.message","unsigned":{"age_ts":1732368000000}}
"""#
let eventBytes = Array(typicalEvent.utf8)

print("myelin-micro — Matrix core micro-benchmarks (release build, thread CPU time per op)")
print("event size: \(eventBytes.count) bytes\n")

// 1. Parse + canonical encode vs Foundation JSONSerialization round trip.
let ours = measure("JSON.parse + canonicalEncoded (1 KiB event)", samples: 101, batch: 200, warmup: 2000) {
    let v = try! JSON.parse(eventBytes)
    blackHole(try! v.canonicalEncoded())
}
let parseOnly = measure("JSON.parse only", samples: 101, batch: 200, warmup: 2000) {
    blackHole(try! JSON.parse(eventBytes))
}
let parsed = try! JSON.parse(eventBytes)
let encodeOnly = measure("canonicalEncoded only", samples: 101, batch: 200, warmup: 2000) {
    blackHole(try! parsed.canonicalEncoded())
}
let data = Data(eventBytes)
let foundation = measure("Foundation JSONSerialization parse + .sortedKeys write", samples: 101, batch: 100, warmup: 500) {
    let o = try! JSONSerialization.jsonObject(with: data)
    blackHole(try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]))
}
print(String(format: "  => ratio Foundation / Myelin (median): %.1fx\n", foundation.median / ours.median))
blackHole((parseOnly, encodeOnly))

// 2. Sign and verify an event.
let key = SigningKey.generate(version: "bench")
let v11 = RoomVersion(id: "11")!
var unsignedEvent = parsed
unsignedEvent["signatures"] = nil
unsignedEvent["hashes"] = nil
unsignedEvent["unsigned"] = nil
_ = measure("sign event (content hash + redact + ed25519)", samples: 51, batch: 100, warmup: 200) {
    blackHole(try! key.sign(event: unsignedEvent, roomVersion: v11, serverName: "example.org"))
}
let signedEvent = try! key.sign(event: unsignedEvent, roomVersion: v11, serverName: "example.org")
_ = measure("verify event signature (redact + canonical + ed25519)", samples: 51, batch: 100, warmup: 200) {
    try! EventHashing.verifySignature(of: signedEvent, roomVersion: v11, entity: "example.org",
                                      keyID: key.keyID, key: key.verifyKey)
}
_ = measure("event ID (reference hash, v11)", samples: 51, batch: 200, warmup: 500) {
    blackHole(try! EventHashing.eventID(of: signedEvent, roomVersion: v11))
}
print()

// 3. Authorize a message against the state of a 1,000-member room.
func pdu(_ id: String, _ type: String, _ sender: String, _ stateKey: String?, _ content: JSON, auth: [String] = [], prev: [String] = [], ts: Int64 = 0) -> PDU {
    var json: [String: JSON] = ["type": .string(type), "sender": .string(sender), "room_id": "!bench:example.org",
                                "content": content, "origin_server_ts": .int(ts), "depth": 1,
                                "auth_events": .array(auth.map { .string($0) }), "prev_events": .array(prev.map { .string($0) })]
    if let stateKey { json["state_key"] = .string(stateKey) }
    return try! PDU(json: .object(json), roomVersion: v11, eventID: EventID(parsing: id))
}

var authState: AuthState = [:]
let create = pdu("$create", "m.room.create", "@admin:example.org", "", ["room_version": "11"])
let pl = pdu("$pl", "m.room.power_levels", "@admin:example.org", "", ["users": ["@admin:example.org": 100, "@mod:example.org": 50],
                                                                       "events": ["m.room.power_levels": 100, "m.room.name": 50]],
             auth: ["$create"])
let jr = pdu("$jr", "m.room.join_rules", "@admin:example.org", "", ["join_rule": "public"], auth: ["$create", "$pl"])
authState[.create] = create
authState[.powerLevels] = pl
authState[.joinRules] = jr
for i in 0..<1000 {
    let u = "@user\(i):example.org"
    authState[.member(u)] = pdu("$m\(i)", "m.room.member", u, u, ["membership": "join"], auth: ["$create", "$pl", "$jr"])
}
let message = pdu("$msg", "m.room.message", "@user500:example.org", nil, ["msgtype": "m.text", "body": "hi"])
_ = measure("authorize m.room.message, 1,000-member room state", samples: 101, batch: 200, warmup: 1000) {
    try! EventAuth.authorize(message, against: authState)
}
let join = pdu("$join", "m.room.member", "@new:example.org", "@new:example.org", ["membership": "join"])
_ = measure("authorize m.room.member join, 1,000-member room state", samples: 101, batch: 200, warmup: 1000) {
    try! EventAuth.authorize(join, against: authState)
}
print()

// 4. Resolve two forks of a room with 10,000 state events.
var events: [EventID: PDU] = [:]
@MainActor func add(_ e: PDU) { events[e.eventID] = e }
var base: StateMap = [:]
let admin = "@admin:example.org"
add(create); add(pl); add(jr)
let ima = pdu("$ima", "m.room.member", admin, admin, ["membership": "join"], auth: ["$create"])
add(ima)
base[.create] = create.eventID; base[.powerLevels] = pl.eventID; base[.joinRules] = jr.eventID; base[.member(admin)] = ima.eventID
var ts: Int64 = 10
for i in 0..<9_996 {
    let u = "@user\(i):example.org"
    let e = pdu("$m\(i)", "m.room.member", u, u, ["membership": "join"], auth: ["$create", "$pl", "$jr"], ts: ts)
    ts += 1
    add(e)
    base[.member(u)] = e.eventID
}
// Fork A: the admin raises a moderator, changes the topic and bans 20 users.
var forkA = base, forkB = base
let plA = pdu("$plA", "m.room.power_levels", admin, "", ["users": ["@admin:example.org": 100, "@user1:example.org": 50],
                                                          "events": ["m.room.power_levels": 100, "m.room.name": 50]],
              auth: ["$create", "$pl", "$ima"], ts: ts); ts += 1
add(plA); forkA[.powerLevels] = plA.eventID
let topicA = pdu("$topicA", "m.room.topic", admin, "", ["topic": "A"], auth: ["$create", "$plA", "$ima"], ts: ts); ts += 1
add(topicA); forkA[StateKey("m.room.topic", "")] = topicA.eventID
for i in 0..<20 {
    let u = "@user\(100 + i):example.org"
    let e = pdu("$banA\(i)", "m.room.member", admin, u, ["membership": "ban"], auth: ["$create", "$plA", "$ima", "$m\(100 + i)"], ts: ts)
    ts += 1
    add(e); forkA[.member(u)] = e.eventID
}
// Fork B: users leave, one changes the topic, a new user joins.
for i in 0..<20 {
    let u = "@user\(200 + i):example.org"
    let e = pdu("$leaveB\(i)", "m.room.member", u, u, ["membership": "leave"], auth: ["$create", "$pl", "$m\(200 + i)"], ts: ts)
    ts += 1
    add(e); forkB[.member(u)] = e.eventID
}
let topicB = pdu("$topicB", "m.room.topic", admin, "", ["topic": "B"], auth: ["$create", "$pl", "$ima"], ts: ts); ts += 1
add(topicB); forkB[StateKey("m.room.topic", "")] = topicB.eventID
let eventMap = events
print("state sets: \(forkA.count) and \(forkB.count) entries, \(eventMap.count) events")
_ = measure("state resolution v2, two forks of 10,000 state events", samples: 11, batch: 1, warmup: 2) {
    blackHole(try! StateResolution.resolve([forkA, forkB], roomVersion: v11) { eventMap[$0] })
}
let resolved = try! StateResolution.resolve([forkA, forkB], roomVersion: v11) { eventMap[$0] }
print("resolved state: \(resolved.count) entries, topic \(resolved[StateKey("m.room.topic", "")]?.rawValue ?? "none")")

// 5. Push rules: an event prepared once, then the default rules evaluated per recipient (what
// unread counts do for each member of a room).
print()
let clientMessage = try! JSON.parse(Array(#"{"type":"m.room.message","sender":"@alice:example.org","content":{"msgtype":"m.text","body":"Has anyone tried the new release? The changelog says state resolution got a lot faster.","m.mentions":{}}}"#.utf8))
let legacyMessage = try! JSON.parse(Array(#"{"type":"m.room.message","sender":"@alice:example.org","content":{"msgtype":"m.text","body":"Has anyone tried the new release? The changelog says state resolution got a lot faster."}}"#.utf8))
let recipient = try! UserID(parsing: "@bob:example.org")
let defaultRules = PushRuleSet.serverDefault(for: recipient)
let pushContext = PushContext(displayName: "bob smith", memberCount: nil)
_ = measure("PushEvent from a parsed message (once per event)", samples: 101, batch: 200, warmup: 1000) {
    blackHole(PushEvent(clientMessage))
}
let withMentions = PushEvent(clientMessage), withoutMentions = PushEvent(legacyMessage)
_ = measure("default push rules, message with m.mentions (per recipient)", samples: 101, batch: 1000, warmup: 5000) {
    blackHole(PushEvaluator.evaluate(defaultRules, withMentions, pushContext))
}
_ = measure("default push rules, legacy body search (per recipient)", samples: 101, batch: 1000, warmup: 5000) {
    blackHole(PushEvaluator.evaluate(defaultRules, withoutMentions, pushContext))
}
_ = measure("PushRuleSet.serverDefault (once per user, cached)", samples: 101, batch: 200, warmup: 1000) {
    blackHole(PushRuleSet.serverDefault(for: recipient))
}
// The form unread counts evaluate: the stored PDU (1 KiB, signatures and hashes included), in
// a room whose member count is known (so the one-to-one rules are checked and fail).
let storedPDU = PushEvent(try! JSON.parse(eventBytes))
let roomContext = PushContext(displayName: "bob smith", memberCount: 20)
_ = measure("PushEvent from the stored 1 KiB PDU (once per event)", samples: 101, batch: 200, warmup: 1000) {
    blackHole(PushEvent(try! JSON.parse(eventBytes)))
}
_ = measure("default push rules, stored PDU, 20 members (per recipient)", samples: 101, batch: 1000, warmup: 5000) {
    blackHole(PushEvaluator.evaluate(defaultRules, storedPDU, roomContext))
}
let encryptedOneToOne = PushEvent(try! JSON.parse(Array(#"{"type":"m.room.encrypted","sender":"@alice:example.org","room_id":"!r:example.org","content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg","device_id":"RJYKSTBOIE","sender_key":"IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA","session_id":"X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ"}}"#.utf8)))
_ = measure("default push rules, encrypted one-to-one (per recipient)", samples: 101, batch: 1000, warmup: 5000) {
    blackHole(PushEvaluator.evaluate(defaultRules, encryptedOneToOne, PushContext(displayName: "bob smith", memberCount: 2)))
}
// 50 user rules that do not match, so every one is tried before the defaults decide: 20 keyword
// (content) rules, 10 room, 10 sender, 5 override and 5 underride rules with conditions.
var fiftyRuleLists: [String: [JSON]] = [:]
for i in 0..<20 {
    fiftyRuleLists["content", default: []].append(["rule_id": .string("kw\(i)"), "pattern": .string(i % 4 == 0 ? "deploy*\(i)" : "keyword\(i)"),
                           "actions": ["notify", ["set_tweak": "highlight"]]])
}
for i in 0..<10 {
    fiftyRuleLists["room", default: []].append(["rule_id": .string("!room\(i):example.org"), "actions": []])
    fiftyRuleLists["sender", default: []].append(["rule_id": .string("@user\(i):example.org"), "actions": ["notify"]])
}
for i in 0..<5 {
    fiftyRuleLists["override", default: []].append(["rule_id": .string("o\(i)"), "actions": [],
                            "conditions": [["kind": "event_match", "key": "type", "pattern": .string("org.example.t\(i)")],
                                           ["kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true]]])
    fiftyRuleLists["underride", default: []].append(["rule_id": .string("u\(i)"), "actions": ["notify"],
                             "conditions": [["kind": "event_match", "key": "content.msgtype", "pattern": .string("org.example.m\(i)")]]])
}
let fiftyRules = fiftyRuleLists.mapValues { JSON.array($0) }
let userRules = PushRuleSet(json: fiftyRules, user: recipient)
precondition(userRules.rules.count == defaultRules.rules.count + 50)
precondition(PushEvaluator.evaluate(userRules, storedPDU, roomContext) == .matched(ruleID: ".m.rule.message", actions: [.notify]))
_ = measure("50 user rules + defaults, stored PDU (per recipient)", samples: 101, batch: 1000, warmup: 5000) {
    blackHole(PushEvaluator.evaluate(userRules, storedPDU, roomContext))
}
_ = measure("50 user rules + defaults, legacy body search (per recipient)", samples: 101, batch: 1000, warmup: 5000) {
    blackHole(PushEvaluator.evaluate(userRules, withoutMentions, roomContext))
}
_ = measure("PushRuleSet(json:) with 50 user rules (once per change)", samples: 51, batch: 50, warmup: 100) {
    blackHole(PushRuleSet(json: fiftyRules, user: recipient))
}

// MARK: - 6. Address filter (issue 20): the IP-block check at accept

print("\n6. Address filter (checked once per accepted connection)")
var blockRNG = SystemRandomNumberGenerator()
var blockRules: [AddressFilter.Rule] = []
while blockRules.count < 10_000 {
    let first = UInt8.random(in: 1...223, using: &blockRNG)
    if first == 127 { continue }
    let bytes: [UInt8] = [first, .random(in: 0...255, using: &blockRNG), .random(in: 0...255, using: &blockRNG), .random(in: 0...255, using: &blockRNG)]
    blockRules.append(AddressFilter.Rule(range: IPRange(network: IPAddress(bytes: bytes)!, prefixLength: Bool.random(using: &blockRNG) ? 24 : 32)))
}
let blockTable = AddressFilter.Table(rules: blockRules)
let emptyTable = AddressFilter.Table(rules: [])
func peer(_ text: String) -> sockaddr_storage {
    var storage = sockaddr_storage()
    withUnsafeMutableBytes(of: &storage) { raw in
        raw.storeBytes(of: sa_family_t(AF_INET), toByteOffset: 0, as: sa_family_t.self)
        var address = in_addr()
        inet_pton(AF_INET, text, &address)
        raw.storeBytes(of: address, toByteOffset: MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!, as: in_addr.self)
    }
    return storage
}
var allowedPeer = peer("127.0.0.1")
let blockedText = blockRules[5000].range.network.bytes.map(String.init).joined(separator: ".")
var blockedPeer = peer(blockedText)
precondition(!AddressFilter.blocks(&allowedPeer, table: blockTable) && AddressFilter.blocks(&blockedPeer, table: blockTable))
_ = measure("accept check, no blocks", samples: 101, batch: 10_000, warmup: 10_000) {
    blackHole(AddressFilter.blocks(&allowedPeer, table: emptyTable))
}
_ = measure("accept check, 10,000 ranges, address not blocked", samples: 101, batch: 10_000, warmup: 10_000) {
    blackHole(AddressFilter.blocks(&allowedPeer, table: blockTable))
}
_ = measure("accept check, 10,000 ranges, address blocked", samples: 101, batch: 10_000, warmup: 10_000) {
    blackHole(AddressFilter.blocks(&blockedPeer, table: blockTable))
}
_ = measure("compile 10,000 ranges (once per block change)", samples: 11, batch: 2, warmup: 2) {
    blackHole(AddressFilter.Table(rules: blockRules))
}
