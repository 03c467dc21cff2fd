// Not a fuzz target: a demonstration found while writing the event-auth and canonical JSON targets.
// Swift String equality (and so Dictionary/Set lookups, StateKey, PowerLevels.users, JSON ==) is
// Unicode canonical equivalence, so two byte-distinct user IDs, NFC "@\u{e9}:a" and NFD
// "@e\u{301}:a", are one key for the auth rules; UserID(parsing:) accepts both.
// Before c9ca54b the NFD user, never joined, was authorized to send m.room.topic with the NFC
// user's membership and level 100; since then it is refused by rule 6.
// Build (top-level code, so as main.swift):
//   cp bench/Fuzz/findings/NormalizationConflation.swift /tmp/main.swift
//   swiftc -module-name Matrix -I Sources/CSodium -lsodium $(find Sources/Matrix -name "*.swift") /tmp/main.swift -o /tmp/nfc && /tmp/nfc
let nfc = "@\u{e9}:a", nfd = "@e\u{301}:a"
print("UserID accepts NFC:", (try? UserID(parsing: nfc)) != nil, "NFD:", (try? UserID(parsing: nfd)) != nil, "distinct bytes:", Array(nfc.utf8) != Array(nfd.utf8))
let v = RoomVersion.v10
var state: AuthState = [:]
var n = 0
func ev(_ type: String, _ sender: String, _ sk: String?, _ content: JSON) -> PDU {
    n += 1
    var j: [String: JSON] = ["type": .string(type), "sender": .string(sender), "room_id": "!r:a", "content": content,
                             "prev_events": ["$e0:a"], "auth_events": [], "depth": .int(Int64(n + 1))]
    if let sk { j["state_key"] = .string(sk) }
    return try! PDU(json: .object(j), roomVersion: v, eventID: EventID(parsing: "$e\(n):a"))
}
let create = try! PDU(json: ["type": "m.room.create", "state_key": "", "sender": "@alice:a", "room_id": "!r:a",
                             "content": ["creator": "@alice:a", "room_version": "10"], "prev_events": [], "auth_events": [], "depth": 1],
                      roomVersion: v, eventID: EventID(parsing: "$e0:a"))
state[.create] = create
func apply(_ e: PDU) { do { try EventAuth.authorize(e, against: state); state[e.stateEntry!] = e; print("ok", e.type, e.stateKey!.debugDescription) } catch { print("refused", error) } }
apply(ev("m.room.member", "@alice:a", "@alice:a", ["membership": "join"]))
apply(ev("m.room.power_levels", "@alice:a", "", ["users": .object(["@alice:a": 100, String(nfc): 100])]))
apply(ev("m.room.join_rules", "@alice:a", "", ["join_rule": "public"]))
apply(ev("m.room.member", nfc, nfc, ["membership": "join"]))
// The NFD user never joined and has no level of its own:
let attack = ev("m.room.topic", nfd, "", ["topic": "owned"])
do { try EventAuth.authorize(attack, against: state); print("NFD user (never joined) authorized to send m.room.topic (state_default 50) as the 100-level NFC user") } catch { print("refused:", error) }
print("membership of NFD user as seen by auth:", state[.member(nfd)]?.membership as Any)
