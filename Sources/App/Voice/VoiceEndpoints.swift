import Actors
import Matrix
import Persistence
import Transport

/// The seed's voice-message extension (`/_matrix/client/r0/voice/*`, also under `v3`, and
/// `/_synapse/enhanced/voice/*`): upload (the seed's JSON with base64 `content`, or the raw
/// audio as the body), get, delete, listings, stats, config, convert and optimize. Audio is
/// stored as media; ffprobe/ffmpeg run through `VoiceTranscoder`. docs/media.md, "Voice
/// messages".
enum VoiceEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        let table: [(HTTPMethod, String, Handler)] = [
            (.get, "/config", config),
            (.post, "/upload", upload),
            (.get, "/stats", ownStats),
            (.get, "/user/{userId}/stats", userStats),
            (.get, "/user/{userId}", userMessages),
            (.get, "/room/{roomId}", roomMessages),
            (.post, "/convert", convert),
            (.post, "/optimize", optimize),
            (.get, "/{messageId}", getMessage),
            (.delete, "/{messageId}", deleteMessage),
            (.post, "/{messageId}/send", sendMessage),
        ]
        for (method, path, handler) in table {
            routes.client(method, "/voice" + path, handler)
            routes.add(method, "/_synapse/enhanced/voice" + path, handler)
        }
    }

    /// True for the upload paths, whose body the transport streams (`MyelinApp.bodyPolicy`).
    static func isUploadPath(_ path: Substring) -> Bool {
        path.hasSuffix("/voice/upload") && (path.hasPrefix("/_matrix/client/") || path.hasPrefix("/_synapse/enhanced/"))
    }

    /// The largest upload body: the audio, or its base64 in the seed's JSON.
    static func maxBodyBytes(_ configuration: Configuration) -> Int {
        let audio = min(configuration.voice.maxSizeBytes, configuration.media.maxUploadBytes)
        return min(configuration.transport.maxMediaBodyBytes, audio / 3 * 4 + 64 << 10)
    }

    private static func enabled(_ context: RequestContext) throws -> VoiceMessages { try enabledVoice(context) }

    /// `GET /voice/config`: the limits and formats.
    static func config(_ context: RequestContext) async throws -> HTTPResponse {
        let v = try enabled(context).configuration
        return .json([
            "supported_formats": .array(VoiceFormat.all.map { .string($0.mimeType) }),
            "max_size_bytes": .int(Int64(min(v.maxSizeBytes, context.app.configuration.media.maxUploadBytes))),
            "max_duration_ms": .int(Int64(v.maxDurationMs)),
            "default_sample_rate": 48000,
            "default_channels": 1,
            "default_bitrate": .int(Int64(v.defaultBitrate)),
        ])
    }

    /// `POST /voice/upload`: a JSON body (`content` base64, `content_type`, `room_id`) or the
    /// audio itself (`Content-Type: audio/*` or `application/octet-stream`, `?room_id=`). Probed before it is recorded; with
    /// a room, sent there as a voice message.
    static func upload(_ context: RequestContext) async throws -> HTTPResponse {
        let voice = try enabled(context)
        let requester = try await context.requireUser(allowGuests: false)
        let app = context.app
        let maxAudio = min(voice.configuration.maxSizeBytes, app.configuration.media.maxUploadBytes)
        let declaredType = context.request.headers["Content-Type"]?.lowercased() ?? ""
        let media: MediaRecord
        let roomText: String?
        // The audio itself under an audio type; otherwise the seed's JSON (clients that send
        // JSON without a Content-Type included).
        let rawAudio = ["audio/", "video/", "application/ogg", "application/octet-stream"].contains { declaredType.hasPrefix($0) }
        if !rawAudio {
            let object = try RequestContext.jsonObject(from: try await collect(context.request.body, limit: maxBodyBytes(app.configuration)))
            guard let base64 = object["content"]?.stringValue, let bytes = Base64.decode(base64), !bytes.isEmpty else {
                throw MatrixError(.badJSON, "content must be the audio in base64")
            }
            guard bytes.count <= maxAudio else { throw MatrixError(.tooLarge, "Voice messages may be at most \(maxAudio) bytes") }
            let type = try object["content_type"].map { try mimeType($0.stringValue) } ?? "audio/ogg"
            roomText = object["room_id"]?.stringValue
            if let roomText { _ = try RoomID(parsing: roomText) }
            media = try await app.media.store(bytes: bytes, contentType: type, fileName: "voice-message", uploader: requester.userID)
        } else {
            roomText = context.query["room_id"]
            if let roomText { _ = try RoomID(parsing: roomText) }
            if let length = context.request.head.contentLength, length > maxAudio {
                throw MatrixError(.tooLarge, "Voice messages may be at most \(maxAudio) bytes")
            }
            let type = try mimeType(declaredType)
            media = try await app.media.store(body: MediaRequestBody(context.request.body), declaredLength: context.request.head.contentLength,
                                              contentType: type, fileName: "voice-message", uploader: requester.userID)
        }
        let room = try roomText.map { try RoomID(parsing: $0) }
        // A chunked raw body has no declared length; the transport bounds it loosely (base64 room).
        if media.size > Int64(maxAudio) {
            try? await app.media.delete(origin: media.origin, mediaID: media.mediaID)
            throw MatrixError(.tooLarge, "Voice messages may be at most \(maxAudio) bytes")
        }
        var record = try await voice.record(media: media, owner: requester.userID, room: room, source: nil, app: app)
        if let room {
            do {
                record.eventID = try await voice.send(record, to: room, requester: requester, app: app).rawValue
            } catch {
                try? await voice.delete(record, app: app)
                throw error
            }
        }
        return .json(.object(record.json(serverName: app.media.serverName)))
    }

    /// A MIME type from a request: `type/subtype`, printable, at most 127 bytes.
    static func mimeType(_ text: String?) throws -> String {
        guard let text, text.utf8.count <= 127, text.contains("/"),
              text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f || $0 == 0x20 }) else {
            throw MatrixError(.invalidParam, "content_type must be a MIME type")
        }
        return text
    }

    /// A body of at most `limit` bytes (413 past it, as soon as it is passed).
    static func collect(_ body: RequestBody, limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await chunk in MediaRequestBody(body) {
            guard bytes.count + chunk.count <= limit else { throw MatrixError(.tooLarge, "Request body too large") }
            bytes.append(contentsOf: chunk)
        }
        return bytes
    }

    /// The message named in the path, readable by the requester (404 otherwise).
    static func readable(_ context: RequestContext, _ id: String) async throws -> (VoiceMessageRecord, Requester) {
        let voice = try enabled(context)
        let requester = try await context.requireUser()
        try RequestBounds.text(id, "message_id", maxBytes: RequestBounds.maxIdentifierBytes)
        guard let record = try await context.app.database.voiceMessages.message(id) else {
            throw MatrixError(.notFound, "Voice message not found")
        }
        try await voice.requireReadable(record, by: requester, app: context.app)
        return (record, requester)
    }

    /// A message the requester owns (or an admin), for changes.
    static func owned(_ context: RequestContext, _ id: String?) async throws -> (VoiceMessageRecord, Requester) {
        guard let id else { throw MatrixError(.missingParam, "message_id is required") }
        let (record, requester) = try await readable(context, id)
        guard record.userID == requester.userID.rawValue || requester.isAdmin else {
            throw MatrixError(.forbidden, "Only the sender may change a voice message")
        }
        return (record, requester)
    }

    /// `GET /voice/{message_id}`: the message, its audio inlined as base64 when small.
    static func getMessage(_ context: RequestContext) async throws -> HTTPResponse {
        let (record, _) = try await readable(context, context.parameter("messageId"))
        let app = context.app
        var out = record.json(serverName: app.media.serverName)
        let inline = app.configuration.voice.inlineContentMaxBytes
        if record.size <= Int64(inline) {
            let (_, path) = try await app.voice.file(of: record, app: app)
            let bytes = try await OffPool.run { try OffPool.readFile(path, limit: inline) }
            out["content"] = .string(Base64.encode(bytes))
        }
        return .json(.object(out))
    }

    /// `DELETE /voice/{message_id}`: the sender (or an admin) deletes it and its media.
    static func deleteMessage(_ context: RequestContext) async throws -> HTTPResponse {
        let (record, _) = try await owned(context, context.parameter("messageId"))
        try await context.app.voice.delete(record, app: context.app)
        return .json(["deleted": true, "message_id": .string(record.messageID)])
    }

    /// `POST /voice/{message_id}/send` `{"room_id": ...}`: sends a stored message to a room.
    static func sendMessage(_ context: RequestContext) async throws -> HTTPResponse {
        let (record, requester) = try await owned(context, context.parameter("messageId"))
        let body = try await context.jsonObject()
        guard let roomText = body["room_id"]?.stringValue else { throw MatrixError(.missingParam, "room_id is required") }
        let room = try RoomID(parsing: roomText)
        let eventID = try await context.app.voice.send(record, to: room, requester: requester, app: context.app)
        return .json(["event_id": .string(eventID.rawValue), "message_id": .string(record.messageID)])
    }
}
