import Actors
import Matrix
import Testing
import TestSupport
@testable import App

/// Hands each federation request to the other in-process server over a real socket, signed
/// with the origin's real X-Matrix signature (stands in for helper "client"'s
/// `FederationClient` until it lands: no discovery, no TLS).
struct LoopbackFederation: FederationRequesting {
    let origin: ServerName
    let key: SigningKey
    let ports: [ServerName: Int]

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        guard let port = ports[destination] else { throw FederationRequestError(.unreachable, "\(destination)") }
        let body: JSON? = body == .null ? .none : body
        let auth = try FederationRequestSignature.authorization(method: method, uri: path, origin: origin.rawValue,
                                                                destination: destination.rawValue, content: body, key: key)
        let client = try RawClient(port: port)
        var headers = ["Authorization": auth.headerValue]
        if body != nil { headers["Content-Type"] = "application/json" }
        let response = try await client.request(method, path, body: body.map(\.encodedString), headers: headers)
        return FederationReply(status: response.status, json: response.body.isEmpty ? nil : try? JSON.parse(response.body))
    }
}

/// Two servers (`a.test`, `b.test`), each with its own SQLite store, federating in process.
func withTwoServers(destinations: Bool = true,
                    _ body: (_ a: MyelinServer, _ aPort: Int, _ b: MyelinServer, _ bPort: Int) async throws -> Void) async throws {
    // Retries stay quick when a loaded machine times a transaction out.
    try await withMyelinServer({ $0.serverName = "a.test"; $0.federation.backoffMaxMs = 2000 }) { a, aPort in
        try await withMyelinServer({ $0.serverName = "b.test"; $0.federation.backoffMaxMs = 2000 }) { b, bPort in
            let ports = [try ServerName(parsing: "a.test"): aPort, try ServerName(parsing: "b.test"): bPort]
            for server in [a, b] {
                let link = LoopbackFederation(origin: server.app.localServer, key: server.app.signingKey, ports: ports)
                server.app.connectFederation(link)
                if destinations { server.app.roomService.federation.connect(link) }
            }
            try await body(a, aPort, b, bPort)
        }
    }
}

/// Long-polls `/sync` until `found` holds for a response (at most `rounds` polls).
func syncUntil(_ client: MatrixTestClient, rounds: Int = 60, _ found: (JSON) -> Bool) async throws -> Bool {
    var since: String?
    for _ in 0..<rounds {
        let path = "/sync?timeout=1000" + (since.map { "&since=\($0)" } ?? "")
        let reply = try await client.call("GET", path)
        if found(reply.json) { return true }
        since = reply.json["next_batch"]?.stringValue
    }
    return false
}

func timelineBodies(_ sync: JSON, _ room: String) -> [String] {
    (sync["rooms"]?["join"]?[room]?["timeline"]?["events"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue }
}

@Suite("Rooms over federation (two in-process servers, SQLite)")
struct FederationRoomTests {
    @Test("A user of B joins a room of A (make_join/send_join), messages flow both ways, then leaves")
    func joinMessagesLeave() async throws {
        try await withTwoServers { _, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let joined = try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:])
            #expect(joined.status == 200, "\(joined.json)")
            let members = try await alice.call("GET", "/rooms/\(room)/joined_members")
            #expect(members.json["joined"]?["@bob:b.test"] != nil)
            // B is resident: its state has both members.
            let bMembers = try await bob.call("GET", "/rooms/\(room)/joined_members")
            #expect(bMembers.json["joined"]?["@alice:a.test"] != nil && bMembers.json["joined"]?["@bob:b.test"] != nil)

            let sent = try await bob.call("PUT", "/rooms/\(room)/send/m.room.message/t1", ["msgtype": "m.text", "body": "hello from B"])
            #expect(sent.status == 200)
            #expect(try await syncUntil(alice) { timelineBodies($0, room).contains("hello from B") })
            _ = try await alice.call("PUT", "/rooms/\(room)/send/m.room.message/t2", ["msgtype": "m.text", "body": "hello from A"])
            #expect(try await syncUntil(bob) { timelineBodies($0, room).contains("hello from A") })

            let left = try await bob.call("POST", "/rooms/\(room)/leave", [:])
            #expect(left.status == 200)
            var gone = false
            for _ in 0..<50 where !gone {
                let now = try await alice.call("GET", "/rooms/\(room)/joined_members")
                gone = now.json["joined"]?["@bob:b.test"] == nil
                if !gone { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(gone)
        }
    }

    @Test("A user of B joins A's room by an alias of A (query/directory), and an invited user by room id alone")
    func joinByRemoteAliasAndByInvite() async throws {
        try await withTwoServers { _, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: bPort, "carol")
            let room = try #require(try await alice.call("POST", "/createRoom",
                                                         ["preset": "public_chat", "room_alias_name": "lobby"]).json["room_id"]?.stringValue)
            let joined = try await bob.call("POST", "/join/\(FederationLink.segment("#lobby:a.test"))", [:])
            #expect(joined.status == 200 && joined.json["room_id"]?.stringValue == room, "\(joined.json)")
            let unknown = try await bob.call("POST", "/join/\(FederationLink.segment("#nowhere:a.test"))", [:])
            #expect(unknown.status == 404, "\(unknown.json)")

            // A room B holds nothing of, with no server in its id (version 12) and no via: the
            // invite's sender names the server to join through.
            let secret = try #require(try await alice.call("POST", "/createRoom", ["name": "Secret", "room_version": "12"]).json["room_id"]?.stringValue)
            _ = try await alice.call("POST", "/rooms/\(secret)/invite", ["user_id": "@carol:b.test"])
            #expect(try await syncUntil(carol, rounds: 3) { $0["rooms"]?["invite"]?[secret] != nil })
            let accepted = try await carol.call("POST", "/rooms/\(FederationLink.segment(secret))/join", [:])
            #expect(accepted.status == 200, "\(accepted.json)")
            let members = try await alice.call("GET", "/rooms/\(secret)/joined_members")
            #expect(members.json["joined"]?["@carol:b.test"] != nil, "\(members.json)")
        }
    }

    @Test("An invite over federation appears in the invitee's rooms.invite, who then joins through it")
    func inviteOverFederation() async throws {
        try await withTwoServers { _, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (carol, _) = try await MatrixTestClient.registered(port: bPort, "carol")
            let room = try #require(try await alice.call("POST", "/createRoom", ["name": "Secret"]).json["room_id"]?.stringValue)
            let invited = try await alice.call("POST", "/rooms/\(room)/invite", ["user_id": "@carol:b.test"])
            #expect(invited.status == 200, "\(invited.json)")
            #expect(try await syncUntil(carol, rounds: 3) { sync in
                let state = sync["rooms"]?["invite"]?[room]?["invite_state"]?["events"]?.arrayValue ?? []
                return state.contains { $0["type"]?.stringValue == "m.room.name" }
                    && state.contains { $0["state_key"]?.stringValue == "@carol:b.test" && $0["content"]?["membership"]?.stringValue == "invite" }
            })
            // The room id names a.test (version 12 ids do not): the invite's room is joined through A.
            let joined = try await carol.call("POST", "/rooms/\(room)/join?via=a.test", [:])
            #expect(joined.status == 200, "\(joined.json)")
            let members = try await alice.call("GET", "/rooms/\(room)/joined_members")
            #expect(members.json["joined"]?["@carol:b.test"] != nil)
        }
    }

    @Test("/send: unknown prev events are fetched with get_missing_events, a PDU failing auth is rejected, a replayed txn applies nothing")
    func sendChecks() async throws {
        try await withTwoServers(destinations: false) { a, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
            let roomID = try RoomID(parsing: room)
            let bRoom = try await b.app.roomService.existingRoom(roomID)
            let version = try #require(await bRoom.version)
            let bobID = try UserID(parsing: "@bob:b.test")
            func event(_ sender: UserID, _ body: String) async throws -> (JSON, PDU) {
                var template = try await bRoom.eventTemplate(type: "m.room.message", sender: bobID, stateKey: nil,
                                                             content: ["msgtype": "m.text", "body": .string(body)])
                template["sender"] = .string(sender.rawValue)
                let signed = try b.app.signingKey.sign(event: .object(template), roomVersion: version, serverName: "b.test")
                return (signed, try PDU(json: signed, roomVersion: version))
            }
            // e1 only on B; e2 (after e1) sent to A: A must fetch e1 from B.
            let (_, e1) = try await event(bobID, "first")
            #expect(try await bRoom.receive([e1])[e1.eventID] == .persisted)
            let (e2JSON, e2) = try await event(bobID, "second")
            #expect(e2.prevEvents == [e1.eventID])
            // The origin has what it sends (it answers get_missing_events from there).
            #expect(try await bRoom.receive([e2])[e2.eventID] == .persisted)
            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey,
                                          ports: [try ServerName(parsing: "a.test"): aPort])
            let aName = try ServerName(parsing: "a.test")
            let sent = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/send/txn1",
                                              body: ["origin": "b.test", "origin_server_ts": 1, "pdus": [e2JSON]])
            #expect(sent.status == 200)
            #expect(sent.json?["pdus"]?[e2.eventID.rawValue]?.objectValue?.isEmpty == true, "\(String(describing: sent.json))")
            for id in [e1.eventID, e2.eventID] {
                #expect(try await alice.call("GET", "/rooms/\(room)/event/\(FederationLink.segment(id.rawValue))").status == 200)
            }
            #expect(try await syncUntil(alice, rounds: 1) { timelineBodies($0, room) .contains("first") })

            // What A now answers about the room: the state before e2 (create, both members),
            // e2's auth chain, and history walked back from e2.
            let encodedRoom = FederationLink.segment(room)
            let stateIDs = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/state_ids/\(encodedRoom)?event_id=\(FederationLink.segment(e2.eventID.rawValue))", body: nil)
            let pduIDs = Set((stateIDs.json?["pdu_ids"]?.arrayValue ?? []).compactMap(\.stringValue))
            let aState = try #require(await a.app.roomService.existingRoom(roomID).currentState)
            #expect(stateIDs.status == 200)
            #expect(pduIDs == Set(aState.values.map(\.eventID.rawValue)))
            let chain = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/event_auth/\(encodedRoom)/\(FederationLink.segment(e2.eventID.rawValue))", body: nil)
            // Version 12 events do not list the create event (MSC4291); the power levels are in the chain.
            #expect((chain.json?["auth_chain"]?.arrayValue ?? []).contains { $0["type"]?.stringValue == "m.room.power_levels" })
            let history = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/backfill/\(encodedRoom)?v=\(FederationLink.segment(e2.eventID.rawValue))&limit=2", body: nil)
            #expect((history.json?["pdus"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue } == ["second", "first"])

            // A sender who is not in the room: rejected by the auth rules and stored as rejected,
            // so the transaction handled it (`{}`, as Synapse answers), but never served, and
            // no state at it is served either.
            let (badJSON, bad) = try await event(try UserID(parsing: "@mallory:b.test"), "intruder")
            let rejected = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/send/txn2",
                                                  body: ["origin": "b.test", "origin_server_ts": 1, "pdus": [badJSON]])
            #expect(rejected.json?["pdus"]?[bad.eventID.rawValue]?.objectValue?.isEmpty == true, "\(String(describing: rejected.json))")
            #expect(try await alice.call("GET", "/rooms/\(room)/event/\(FederationLink.segment(bad.eventID.rawValue))").status == 404)
            let badState = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/state_ids/\(encodedRoom)?event_id=\(FederationLink.segment(bad.eventID.rawValue))", body: nil)
            #expect(badState.status == 404)
            #expect(try await a.app.roomService.existingRoom(roomID).currentState?.values.map(\.eventID).contains(bad.eventID) == false)

            // txn1 again with another event: the first answer is replayed, the event not applied.
            let (e3JSON, e3) = try await event(bobID, "third")
            let replay = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/send/txn1",
                                                body: ["origin": "b.test", "origin_server_ts": 1, "pdus": [e3JSON]])
            #expect(replay.status == 200)
            #expect(replay.json == sent.json)
            #expect(try await alice.call("GET", "/rooms/\(room)/event/\(FederationLink.segment(e3.eventID.rawValue))").status == 404)

            // Soft failure: B has not heard of the ban; its next event is allowed by the state
            // before it (bob joined) but not by A's current state: accepted without error, kept
            // out of the timeline and of the forward extremities.
            #expect(try await alice.call("POST", "/rooms/\(room)/ban", ["user_id": "@bob:b.test"]).status == 200)
            let (e4JSON, e4) = try await event(bobID, "after the ban")
            let soft = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/send/txn4",
                                              body: ["origin": "b.test", "origin_server_ts": 1, "pdus": [e4JSON]])
            #expect(soft.json?["pdus"]?[e4.eventID.rawValue]?.objectValue?.isEmpty == true, "\(String(describing: soft.json))")
            let aRoom = try await a.app.roomService.existingRoom(roomID)
            #expect(await !aRoom.forwardExtremities.contains(e4.eventID))
            #expect(await aRoom.currentState?[.member("@bob:b.test")]?.membership == "ban")
            #expect(try await syncUntil(alice, rounds: 1) { sync in
                let bodies = timelineBodies(sync, room)
                return bodies.contains("second") && !bodies.contains("after the ban")
            })
        }
    }

    @Test("A federation request without a valid X-Matrix signature is refused and changes nothing")
    func unsignedRefused() async throws {
        try await withTwoServers(destinations: false) { _, aPort, _, _ in
            let raw = try MatrixTestClient(port: aPort)
            let reply = try await raw.call("PUT", "/_matrix/federation/v1/send/x1", ["pdus": [], "edus": []])
            #expect(reply.status == 401)
        }
    }
}
