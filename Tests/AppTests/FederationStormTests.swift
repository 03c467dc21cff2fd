import Actors
import Matrix
import Testing
import TestSupport
@testable import App

/// The path of a federation request storm (issue 17; timed in bench/federation_storm.py):
/// full transactions of PDUs through the real `/send` endpoint, every PDU persisted, once, in
/// the order sent.
@Suite("Federation storm path (two in-process servers, SQLite)")
struct FederationStormTests {
    static let transactions = 6
    static let perTransaction = 50

    @Test("Transactions of 50 PDUs each, one after another: every PDU persisted, in order, none twice")
    func fullTransactionsAllPersistedInOrder() async throws {
        try await withTwoServers(destinations: false) { a, aPort, b, bPort in
            let (alice, _) = try await MatrixTestClient.registered(port: aPort, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: bPort, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/join/\(FederationLink.segment(room))?server_name=a.test", [:]).status == 200)
            let roomID = try RoomID(parsing: room)
            let bRoom = try await b.app.roomService.existingRoom(roomID)
            let version = try #require(await bRoom.version)
            let bobID = try UserID(parsing: "@bob:b.test")

            // B writes one linear chain (each event persisted on B so the next follows it);
            // A hears of none of it until the transactions.
            var chain: [(JSON, PDU)] = []
            for index in 0..<Self.transactions * Self.perTransaction {
                let template = try await bRoom.eventTemplate(type: "m.room.message", sender: bobID, stateKey: nil,
                                                             content: ["msgtype": "m.text", "body": .string("storm \(index)")])
                let signed = try b.app.signingKey.sign(event: .object(template), roomVersion: version, serverName: "b.test")
                let pdu = try PDU(json: signed, roomVersion: version)
                #expect(try await bRoom.receive([pdu])[pdu.eventID] == .persisted)
                chain.append((signed, pdu))
            }

            let link = LoopbackFederation(origin: b.app.localServer, key: b.app.signingKey,
                                          ports: [try ServerName(parsing: "a.test"): aPort])
            let aName = try ServerName(parsing: "a.test")
            for txn in 0..<Self.transactions {
                let batch = chain[(txn * Self.perTransaction)..<((txn + 1) * Self.perTransaction)]
                let sent = try await link.request(aName, method: "PUT", path: "/_matrix/federation/v1/send/storm\(txn)",
                                                  body: ["origin": "b.test", "origin_server_ts": 1, "pdus": .array(batch.map(\.0))])
                #expect(sent.status == 200)
                let results = sent.json?["pdus"]?.objectValue ?? [:]
                #expect(results.count == Self.perTransaction)
                #expect(results.values.allSatisfy { $0.objectValue?.isEmpty == true }, "\(String(describing: sent.json))")
            }

            // The room on A ends at the last event of the chain, and its history holds the
            // whole chain in the order sent.
            let aRoom = try await a.app.roomService.existingRoom(roomID)
            #expect(await aRoom.forwardExtremities == [chain[chain.count - 1].1.eventID])
            let bodies = try await stormBodies(alice, room: room)
            #expect(bodies == (0..<chain.count).map { "storm \($0)" })
        }
    }

    /// The `storm …` bodies of the room's history, oldest first, paging `/messages` backwards.
    func stormBodies(_ client: MatrixTestClient, room: String) async throws -> [String] {
        var bodies: [String] = []
        var from: String?
        for _ in 0..<20 {
            let path = "/rooms/\(FederationLink.segment(room))/messages?dir=b&limit=100" + (from.map { "&from=\(FederationLink.segment($0))" } ?? "")
            let page = try await client.call("GET", path)
            let chunk = page.json["chunk"]?.arrayValue ?? []
            bodies += chunk.compactMap { $0["content"]?["body"]?.stringValue }.filter { $0.hasPrefix("storm ") }
            guard !chunk.isEmpty, let end = page.json["end"]?.stringValue else { break }
            from = end
        }
        return bodies.reversed()
    }
}
