import Actors
import Matrix
import Persistence

#if canImport(Glibc)
import Glibc
#endif

/// The voice-message extension's logic between the handlers (`VoiceEndpoints`) and the media
/// repository: probing and recording an upload, sending it to a room as an MSC3245 voice
/// message, deriving converted and optimized copies, deleting. Owned by `MyelinApp` (`voice`).
final class VoiceMessages: Sendable {
    let configuration: Configuration.Voice
    let transcoder: VoiceTranscoder

    init(configuration: Configuration) {
        self.configuration = configuration.voice
        transcoder = VoiceTranscoder(configuration: configuration.voice, mediaRoot: configuration.resolvedMediaPath)
    }

    static func newMessageID() -> String {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        return "voice_" + String(decoding: (0..<24).map { _ in letters.randomElement()! }, as: UTF8.self)
    }

    /// Probes stored media and records it as a voice message of `owner`. Audio it cannot read,
    /// or longer than `max_duration_ms`, is refused with 400 and the media deleted: nothing of
    /// a refused upload stays.
    func record(media: MediaRecord, owner: UserID, room: RoomID?, source: String?, app: MyelinApp) async throws -> VoiceMessageRecord {
        do {
            guard let (stored, path) = try await app.media.local(mediaID: media.mediaID) else {
                throw MatrixError(.notFound, "The uploaded media is gone")
            }
            let analysis = try await transcoder.analyse(path: path)
            guard analysis.durationMs <= Int64(configuration.maxDurationMs) else {
                throw MatrixError(.invalidParam, "Voice messages may last at most \(configuration.maxDurationMs) ms")
            }
            let record = VoiceMessageRecord(
                messageID: Self.newMessageID(), mediaID: stored.mediaID, userID: owner.rawValue, roomID: room?.rawValue,
                sourceMessageID: source, durationMs: analysis.durationMs,
                contentType: stored.contentType ?? "application/octet-stream", format: analysis.format, codec: analysis.codec,
                sampleRate: analysis.sampleRate, channels: analysis.channels,
                waveform: JSON.array(analysis.waveform.map { .int(Int64($0)) }).encodedString, size: stored.size,
                createdTS: Clock.nowMilliseconds())
            try await app.database.voiceMessages.insert(record)
            return record
        } catch {
            try? await app.media.delete(origin: media.origin, mediaID: media.mediaID)
            throw error
        }
    }

    /// Sends `record` to `room` as `m.room.message` / `m.audio` with the MSC1767 audio and
    /// MSC3245 voice fields (what Element records and plays), through the room's actor like
    /// `PUT /rooms/{roomId}/send`. The message remembers the event.
    func send(_ record: VoiceMessageRecord, to room: RoomID, requester: Requester, app: MyelinApp) async throws -> EventID {
        try app.accounts.rateLimiter.check("message", client: requester.userID.rawValue, app.configuration.rateLimits.messages)
        let url = JSON.string("mxc://\(app.media.serverName)/\(record.mediaID)")
        let waveform = (try? JSON.parse(Array(record.waveform.utf8))) ?? .array([])
        let body = "Voice message"
        let content: [String: JSON] = [
            "msgtype": "m.audio",
            "body": .string(body),
            "url": url,
            "info": ["mimetype": .string(record.contentType), "size": .int(record.size), "duration": .int(record.durationMs)],
            "org.matrix.msc1767.text": .string(body),
            "org.matrix.msc1767.file": ["url": url, "name": "voice-message", "mimetype": .string(record.contentType),
                                        "size": .int(record.size)],
            "org.matrix.msc1767.audio": ["duration": .int(record.durationMs), "waveform": waveform],
            "org.matrix.msc3245.voice": .object([:]),
        ]
        let event = try await app.roomService.send(EventDraft(type: "m.room.message", sender: requester.userID, content: content),
                                                   in: room)
        try await app.database.voiceMessages.setEvent(messageID: record.messageID, roomID: room, eventID: event.eventID)
        return event.eventID
    }

    /// Deletes a message and its media.
    func delete(_ record: VoiceMessageRecord, app: MyelinApp) async throws {
        _ = try await app.database.voiceMessages.delete(record.messageID)
        try await app.media.delete(origin: app.media.serverName, mediaID: record.mediaID)
    }

    /// The stored file of a message (404 when its media is gone or quarantined).
    func file(of record: VoiceMessageRecord, app: MyelinApp) async throws -> (MediaRecord, path: String) {
        guard let found = try await app.media.local(mediaID: record.mediaID) else {
            throw MatrixError(.notFound, "The audio of this voice message is gone")
        }
        return found
    }

    /// Stores a converted file (and removes it) as a new voice message derived from `source`;
    /// nil (nothing stored) when `smallerThan` is given and the file is not smaller.
    func storeDerived(outputPath: String, mimeType: String, fileExtension: String, from source: VoiceMessageRecord,
                      owner: UserID, smallerThan: Int64? = nil, app: MyelinApp) async throws -> VoiceMessageRecord? {
        let limit = configuration.maxOutputBytes
        let bytes: [UInt8]
        do {
            bytes = try await OffPool.run { try OffPool.readFile(outputPath, limit: limit) }
            _ = try? await OffPool.run { _ = unlink(outputPath) }
        } catch {
            _ = try? await OffPool.run { _ = unlink(outputPath) }
            throw error
        }
        if let smallerThan, Int64(bytes.count) >= smallerThan { return nil }
        let media = try await app.media.store(bytes: bytes, contentType: mimeType, fileName: "voice-message.\(fileExtension)",
                                              uploader: owner)
        return try await record(media: media, owner: owner, room: source.roomID.flatMap { try? RoomID(parsing: $0) },
                                source: source.messageID, app: app)
    }

    /// Who may read a message: its owner, an admin, or a member joined to its room.
    func requireReadable(_ record: VoiceMessageRecord, by requester: Requester, app: MyelinApp) async throws {
        if record.userID == requester.userID.rawValue || requester.isAdmin { return }
        if let room = record.roomID.flatMap({ try? RoomID(parsing: $0) }),
           try await app.roomService.membership(requester.userID, in: room)?.membership == MembershipState.join {
            return
        }
        throw MatrixError(.notFound, "Voice message not found")
    }
}

extension VoiceMessageRecord {
    /// The message as the voice API returns it.
    func json(serverName: String) -> [String: JSON] {
        var out: [String: JSON] = [
            "message_id": .string(messageID),
            "content_uri": .string("mxc://\(serverName)/\(mediaID)"),
            "user_id": .string(userID),
            "duration_ms": .int(durationMs),
            "content_type": .string(contentType),
            "format": .string(format),
            "codec": .string(codec),
            "sample_rate": .int(sampleRate),
            "channels": .int(channels),
            "size": .int(size),
            "created_at": .int(createdTS),
            "waveform": (try? JSON.parse(Array(waveform.utf8))) ?? .array([]),
        ]
        if let roomID { out["room_id"] = .string(roomID) }
        if let eventID { out["event_id"] = .string(eventID) }
        if let sourceMessageID { out["source_message_id"] = .string(sourceMessageID) }
        return out
    }
}
