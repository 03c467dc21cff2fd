import Foundation
import Matrix
import TestSupport
import Testing
@testable import App

/// The voice-message API end to end over a real socket and SQLite, with a 10 s speech sample
/// espeak-ng makes at test time and ffprobe checking what the server produced.
@Suite("Voice messages")
struct VoiceTests {
    static func path(_ text: String) -> String { text.addingPercentEncodingForPath }

    /// Sends `bytes` as the body of a POST (the raw-audio upload) and reads the reply.
    static func postBytes(_ client: MatrixTestClient, _ target: String, _ bytes: [UInt8], contentType: String) async throws
        -> MatrixTestClient.Reply {
        var head = "POST \(target) HTTP/1.1\r\nHost: localhost\r\nContent-Type: \(contentType)\r\n"
        head += "Authorization: Bearer \(client.token ?? "")\r\nContent-Length: \(bytes.count)\r\n\r\n"
        await client.raw.sendAsync(Array(head.utf8) + bytes)
        let response = try await client.raw.read()
        return MatrixTestClient.Reply(status: response.status, json: response.body.isEmpty ? .null : try JSON.parse(response.body))
    }

    static func uploadJSON(_ client: MatrixTestClient, _ bytes: [UInt8], type: String, room: String? = nil,
                           prefix: String = "/_matrix/client/r0") async throws -> MatrixTestClient.Reply {
        var body: [String: JSON] = ["content": .string(Base64.encode(bytes)), "content_type": .string(type), "duration_ms": 10000]
        if let room { body["room_id"] = .string(room) }
        return try await client.call("POST", prefix + "/voice/upload", .object(body))
    }

    /// The audio of a message, fetched through `GET /voice/{id}` and written to a file.
    static func fetchAudio(_ client: MatrixTestClient, _ id: String, ext: String) async throws -> String {
        let reply = try await client.call("GET", "/_matrix/client/r0/voice/\(id)")
        #expect(reply.status == 200)
        let text = try #require(reply.json["content"]?.stringValue)
        let bytes = try #require(Base64.decode(text))
        #expect(Int64(bytes.count) == reply.json["size"]?.intValue)
        let file = VoiceSamples.directory + "/fetched-\(UUID().uuidString).\(ext)"
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
        return file
    }

    /// A server with alice and bob registered, a private room of alice's, and a WAV speech
    /// sample of `seconds` made by espeak-ng.
    static func withSpeechAndRoom(
        seconds: Int,
        _ body: (MyelinServer, Int, MatrixTestClient, MatrixTestClient, String, [UInt8]) async throws -> Void
    ) async throws {
        let sample = try await VoiceSamples.speech(seconds: seconds)
        defer { try? FileManager.default.removeItem(atPath: sample) }
        let wav = try [UInt8](Data(contentsOf: URL(fileURLWithPath: sample)))
        try await withMyelinServer { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let (bob, _) = try await MatrixTestClient.registered(port: port, "bob")
            let created = try await alice.call("POST", "/createRoom", ["preset": "private_chat"])
            let room = try #require(created.json["room_id"]?.stringValue)
            try await body(server, port, alice, bob, room, wav)
        }
    }

    @Test func uploadListConvertOptimizeDelete() async throws {
        try await Self.withSpeechAndRoom(seconds: 10) { server, port, alice, bob, room, wav in

            // Upload (the seed's JSON form) sent to the room.
            let up = try await Self.uploadJSON(alice, wav, type: "audio/wav", room: room)
            #expect(up.status == 200, "\(up.json)")
            let id = try #require(up.json["message_id"]?.stringValue)
            let duration = try #require(up.json["duration_ms"]?.intValue)
            #expect(abs(duration - 10_000) <= 100)
            #expect(up.json["waveform"]?.arrayValue?.count == 100)
            let uri = try #require(up.json["content_uri"]?.stringValue)
            #expect(uri.hasPrefix("mxc://"))
            let eventID = try #require(up.json["event_id"]?.stringValue)

            // The room message Element plays: m.audio with the MSC1767/MSC3245 fields.
            let page = try await alice.call("GET", "/rooms/\(Self.path(room))/messages?dir=b&limit=20")
            let event = try #require(page.json["chunk"]?.arrayValue?.first { $0["event_id"]?.stringValue == eventID })
            #expect(event["type"]?.stringValue == "m.room.message")
            let content = try #require(event["content"])
            #expect(content["msgtype"]?.stringValue == "m.audio")
            #expect(content["url"]?.stringValue == uri)
            #expect(content["info"]?["mimetype"]?.stringValue == "audio/wav")
            #expect(content["info"]?["duration"]?.intValue == duration)
            #expect(content["info"]?["size"]?.intValue == Int64(wav.count))
            #expect(content["org.matrix.msc3245.voice"] == .object([:]))
            #expect(content["org.matrix.msc1767.audio"]?["duration"]?.intValue == duration)
            #expect(content["org.matrix.msc1767.audio"]?["waveform"]?.arrayValue?.count == 100)

            // The raw-audio form (streamed body), on the seed's other prefix.
            let raw = try await Self.postBytes(alice, "/_synapse/enhanced/voice/upload", wav, contentType: "audio/wav")
            #expect(raw.status == 200, "\(raw.json)")
            let rawID = try #require(raw.json["message_id"]?.stringValue)
            #expect(raw.json["room_id"] == nil && raw.json["event_id"] == nil)

            // Listed for the user and the room; others see neither.
            let mine = try await alice.call("GET", "/_matrix/client/r0/voice/user/\(Self.path("@alice:localhost"))")
            #expect(Set(mine.json["messages"]?.arrayValue?.compactMap { $0["message_id"]?.stringValue } ?? []) == [id, rawID])
            let inRoom = try await alice.call("GET", "/_matrix/client/r0/voice/room/\(Self.path(room))")
            #expect(inRoom.json["messages"]?.arrayValue?.compactMap { $0["message_id"]?.stringValue } == [id])
            #expect(inRoom.json["messages"]?.arrayValue?.first?["user_id"]?.stringValue == "@alice:localhost")
            #expect(try await bob.call("GET", "/_matrix/client/r0/voice/room/\(Self.path(room))").status == 403)
            #expect(try await bob.call("GET", "/_matrix/client/r0/voice/user/\(Self.path("@alice:localhost"))").status == 403)
            #expect(try await bob.call("GET", "/_matrix/client/r0/voice/\(id)").status == 404)
            #expect(try await bob.call("DELETE", "/_matrix/client/r0/voice/\(rawID)").status == 404)

            // A stored message sent to a room later (`/voice/{id}/send`); bob is not in the room.
            #expect(try await bob.call("POST", "/_matrix/client/r0/voice/\(rawID)/send", ["room_id": .string(room)]).status == 404)
            let sent = try await alice.call("POST", "/_matrix/client/r0/voice/\(rawID)/send", ["room_id": .string(room)])
            let sentEvent = try #require(sent.json["event_id"]?.stringValue, "\(sent.json)")
            let fetchedEvent = try await alice.call("GET", "/rooms/\(Self.path(room))/event/\(Self.path(sentEvent))")
            #expect(fetchedEvent.json["content"]?["org.matrix.msc3245.voice"] == .object([:]))
            #expect(fetchedEvent.json["content"]?["msgtype"]?.stringValue == "m.audio")

            // The stored audio is the upload, byte for byte.
            let fetched = try await Self.fetchAudio(alice, id, ext: "wav")
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: fetched))) == wav)
            try? FileManager.default.removeItem(atPath: fetched)

            // Converted to Ogg/Opus (the default), duration kept within 0.1 s.
            let converted = try await alice.call("POST", "/_matrix/client/r0/voice/convert", ["message_id": .string(id)])
            #expect(converted.status == 200, "\(converted.json)")
            let convertedID = try #require(converted.json["converted_message_id"]?.stringValue)
            #expect(converted.json["target_format"]?.stringValue == "audio/ogg")
            let ogg = try await Self.fetchAudio(alice, convertedID, ext: "ogg")
            #expect(abs(try await VoiceSamples.probedDurationMs(ogg) - 10_000) <= 100)
            try? FileManager.default.removeItem(atPath: ogg)
            // To MP3 at a requested bitrate.
            let mp3 = try await alice.call("POST", "/_matrix/client/r0/voice/convert",
                                           ["message_id": .string(id), "target_format": "audio/mpeg", "bitrate": 64000])
            #expect(mp3.status == 200 && mp3.json["content_type"]?.stringValue == "audio/mpeg", "\(mp3.json)")
            let mp3ID = try #require(mp3.json["converted_message_id"]?.stringValue)
            #expect(try await alice.call("POST", "/_matrix/client/r0/voice/convert",
                                         ["message_id": .string(id), "target_format": "video/mp4"]).errcode == "M_INVALID_PARAM")
            #expect(try await alice.call("POST", "/_matrix/client/r0/voice/convert",
                                         ["message_id": .string(id), "bitrate": 99_999_999]).errcode == "M_INVALID_PARAM")

            // Optimized: smaller, mono.
            let optimized = try await alice.call("POST", "/_matrix/client/r0/voice/optimize",
                                                 ["message_id": .string(id), "remove_silence": true])
            #expect(optimized.status == 200, "\(optimized.json)")
            #expect(optimized.json["status"]?.stringValue == "success")
            let optimizedID = try #require(optimized.json["optimized_message_id"]?.stringValue)
            let optimizedSize = try #require(optimized.json["size"]?.intValue)
            #expect(optimizedSize <= Int64(wav.count))
            #expect(optimized.json["channels"]?.intValue == 1)
            let small = try await Self.fetchAudio(alice, optimizedID, ext: "ogg")
            #expect(try await VoiceSamples.probedChannels(small) == 1)
            // Silence trimmed: the padded tail is gone.
            #expect(try await VoiceSamples.probedDurationMs(small) < 9_000)
            try? FileManager.default.removeItem(atPath: small)

            let stats = try await alice.call("GET", "/_matrix/client/r0/voice/stats")
            #expect(stats.json["total_messages"]?.intValue == 5)
            let userStats = try await alice.call("GET", "/_synapse/enhanced/voice/user/\(Self.path("@alice:localhost"))/stats")
            #expect(userStats.json["total_messages"]?.intValue == 5)
            let config = try await bob.call("GET", "/_matrix/client/r0/voice/config", token: .some(nil))
            #expect(config.status == 200 && config.json["supported_formats"]?.arrayValue?.contains("audio/ogg") == true)

            // Deleted: gone from the listings, and its media with it.
            let alice_ = try UserID(parsing: "@alice:localhost")
            for message in [id, rawID, convertedID, mp3ID, optimizedID] {
                    let found = try await server.app.database.voiceMessages.message(message)
                let record = try #require(found)
                let deleted = try await alice.call("DELETE", "/_matrix/client/r0/voice/\(message)")
                #expect(deleted.status == 200 && deleted.json["deleted"] == true)
                #expect(try await server.app.media.local(mediaID: record.mediaID) == nil)
                #expect(try await alice.call("GET", "/_matrix/client/r0/voice/\(message)").status == 404)
            }
            let after = try await alice.call("GET", "/_matrix/client/r0/voice/user/\(Self.path("@alice:localhost"))")
            #expect(after.json["messages"]?.arrayValue?.isEmpty == true)
            #expect(try await server.app.database.media.count(uploadedBy: alice_) == 0)
        }
    }

    /// Random bytes and a PNG are not audio: 400 `M_INVALID_PARAM`, no media row, no message.
    @Test func nonAudioIsRefusedAndNothingStored() async throws {
        try await withMyelinServer { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let user = try UserID(parsing: "@alice:localhost")
            let random = (0..<8192).map { _ in UInt8.random(in: 0...255) }
            let json = try await Self.uploadJSON(alice, random, type: "audio/ogg")
            #expect(json.status == 400 && json.errcode == "M_INVALID_PARAM", "\(json.json)")
            let png: [UInt8] = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] + random.prefix(512)
            let raw = try await Self.postBytes(alice, "/_matrix/client/v3/voice/upload", png, contentType: "audio/mpeg")
            #expect(raw.status == 400 && raw.errcode == "M_INVALID_PARAM", "\(raw.json)")
            #expect(try await server.app.database.media.count(uploadedBy: user) == 0)
            #expect(try await server.app.database.voiceMessages.stats(of: user).count == 0)
            let bad = try await alice.call("POST", "/_matrix/client/r0/voice/upload", ["content": "%%%"])
            #expect(bad.status == 400)
            #expect(try await alice.call("POST", "/_matrix/client/r0/voice/upload", token: .some(nil)).status == 401)
        }
    }

    /// A voice upload to a room the sender is not in is refused and leaves nothing.
    @Test func uploadToARoomOfOthersLeavesNothing() async throws {
        try await Self.withSpeechAndRoom(seconds: 2) { server, port, alice, bob, room, wav in
            let reply = try await Self.uploadJSON(bob, wav, type: "audio/wav", room: room)
            #expect(reply.status == 403, "\(reply.json)")
            let user = try UserID(parsing: "@bob:localhost")
            #expect(try await server.app.database.media.count(uploadedBy: user) == 0)
            #expect(try await server.app.database.voiceMessages.stats(of: user).count == 0)
        }
    }

    /// ffprobe past the configured wall clock is killed: 503, and the upload leaves nothing.
    @Test func aConversionPastItsTimeLimitIsKilledAndLeavesNothing() async throws {
        let sample = try await VoiceSamples.speech(seconds: 2)
        defer { try? FileManager.default.removeItem(atPath: sample) }
        let wav = try [UInt8](Data(contentsOf: URL(fileURLWithPath: sample)))
        try await withMyelinServer({ $0.voice.timeoutMs = 10 }) { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let reply = try await Self.uploadJSON(alice, wav, type: "audio/wav")
            #expect(reply.status == 503, "\(reply.json)")
            let user = try UserID(parsing: "@alice:localhost")
            #expect(try await server.app.database.media.count(uploadedBy: user) == 0)
            #expect(try await server.app.database.voiceMessages.stats(of: user).count == 0)
        }
    }

    /// Over `voice.max_size_bytes`: 413 before anything is stored.
    @Test func anUploadOverTheLimitIsRefused() async throws {
        try await withMyelinServer({ $0.voice.maxSizeBytes = 4096 }) { server, port in
            let (alice, _) = try await MatrixTestClient.registered(port: port, "alice")
            let big = [UInt8](repeating: 0x55, count: 8192)
            #expect(try await Self.uploadJSON(alice, big, type: "audio/wav").errcode == "M_TOO_LARGE")
            #expect(try await Self.postBytes(alice, "/_matrix/client/r0/voice/upload", big, contentType: "audio/wav").status == 413)
            #expect(try await server.app.database.media.count(uploadedBy: try UserID(parsing: "@alice:localhost")) == 0)
        }
    }
}
