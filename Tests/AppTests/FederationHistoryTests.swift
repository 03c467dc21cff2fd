import Actors
import Matrix
import Persistence
import Testing
import TestSupport
@testable import App

/// Pages `/messages` backwards from the newest event until the end of the room, `limit` at a
/// time; returns the events in the order served (newest first).
func pageBackwards(_ client: MatrixTestClient, _ room: String, limit: Int, maxPages: Int = 200) async throws -> [JSON] {
    var events: [JSON] = []
    var from: String?
    for _ in 0..<maxPages {
        let path = "/rooms/\(room)/messages?dir=b&limit=\(limit)" + (from.map { "&from=\($0)" } ?? "")
        let reply = try await client.call("GET", path)
        #expect(reply.status == 200, "\(reply.json)")
        events += reply.json["chunk"]?.arrayValue ?? []
        guard let end = reply.json["end"]?.stringValue else { return events }
        from = end
    }
    Issue.record("pagination did not end within \(maxPages) pages")
    return events
}

@Suite("History over federation: backfill, gaps, members (two in-process servers, SQLite)")
struct FederationHistoryTests {
    @Test("A user of B joining A's room pages /messages through the earlier history (backfilled), in order, no duplicates, not in /sync")
    func backfillOnMessages() async throws {
        try await withTwoServers { _, aPort, _, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let count = 260
            for i in 0..<count {
                let sent = try await alice.call("PUT", "/rooms/\(room)/send/m.room.message/h\(i)", ["msgtype": "m.text", "body": .string("m\(i)")])
                #expect(sent.status == 200)
            }
            #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
            let before = try await bob.call("GET", "/sync?timeout=0")
            let since = try #require(before.json["next_batch"]?.stringValue)

            let events = try await pageBackwards(bob, room, limit: 25)
            let bodies = events.compactMap { $0["content"]?["body"]?.stringValue }
            #expect(bodies.count == count && bodies == (0..<count).reversed().map { "m\($0)" }, "\(bodies.count) \(bodies.suffix(3))")
            let ids = events.compactMap { $0["event_id"]?.stringValue }
            #expect(Set(ids).count == ids.count)
            // The whole room: from bob's join back to the create event.
            #expect(events.first?["state_key"]?.stringValue == "@bob:b.test")
            #expect(events.last?["type"]?.stringValue == "m.room.create")
            // A page of A's own history matches (same events, same order).
            let fromA = try await pageBackwards(alice, room, limit: 100)
            #expect(fromA.compactMap { $0["event_id"]?.stringValue } == ids)

            // Backfilled history is no news for /sync.
            let after = try await bob.call("GET", "/sync?timeout=0&since=\(since)")
            #expect(timelineBodies(after.json, room).isEmpty, "\(after.json)")
            // A second pass is served locally, identical.
            let again = try await pageBackwards(bob, room, limit: 60)
            #expect(again.compactMap { $0["event_id"]?.stringValue } == ids)
        }
    }

    @Test("/send: an event whose prev events get_missing_events cannot fill is accepted with the state from /state_ids")
    func gapFilledWithStateIDs() async throws {
        try await withTwoServers(destinations: false) { a, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
            let roomID = try RoomID(parsing: room)
            let bRoom = try await b.app.roomService.existingRoom(roomID)
            let version = try #require(await bRoom.version)
            let bobID = try UserID(parsing: "@bob:b.test")
            // A chain longer than A's get_missing_events budget (3 rounds of 20), known to B only.
            var last: (JSON, PDU)?
            var chainIDs: [EventID] = []
            for i in 0..<(FederationInbound.maxMissingRounds * FederationInbound.missingEventsLimit + 10) {
                let template = try await bRoom.eventTemplate(type: "m.room.message", sender: bobID, stateKey: nil,
                                                             content: ["msgtype": "m.text", "body": .string("g\(i)")])
                let signed = try b.app.signingKey.sign(event: .object(template), roomVersion: version, serverName: "b.test")
                let pdu = try PDU(json: signed, roomVersion: version)
                #expect(try await bRoom.receive([pdu])[pdu.eventID] == .persisted)
                last = (signed, pdu)
                chainIDs.append(pdu.eventID)
            }
            let (lastJSON, lastPDU) = try #require(last)
            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey, ports: [try ServerName(parsing: "a.test"): aPort])
            let sent = try await link.request(try ServerName(parsing: "a.test"), method: "PUT", path: "/_matrix/federation/v1/send/gap1",
                                              body: ["origin": "b.test", "origin_server_ts": 1, "pdus": [lastJSON]])
            #expect(sent.json?["pdus"]?[lastPDU.eventID.rawValue]?.objectValue?.isEmpty == true, "\(String(describing: sent.json))")
            let aRoom = try await a.app.roomService.existingRoom(roomID)
            // The events A could not get stay a gap: the join before them is still an extremity.
            #expect(await aRoom.forwardExtremities.contains(lastPDU.eventID))
            #expect(await aRoom.forwardExtremities.count == 2)
            let served = try await alice.call("GET", "/rooms/\(room)/messages?dir=b&limit=100")
            let bodies = (served.json["chunk"]?.arrayValue ?? []).compactMap { $0["content"]?["body"]?.stringValue }
            let chain = FederationInbound.maxMissingRounds * FederationInbound.missingEventsLimit
            // The event sent and the `chain` events fetched before it: g9 ... g69.
            #expect(bodies == (9...(chain + 9)).reversed().map { "g\($0)" }, "\(bodies.count) \(bodies.suffix(3))")
            // The state was asked at the missing prev event g8 (as Synapse does), and g8 itself
            // fetched and kept as an outlier: stored, but out of the timeline, so no state at it
            // is served.
            let g8 = try #require(try await a.app.database.roomEvents.event(chainIDs[8].rawValue))
            #expect(!RoomEventStore.isTimeline(g8.streamOrdering))
            let atG8 = try await link.request(try ServerName(parsing: "a.test"), method: "GET",
                                              path: "/_matrix/federation/v1/state_ids/\(FederationLink.segment(room))?event_id=\(FederationLink.segment(chainIDs[8].rawValue))",
                                              body: nil)
            #expect(atG8.status == 404)
        }
    }

    @Test("GET federation/v1/members lists the joined members for a server in the room; v2/server serves the signed keys")
    func seedEndpoints() async throws {
        try await withTwoServers(destinations: false) { _, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            let aName = try ServerName(parsing: "a.test")
            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey, ports: [aName: aPort])
            let path = "/_matrix/federation/v1/members/\(FederationLink.segment(room))"
            // B has nobody in the room yet.
            #expect(try await link.request(aName, method: "GET", path: path, body: nil).status == 403)
            #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
            let members = try await link.request(aName, method: "GET", path: path, body: nil)
            #expect(members.status == 200)
            #expect(members.json?["joined"] == ["@alice:a.test", "@bob:b.test"])
            #expect(try await MatrixTestClient(port: aPort).call("GET", path).status == 401)
            let unknown = try await link.request(aName, method: "GET", path: "/_matrix/federation/v1/members/!nowhere:a.test", body: nil)
            #expect(unknown.status == 404)

            let keys = try await MatrixTestClient(port: aPort).call("GET", "/_matrix/federation/v2/server")
            #expect(keys.status == 200)
            #expect(keys.json["server_name"]?.stringValue == "a.test")
            #expect(keys.json["verify_keys"]?.objectValue?.isEmpty == false)
            #expect(keys.json["signatures"]?["a.test"] != nil)
        }
    }
    @Test("GET /backfill serves a server history from before its users joined redacted when the visibility is `joined`, whole when `shared`")
    func servedHistoryVisibility() async throws {
        try await withTwoServers(destinations: false) { a, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let aName = try ServerName(parsing: "a.test")
            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey, ports: [aName: aPort])
            for (visibility, whole) in [("joined", false), ("shared", true)] {
                let room = try #require(try await alice.call("POST", "/createRoom", [
                    "preset": "public_chat",
                    "initial_state": [["type": "m.room.history_visibility", "state_key": "", "content": ["history_visibility": .string(visibility)]]],
                ]).json["room_id"]?.stringValue)
                let sent = try await alice.call("PUT", "/rooms/\(room)/send/m.room.message/v-\(visibility)", ["msgtype": "m.text", "body": "secret"])
                let secret = try #require(sent.json["event_id"]?.stringValue)
                let path = "/_matrix/federation/v1/backfill/\(FederationLink.segment(room))?v=\(FederationLink.segment(secret))&limit=5"
                // Not in the room: nothing at all.
                #expect(try await link.request(aName, method: "GET", path: path, body: nil).status == 403)
                #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
                let served = try await link.request(aName, method: "GET", path: path, body: nil)
                let message = (served.json?["pdus"]?.arrayValue ?? []).first { $0["event_id"]?.stringValue == secret || $0["type"]?.stringValue == "m.room.message" }
                #expect(served.status == 200 && message != nil, "\(String(describing: served.json))")
                #expect((message?["content"]?["body"]?.stringValue == "secret") == whole, "\(visibility): \(String(describing: message))")
                // Redacted or whole, the event keeps its place in the DAG (prev events, hashes, signatures).
                #expect(message?["prev_events"]?.arrayValue?.isEmpty == false)
            }
        }
    }
}
