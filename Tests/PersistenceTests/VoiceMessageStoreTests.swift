import Matrix
import Testing
@testable import Persistence

@Suite("Voice message store")
struct VoiceMessageStoreTests {
    static func record(_ id: String, user: String, room: String?, duration: Int64, size: Int64, ts: Int64) -> VoiceMessageRecord {
        VoiceMessageRecord(messageID: id, mediaID: "m_" + id, userID: user, roomID: room, durationMs: duration,
                           contentType: "audio/ogg", format: "ogg", codec: "opus", sampleRate: 48000, channels: 1,
                           waveform: "[0,512,1024]", size: size, createdTS: ts)
    }

    @Test(arguments: Backend.enabled)
    func insertListStatsDelete(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.voiceMessages
            let (alice, bob) = (try UserID(parsing: "@alice:t"), try UserID(parsing: "@bob:t"))
            let room = try RoomID(parsing: "!room:t")
            try await store.insert(Self.record("v1", user: alice.rawValue, room: room.rawValue, duration: 10_000, size: 1000, ts: 1))
            try await store.insert(Self.record("v2", user: alice.rawValue, room: nil, duration: 5_000, size: 500, ts: 2))
            try await store.insert(Self.record("v3", user: bob.rawValue, room: room.rawValue, duration: 1_000, size: 100, ts: 3))
            #expect(try await store.message("v1") == Self.record("v1", user: alice.rawValue, room: room.rawValue,
                                                                 duration: 10_000, size: 1000, ts: 1))
            #expect(try await store.message("nope") == nil)
            #expect(try await store.messages(of: alice, limit: 10).map(\.messageID) == ["v2", "v1"])
            #expect(try await store.messages(of: alice, limit: 1).map(\.messageID) == ["v2"])
            #expect(try await store.messages(in: room, limit: 10).map(\.messageID) == ["v3", "v1"])
            #expect(try await store.stats(of: alice) == VoiceMessageStats(count: 2, durationMs: 15_000, sizeBytes: 1500))
            #expect(try await store.stats(of: nil) == VoiceMessageStats(count: 3, durationMs: 16_000, sizeBytes: 1600))
            #expect(try await store.stats(of: try UserID(parsing: "@nobody:t")) == VoiceMessageStats(count: 0, durationMs: 0, sizeBytes: 0))

            try await store.setEvent(messageID: "v2", roomID: room, eventID: try EventID(parsing: "$event"))
            #expect(try await store.message("v2")?.eventID == "$event")
            #expect(try await store.messages(in: room, limit: 10).map(\.messageID) == ["v3", "v2", "v1"])

            #expect(try await store.delete("v1")?.mediaID == "m_v1")
            #expect(try await store.delete("v1") == nil)
            #expect(try await store.messages(of: alice, limit: 10).map(\.messageID) == ["v2"])
        }
    }
}
