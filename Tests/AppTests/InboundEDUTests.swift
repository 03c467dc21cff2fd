import Actors
import Matrix
import Persistence
import Synchronization
import Testing
import TestSupport
@testable import App

/// EDUs received from another server (`receiveEDUs`, what `/send/{txnId}` calls with the
/// authenticated origin) reach the local users' `/sync`; a server speaking for another
/// server's users, or for rooms its users are not in, is ignored.
@Suite(.serialized) struct InboundEDUTests {
    @Test func typingReceiptsAndToDeviceFromARemoteServerReachLocalSyncs() async throws {
        try await withMyelinServer({ $0.serverName = "alpha.test" }) { server, port in
            let app = server.app
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let device = try #require(try await alice.call("GET", "/account/whoami").json["device_id"]?.stringValue)
            let roomID = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let other = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            let message = try #require(try await alice.call("PUT", "/rooms/\(roomID)/send/m.room.message/t1",
                                                            ["msgtype": "m.text", "body": "hi"]).json["event_id"]?.stringValue)
            // @bob:beta.test joined `roomID` (as a federated join would record it); not `other`.
            try await app.database.write { db in
                try MembershipStore.setMembership(db, .init(roomID: roomID, userID: "@bob:beta.test", membership: "join",
                                                            eventID: "$bobjoin", streamOrdering: 1))
            }
            let beta = try ServerName(parsing: "beta.test"), gamma = try ServerName(parsing: "gamma.test")
            func typing(_ user: String, _ room: String) -> JSON {
                ["edu_type": "m.typing", "content": ["room_id": .string(room), "user_id": .string(user), "typing": true]]
            }
            let toDevice: JSON = ["edu_type": "m.direct_to_device", "content": [
                "sender": "@bob:beta.test", "type": "m.room_key_request", "message_id": "m1",
                "messages": ["@alice:alpha.test": .object([device: ["hello": "alice"]])]]]
            await app.receiveEDUs([
                ["edu_type": "m.receipt", "content": [roomID: ["m.read": ["@bob:beta.test": [
                    "event_ids": [.string(message)], "data": ["ts": 1]]]]]],
                toDevice, toDevice,  // a retried transaction delivers once
            ], origin: beta)
            // gamma cannot speak for bob.
            await app.receiveEDUs([["edu_type": "m.direct_to_device", "content": [
                "sender": "@bob:beta.test", "type": "m.forged", "message_id": "m2",
                "messages": ["@alice:alpha.test": .object([device: ["forged": true]])]]]], origin: gamma)
            // Typing last, right before the sync: a notice lasts a minute, and a loaded test
            // machine once took longer than the old 30 s between the transaction and the sync.
            let typingAt = ContinuousClock.now
            await app.receiveEDUs([
                typing("@bob:beta.test", roomID),
                typing("@carol:gamma.test", roomID),  // beta cannot speak for gamma's users
                typing("@bob:beta.test", other),      // nor in a room bob is not in
            ], origin: beta)

            let sync = try await alice.call("GET", "/sync?timeout=0")
            let rooms = sync.json["rooms"]?["join"]
            let ephemeral = rooms?[roomID]?["ephemeral"]?["events"]?.arrayValue ?? []
            let typers = ephemeral.first { $0["type"]?.stringValue == "m.typing" }?["content"]?["user_ids"]?.arrayValue
            #expect(typers == ["@bob:beta.test"], "sync answered \(ContinuousClock.now - typingAt) after the typing EDU")
            let receipt = ephemeral.first { $0["type"]?.stringValue == "m.receipt" }
            #expect(receipt?["content"]?[message]?["m.read"]?["@bob:beta.test"] != nil)
            let otherTypers = (rooms?[other]?["ephemeral"]?["events"]?.arrayValue ?? [])
                .first { $0["type"]?.stringValue == "m.typing" }?["content"]?["user_ids"]?.arrayValue ?? []
            #expect(otherTypers.isEmpty)
            let messages = sync.json["to_device"]?["events"]?.arrayValue ?? []
            #expect(messages.count == 1)
            #expect(messages.first?["sender"]?.stringValue == "@bob:beta.test")
            #expect(messages.first?["content"]?["hello"]?.stringValue == "alice")
        }
    }
}

/// Records the transactions a server sends (answers 200), for the outbound EDU test.
final class RecordingFederation: FederationRequesting {
    let sent = Mutex<[(ServerName, JSON)]>([])
    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply {
        if path.hasPrefix("/_matrix/federation/v1/send/"), let body { sent.withLock { $0.append((destination, body)) } }
        return FederationReply(status: 200, json: ["pdus": [:]])
    }
    var edus: [(ServerName, JSON)] {
        sent.withLock { $0.flatMap { entry in (entry.1["edus"]?.arrayValue ?? []).map { (entry.0, $0) } } }
    }
}

@Suite(.serialized) struct OutboundEDUTests {
    @Test func typingAndToDeviceForRemoteUsersLeaveThroughTheirServersDestination() async throws {
        try await withMyelinServer({ $0.serverName = "alpha.test" }) { server, port in
            let app = server.app
            let recorder = RecordingFederation()
            app.roomService.federation.connect(recorder)
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let roomID = try #require(try await alice.call("POST", "/createRoom", [:]).json["room_id"]?.stringValue)
            try await app.database.write { db in
                try MembershipStore.setMembership(db, .init(roomID: roomID, userID: "@bob:beta.test", membership: "join",
                                                            eventID: "$bobjoin", streamOrdering: 1))
            }
            #expect(try await alice.call("PUT", "/rooms/\(roomID)/typing/@alice:alpha.test", ["typing": true]).status == 200)
            let body: JSON = ["messages": ["@bob:beta.test": ["BOBDEVICE": ["secret": "s"]]]]
            #expect(try await alice.call("PUT", "/sendToDevice/m.test/tx1", body).status == 200)
            #expect(try await alice.call("PUT", "/sendToDevice/m.test/tx1", body).status == 200)  // retried: once
            // A key upload changes alice's device list: beta (bob's server) is told.
            let device = try #require(try await alice.call("GET", "/account/whoami").json["device_id"]?.stringValue)
            #expect(try await alice.call("POST", "/keys/upload", ["device_keys": KeysTests.deviceKeys("@alice:alpha.test", device)]).status == 200)
            #expect(try await alice.call("PUT", "/presence/@alice:alpha.test/status", ["presence": "unavailable"]).status == 200)
            for _ in 0..<300 where recorder.edus.count < 4 { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(100))  // a duplicate would have been sent by now
            let edus = recorder.edus
            #expect(edus.allSatisfy { $0.0.rawValue == "beta.test" })
            let typing = edus.filter { $0.1["edu_type"]?.stringValue == "m.typing" }
            #expect(typing.count == 1)
            #expect(typing.first?.1["content"]?["user_id"]?.stringValue == "@alice:alpha.test")
            let toDevice = edus.filter { $0.1["edu_type"]?.stringValue == "m.direct_to_device" }
            #expect(toDevice.count == 1)
            #expect(toDevice.first?.1["content"]?["messages"]?["@bob:beta.test"]?["BOBDEVICE"]?["secret"]?.stringValue == "s")
            let deviceList = edus.filter { $0.1["edu_type"]?.stringValue == "m.device_list_update" }
            #expect(deviceList.first?.1["content"]?["user_id"]?.stringValue == "@alice:alpha.test")
            #expect(deviceList.first?.1["content"]?["device_id"]?.stringValue == device)
            let presence = edus.filter { $0.1["edu_type"]?.stringValue == "m.presence" }
            #expect(presence.last?.1["content"]?["push"]?[0]?["presence"]?.stringValue == "unavailable")
            // Delivered: nothing left in the store.
            #expect(try await app.database.federationOutbox.toDevice(for: try ServerName(parsing: "beta.test"), limit: 10).isEmpty)
        }
    }
}
