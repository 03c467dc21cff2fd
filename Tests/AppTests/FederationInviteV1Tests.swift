import Actors
import Synchronization
import Matrix
import Testing
import TestSupport
@testable import App

/// Answers `v2/invite` with a bodiless 404 (a server that only knows v1) and `v1/invite` with
/// the `[200, {...}]` wrapper; records the paths asked.
final class V1OnlyInvitee: FederationRequesting, @unchecked Sendable {
    // Only touched from the one test task that awaits each request in turn.
    var paths: [String] = []
    var v1Body: JSON?

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        paths.append(path)
        if path.hasPrefix("/_matrix/federation/v2/invite/") { return FederationReply(status: 404, json: nil) }
        v1Body = body
        return FederationReply(status: 200, json: [200, ["event": body ?? .null]])
    }
}

@Suite("Invites and membership over federation: the v1 API, refusals")
struct FederationInviteV1Tests {
    /// B's invite of `invitee` into B's room `room`, signed by B (or not).
    static func invite(_ b: MyelinServer, room: String, invitee: String, signed: Bool = true) async throws -> (JSON, PDU) {
        let actor = try await b.app.roomService.existingRoom(try RoomID(parsing: room))
        let version = try #require(await actor.version)
        var template = try await actor.eventTemplate(type: EventType.roomMember, sender: try UserID(parsing: "@bob:b.test"),
                                                     stateKey: invitee, content: ["membership": "invite"])
        template["origin"] = "b.test"
        var json = try b.app.signingKey.sign(event: .object(template), roomVersion: version, serverName: "b.test")
        let pdu = try PDU(json: json, roomVersion: version)
        if !signed, case .object(var object) = json {
            object["signatures"] = .object([:])
            json = .object(object)
        }
        return (json, pdu)
    }

    @Test("PUT v1/invite: answered [200, {event}] countersigned, shown to the invitee; unsigned refused 403; the rejection leaves a leave event in /sync even when the inviting server is gone")
    func inboundV1Invite() async throws {
        try await withTwoServers(destinations: false) { a, aPort, b, bPort in
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let (carol, _) = try await MatrixTestClient.registered(port: aPort, "carol")
            let created = try await bob.call("POST", "/createRoom", ["room_version": "1", "preset": "private_chat"])
            let room = try #require(created.json["room_id"]?.stringValue, "\(created.json)")
            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey,
                                          ports: [try ServerName(parsing: "a.test"): aPort])
            let aName = try ServerName(parsing: "a.test")

            let (unsigned, unsignedPDU) = try await Self.invite(b, room: room, invitee: "@carol:a.test", signed: false)
            let refused = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/invite/\(FederationLink.segment(room))/\(FederationLink.segment(unsignedPDU.eventID.rawValue))", body: unsigned)
            #expect(refused.status == 403)
            #expect(refused.json?["errcode"]?.stringValue == "M_FORBIDDEN")

            let (json, pdu) = try await Self.invite(b, room: room, invitee: "@carol:a.test")
            let reply = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/invite/\(FederationLink.segment(room))/\(FederationLink.segment(pdu.eventID.rawValue))", body: json)
            #expect(reply.status == 200)
            let wrapped = reply.json?.arrayValue ?? []
            #expect(wrapped.first?.intValue == 200)
            #expect(wrapped.last?["event"]?["event_id"]?.stringValue == pdu.eventID.rawValue)
            #expect(wrapped.last?["event"]?["signatures"]?["a.test"] != nil)
            #expect(try await syncUntil(carol, rounds: 3) { $0["rooms"]?["invite"]?[room] != nil })

            // B is unreachable now: the rejection is local, with a leave event of carol's own.
            a.app.connectFederation(LoopbackFederation(origin: a.app.localServer, key: a.app.signingKey, ports: [:]))
            let since = try #require(try await carol.call("GET", "/sync?timeout=0").json["next_batch"]?.stringValue)
            let left = try await carol.call("POST", "/rooms/\(FederationLink.segment(room))/leave", [:])
            #expect(left.status == 200, "\(left.json)")
            let sync = try await carol.call("GET", "/sync?timeout=1000&since=\(since)").json
            let leave = sync["rooms"]?["leave"]?[room]?["timeline"]?["events"]?[0]
            #expect(leave?["type"]?.stringValue == "m.room.member", "\(sync)")
            #expect(leave?["sender"]?.stringValue == "@carol:a.test")
            #expect(leave?["content"]?["membership"]?.stringValue == "leave")
        }
    }

    @Test("An invite to a server without v2/invite falls back to v1/invite for room versions 1 and 2, unwrapping [200, {...}]")
    func outboundFallback() async throws {
        try await withMyelinServer({ $0.serverName = "a.test" }) { a, _ in
            let invitee = V1OnlyInvitee()
            a.app.connectFederation(invitee)
            let event: JSON = ["type": "m.room.member", "state_key": "@carol:b.test"]
            let answer = try await FederationV1Invite.send(
                try ServerName(parsing: "b.test"), roomID: try RoomID(parsing: "!r:a.test"), eventID: try EventID(parsing: "$e:a.test"),
                event: event, version: try RoomVersion.named("2"), strippedState: [["type": "m.room.name"]], app: a.app)
            #expect(invitee.paths.count == 2)
            #expect(invitee.paths.last?.hasPrefix("/_matrix/federation/v1/invite/") == true)
            #expect(answer["event"]?["state_key"]?.stringValue == "@carol:b.test")
            #expect(invitee.v1Body?["unsigned"]?["invite_room_state"]?.arrayValue?.count == 1)
            // Version 10 events need the v2 body's room_version: no fallback.
            await #expect(throws: MatrixError.self) {
                _ = try await FederationV1Invite.send(
                    try ServerName(parsing: "b.test"), roomID: try RoomID(parsing: "!r:a.test"), eventID: try EventID(parsing: "$e"),
                    event: event, version: try RoomVersion.named("10"), strippedState: [], app: a.app)
            }
            #expect(invitee.paths.count == 3)
        }
    }

    @Test("A remote 4xx with an errcode reaches the client as it was (make_join failures, incompatible versions)")
    func remoteErrorsPassThrough() throws {
        let server = try ServerName(parsing: "b.test")
        #expect(throws: MatrixError("M_TEST_ERROR_CODE", "b.test: denied!", status: 400)) {
            _ = try FederationLink.checked(FederationReply(status: 400, json: ["errcode": "M_TEST_ERROR_CODE", "error": "denied!"]), from: server)
        }
        #expect(throws: MatrixError("M_INCOMPATIBLE_ROOM_VERSION", "b.test: no", status: 400, extra: ["room_version": "x"])) {
            _ = try FederationLink.checked(FederationReply(status: 400, json: ["errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "no",
                                                                               "room_version": "x"]), from: server)
        }
        // A remote 401 never reaches a client as one (it would log the client out).
        #expect(throws: MatrixError(.unknown, "b.test answered 401: x", status: 502)) {
            _ = try FederationLink.checked(FederationReply(status: 401, json: ["errcode": "M_UNKNOWN_TOKEN", "error": "x"]), from: server)
        }
    }

    @Test("make_join of a room no local user is in is 404; send_join of another server's user or unsigned is 403")
    func membershipRefusals() async throws {
        try await withTwoServers(destinations: false) { a, aPort, b, _ in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey,
                                          ports: [try ServerName(parsing: "a.test"): aPort])
            let aName = try ServerName(parsing: "a.test")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let encoded = FederationLink.segment(room)
            let made = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/make_join/\(encoded)/\(FederationLink.segment("@bob:b.test"))?ver=10&ver=11&ver=12", body: nil)
            #expect(made.status == 200)
            let version = try RoomVersion.named(made.json?["room_version"]?.stringValue ?? "1")
            var template = try #require(made.json?["event"]?.objectValue)
            template["origin_server_ts"] = .int(Clock.nowMilliseconds())
            // Unsigned (no hashes, no signatures): 403, not 400.
            let unsignedPDU = try PDU(json: .object(template), roomVersion: version)
            let unsigned = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/send_join/\(encoded)/\(FederationLink.segment(unsignedPDU.eventID.rawValue))", body: .object(template))
            #expect(unsigned.status == 403)
            #expect(unsigned.json?["errcode"]?.stringValue == "M_FORBIDDEN")
            // B's join, correctly signed by B, replayed by another server (here a.test itself): 403.
            let signed = try b.app.signingKey.sign(event: .object(template), roomVersion: version, serverName: "b.test")
            let pdu = try PDU(json: signed, roomVersion: version)
            let other = LoopbackFederation(origin: aName, key: a.app.signingKey, ports: [aName: aPort])
            let foreign = try await other.request(aName, method: "PUT", path: "/_matrix/federation/v1/send_join/\(encoded)/\(FederationLink.segment(pdu.eventID.rawValue))", body: signed)
            #expect(foreign.status == 403, "\(String(describing: foreign.json))")
            #expect(foreign.json?["errcode"]?.stringValue == "M_FORBIDDEN")

            #expect(try await alice.call("POST", "/rooms/\(encoded)/leave", [:]).status == 200)
            let empty = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/make_join/\(encoded)/\(FederationLink.segment("@bob:b.test"))?ver=10&ver=11&ver=12", body: nil)
            #expect(empty.status == 404)
            #expect(empty.json?["errcode"]?.stringValue == "M_NOT_FOUND")
        }
    }
}

/// Records the PDUs of every `/send` a server makes, then hands the request on.
final class RecordingLink: FederationRequesting, Sendable {
    let inner: LoopbackFederation
    let sent = Mutex<[JSON]>([])
    init(_ inner: LoopbackFederation) { self.inner = inner }

    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        if path.hasPrefix("/_matrix/federation/v1/send/") {
            sent.withLock { $0 += body?["pdus"]?.arrayValue ?? [] }
        }
        return try await inner.request(destination, method: method, path: path, body: body)
    }
}

@Suite("Invites are delivered by /invite only")
struct FederationInviteDeliveryTests {
    @Test("An invite of a remote user is not sent again through /send; rescinding it (a kick) is, to a server never sent to before")
    func inviteNotResent() async throws {
        try await withTwoServers { a, aPort, _, bPort in
            let recorder = RecordingLink(LoopbackFederation(origin: a.app.localServer, key: a.app.signingKey,
                                                            ports: [try ServerName(parsing: "a.test"): aPort,
                                                                    try ServerName(parsing: "b.test"): bPort]))
            a.app.connectFederation(recorder)
            a.app.roomService.federation.connect(recorder)
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            #expect(try await alice.call("POST", "/rooms/\(room)/invite", ["user_id": "@carol:b.test"]).status == 200)
            #expect(try await alice.call("POST", "/rooms/\(room)/kick", ["user_id": "@carol:b.test"]).status == 200)
            // Destinations send in stream order: once the kick went, an invite queued before it would have too.
            var memberships: [String] = []
            for _ in 0..<100 {
                memberships = recorder.sent.withLock { $0 }.filter { $0["state_key"]?.stringValue == "@carol:b.test" }
                    .compactMap { $0["content"]?["membership"]?.stringValue }
                if memberships.contains("leave") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(memberships == ["leave"])
        }
    }
}
