import Matrix
import Synchronization
import TestSupport
import Testing
@testable import App

/// A long-poll woken by a position that is stored but not yet visible (an earlier position
/// of the same stream still being written) waits for it without spinning, then answers with
/// what woke it.
@Suite struct LongPollVisibilityTests {
    static func path(_ room: String) -> String { room.addingPercentEncodingForPath }

    @Test func aWakeBeforeItsPositionIsVisibleWaitsWithoutSpinning() async throws {
        // One loop: the long-poll and everything else share its thread.
        try await withMyelinServer({ $0.transport.loops = 1 }) { server, port in
            let app = server.app
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let room = try #require(try await alice.call("POST", "/createRoom", ["preset": "public_chat"]).json["room_id"]?.stringValue)
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/join", .object([:])).status == 200)
            let event = try #require(try await alice.call("PUT", "/rooms/\(Self.path(room))/send/m.room.message/1",
                                                          ["msgtype": "m.text", "body": "read me"]).json["event_id"]?.stringValue)
            let since = try #require(try await alice.call("GET", "/sync").json["next_batch"]?.stringValue)

            // A receipts position held open: positions after it are stored but not visible.
            let allocated = Atomic<Bool>(false)
            let release = Atomic<Bool>(false)
            let holder = Task {
                try await app.roomService.receipts.stream.withNextPosition { _ in
                    allocated.store(true, ordering: .sequentiallyConsistent)
                    while !release.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(5)) }
                }
            }
            while !allocated.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(5)) }

            let poll = Task { try await alice.call("GET", "/sync?since=\(since)&timeout=20000") }
            try await Task.sleep(for: .milliseconds(200))
            let wakesBefore = app.sync.wakes.load(ordering: .relaxed)
            // Bob's receipt is stored behind the held position and notified at once.
            #expect(try await bob.call("POST", "/rooms/\(Self.path(room))/receipt/m.read/\(Self.path(event))", .object([:])).status == 200)
            try await Task.sleep(for: .milliseconds(400))
            let wakes = app.sync.wakes.load(ordering: .relaxed) - wakesBefore
            // Woken once; a spinning long-poll would have counted a wake per turn (thousands).
            #expect(wakes >= 1 && wakes <= 3, "\(wakes) wake-ups while the position was not visible")
            // The server still answers on its only loop meanwhile.
            #expect(try await bob.call("GET", "/account/whoami").status == 200)

            release.store(true, ordering: .sequentiallyConsistent)
            try await holder.value
            let woken = try await poll.value
            let ephemeral = woken.json["rooms"]?["join"]?[room]?["ephemeral"]?["events"]?.arrayValue ?? []
            #expect(ephemeral.contains { $0["type"] == "m.receipt" && $0["content"]?[event]?["m.read"]?["@bob:localhost"] != nil },
                    "\(woken.json)")
        }
    }
}
