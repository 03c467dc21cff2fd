import Testing
@testable import Matrix

/// Client-server API "Server Access Control Lists": the spec's example and its evaluation order.
@Suite struct ServerACLTests {
    func name(_ s: String) throws -> ServerName { try ServerName(parsing: s) }

    @Test func specExampleAllowsAllButEvil() throws {
        let acl = ServerACL(content: ["allow": ["*"], "deny": ["*.evil.com", "evil.com"], "allow_ip_literals": false])
        #expect(acl.allows(try name("matrix.org")))
        #expect(acl.allows(try name("good.example:8448")))
        #expect(!acl.allows(try name("evil.com")))
        #expect(!acl.allows(try name("sub.EVIL.com:443")))  // case-insensitive, port ignored
        #expect(!acl.allows(try name("1.2.3.4")))
        #expect(!acl.allows(try name("[::1]:8448")))
    }

    @Test func denyWinsThenAllowElseDenied() throws {
        let acl = ServerACL(content: ["allow": ["*.example.org", "ex?mple.com", 3], "deny": ["bad.example.org"]])
        #expect(acl.allows(try name("a.example.org")))
        #expect(!acl.allows(try name("bad.example.org")))
        #expect(acl.allows(try name("exomple.com")))
        #expect(!acl.allows(try name("exaample.com")))
        #expect(!acl.allows(try name("other.net")))
        // IP literals allowed by default.
        #expect(ServerACL(content: ["allow": ["*"]]).allows(try name("10.0.0.1")))
        // No allow list: nobody.
        #expect(!ServerACL(content: ["deny": []]).allows(try name("a.example.org")))
        // A non-boolean allow_ip_literals counts as true.
        #expect(ServerACL(content: ["allow": ["*"], "allow_ip_literals": "no"]).allows(try name("10.0.0.1")))
    }

    @Test func globMatching() {
        func m(_ p: String, _ t: String) -> Bool { ServerACL.glob(p, matches: Array(t.utf8)) }
        #expect(m("*", ""))
        #expect(m("a*b*c", "axxbyyc"))
        #expect(!m("a*b*c", "axxbyy"))
        #expect(m("*.*.*", "a.b.c"))
        #expect(!m("?", ""))
        #expect(m("**a", "bba"))
        // Many stars against a long name stays linear-ish and correct.
        #expect(!m(String(repeating: "*a", count: 100) + "b", String(repeating: "a", count: 255)))
    }
}

/// Checks on receipt of a PDU that need no keys: format, signers, content hash.
@Suite struct PDUVerificationTests {
    static let v10 = RoomVersion.all.first { $0.id == "10" }!
    static let v1 = RoomVersion.all.first { $0.id == "1" }!

    static func event(_ version: RoomVersion, sender: String = "@alice:domain", content: JSON = ["body": "hi", "msgtype": "m.text"],
                      type: String = "m.room.message", extra: [String: JSON] = [:]) throws -> JSON {
        var o: [String: JSON] = [
            "type": .string(type), "sender": .string(sender), "room_id": "!room:domain", "content": content,
            "origin_server_ts": 1_000, "depth": 3, "prev_events": [], "auth_events": [],
        ]
        if version.eventIDFormat == .opaqueWithDomain {
            o["prev_events"] = []
            o["event_id"] = "$abc:domain"
        }
        for (k, v) in extra { o[k] = v }
        return try testKey.sign(event: .object(o), roomVersion: version, serverName: "domain")
    }

    @Test func wellFormedEventPassesWithItsHash() throws {
        let json = try Self.event(Self.v10)
        let pdu = try PDUVerification.checkFormat(json, roomVersion: Self.v10)
        #expect(PDUVerification.requiredSigners(of: pdu).map(\.rawValue) == ["domain"])
        #expect(PDUVerification.keyValidityTime(of: pdu) == 1_000)
        let checked = PDUVerification.checkContentHash(pdu)
        #expect(!checked.redacted)
        #expect(checked.pdu.content["body"]?.stringValue == "hi")
    }

    @Test func contentHashMismatchRedacts() throws {
        var json = try Self.event(Self.v10)
        json["content"] = ["body": "changed", "msgtype": "m.text"]
        let pdu = try PDUVerification.checkFormat(json, roomVersion: Self.v10)
        let checked = PDUVerification.checkContentHash(pdu)
        #expect(checked.redacted)
        #expect(checked.pdu.content.isEmpty)
        #expect(checked.pdu.eventID == pdu.eventID)
    }

    @Test func formatDefectsAreRefused() throws {
        let good = try Self.event(Self.v10)
        var cases: [JSON] = []
        for field in ["depth", "origin_server_ts", "prev_events", "auth_events", "hashes", "signatures", "sender", "type"] {
            var e = good; e[field] = nil; cases.append(e)
        }
        var e = good; e["depth"] = -1; cases.append(e)
        e = good; e["type"] = .string(String(repeating: "t", count: 256)); cases.append(e)
        e = good; e["state_key"] = .string(String(repeating: "s", count: 256)); cases.append(e)
        e = good; e["prev_events"] = .array(Array(repeating: "$x", count: 21)); cases.append(e)
        e = good; e["content"] = ["n": 1.5]; cases.append(e)                     // not canonical in v6+
        e = good; e["content"] = ["n": .int(1 << 60)]; cases.append(e)
        e = good; e["content"] = ["pad": .string(String(repeating: "x", count: 70_000))]; cases.append(e)
        for bad in cases {
            #expect(throws: MatrixError.self) { try PDUVerification.checkFormat(bad, roomVersion: Self.v10) }
        }
        // Room version 1: floats are tolerated, but event_id must be $opaque:domain.
        var old = try Self.event(Self.v1)
        old["content"] = ["n": 1.5]
        _ = try PDUVerification.checkFormat(old, roomVersion: Self.v1)
        old["event_id"] = "$nodomain"
        #expect(throws: MatrixError.self) { try PDUVerification.checkFormat(old, roomVersion: Self.v1) }
    }

    @Test func requiredSignersFollowTheSpec() throws {
        let v8 = RoomVersion.all.first { $0.id == "8" }!
        // v1: the event ID's server too.
        let old = try PDUVerification.checkFormat(try Self.event(Self.v1, extra: ["event_id": "$x:other.org"]), roomVersion: Self.v1)
        #expect(PDUVerification.requiredSigners(of: old).map(\.rawValue) == ["domain", "other.org"])
        #expect(PDUVerification.keyValidityTime(of: old) == nil)
        // Restricted join: the authorising user's server.
        let join = try Self.event(v8, content: ["membership": "join", "join_authorised_via_users_server": "@mod:resident.org"],
                                  type: "m.room.member", extra: ["state_key": "@alice:domain"])
        #expect(PDUVerification.requiredSigners(of: try PDUVerification.checkFormat(join, roomVersion: v8)).map(\.rawValue)
                == ["domain", "resident.org"])
        // Third-party invite: the sender's server is exempt.
        let invite = try Self.event(v8, content: ["membership": "invite", "third_party_invite": ["display_name": "x"]],
                                    type: "m.room.member", extra: ["state_key": "@bob:else.org"])
        #expect(PDUVerification.requiredSigners(of: try PDUVerification.checkFormat(invite, roomVersion: v8)).isEmpty)
    }
}
