import Actors
import Matrix
import Persistence
import Transport

/// Listings, statistics, `convert` and `optimize` of the voice API.
extension VoiceEndpoints {
    static let maxListing = 1000

    private static func summaries(_ records: [VoiceMessageRecord], _ context: RequestContext) -> HTTPResponse {
        let server = context.app.media.serverName
        return .json(["messages": .array(records.map { .object($0.json(serverName: server)) }), "count": .int(Int64(records.count))])
    }

    /// The user named in the path, whom only they themselves or an admin may look at.
    private static func selfOrAdmin(_ context: RequestContext) async throws -> UserID {
        _ = try enabledVoice(context)
        let requester = try await context.requireUser()
        let user = try UserID(parsing: context.parameter("userId"))
        guard user == requester.userID || requester.isAdmin else {
            throw MatrixError(.forbidden, "You may only look at your own voice messages")
        }
        return user
    }

    static func enabledVoice(_ context: RequestContext) throws -> VoiceMessages {
        guard context.app.configuration.voice.enabled else { throw MatrixError(.unrecognized, "Voice messages are disabled") }
        return context.app.voice
    }

    /// `GET /voice/user/{user_id}`: a user's messages, newest first (`?limit=`, at most 1000).
    static func userMessages(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await selfOrAdmin(context)
        let limit = try context.limit(default: 100, max: maxListing, min: 1)
        return summaries(try await context.app.database.voiceMessages.messages(of: user, limit: limit), context)
    }

    /// `GET /voice/room/{room_id}`: the messages of a room, for its joined members.
    static func roomMessages(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try enabledVoice(context)
        let requester = try await context.requireUser()
        let room = try RoomID(parsing: context.parameter("roomId"))
        if !requester.isAdmin { try await context.app.roomService.requireJoined(requester.userID, room) }
        let limit = try context.limit(default: 100, max: maxListing, min: 1)
        return summaries(try await context.app.database.voiceMessages.messages(in: room, limit: limit), context)
    }

    private static func statsJSON(_ user: UserID?, _ s: VoiceMessageStats) -> [String: JSON] {
        var out: [String: JSON] = ["total_messages": .int(s.count), "total_duration_ms": .int(s.durationMs),
                                   "total_size_bytes": .int(s.sizeBytes)]
        if let user { out["user_id"] = .string(user.rawValue) }
        return out
    }

    /// `GET /voice/user/{user_id}/stats`.
    static func userStats(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await selfOrAdmin(context)
        return .json(.object(statsJSON(user, try await context.app.database.voiceMessages.stats(of: user))))
    }

    /// `GET /voice/stats`: the requester's totals; an admin also gets the server's (`server`).
    static func ownStats(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try enabledVoice(context)
        let requester = try await context.requireUser()
        let store = context.app.database.voiceMessages
        var out = statsJSON(requester.userID, try await store.stats(of: requester.userID))
        if requester.isAdmin { out["server"] = .object(statsJSON(nil, try await store.stats(of: nil))) }
        return .json(.object(out))
    }

    /// An optional integer field of a request within `range` (`M_INVALID_PARAM` outside).
    static func bounded(_ body: [String: JSON], _ name: String, _ range: ClosedRange<Int64>) throws -> Int? {
        guard let value = body[name], !value.isNull else { return nil }
        guard case .int(let number) = value, range.contains(number) else {
            throw MatrixError(.invalidParam, "\(name) must be an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return Int(number)
    }

    /// `POST /voice/convert` `{message_id, target_format, bitrate?, quality?}`: a new message
    /// in the target format (Ogg/Opus by default), stored as new media.
    static func convert(_ context: RequestContext) async throws -> HTTPResponse {
        let voice = try enabledVoice(context)
        let body = try await context.jsonObject()
        let (source, requester) = try await owned(context, body["message_id"]?.stringValue)
        let target = body["target_format"]?.stringValue ?? "audio/ogg"
        guard let format = VoiceFormat.named(target) else {
            throw MatrixError(.invalidParam, "target_format must be one of \(VoiceFormat.all.map(\.mimeType).joined(separator: ", "))")
        }
        let quality = try bounded(body, "quality", 6...320)
        let bitrate = try bounded(body, "bitrate", 6000...320_000) ?? quality.map { $0 * 1000 } ?? voice.configuration.defaultBitrate
        let app = context.app
        let (_, path) = try await voice.file(of: source, app: app)
        let output = try await voice.transcoder.convert(path: path, to: format, bitrate: bitrate)
        guard let converted = try await voice.storeDerived(outputPath: output, mimeType: format.mimeType,
                                                           fileExtension: format.fileExtension, from: source,
                                                           owner: requester.userID, app: app) else {
            throw MatrixError(.unknown, "The conversion produced nothing")
        }
        var out = converted.json(serverName: app.media.serverName)
        out["status"] = "success"
        out["message_id"] = .string(source.messageID)
        out["converted_message_id"] = .string(converted.messageID)
        out["target_format"] = .string(format.mimeType)
        out["bitrate"] = .int(Int64(bitrate))
        if let quality { out["quality"] = .int(Int64(quality)) }
        return .json(.object(out))
    }

    /// `POST /voice/optimize` `{message_id, target_size_kb?, preserve_quality?, remove_silence?,
    /// normalize_volume?}`: a mono Ogg/Opus copy at a voice bitrate, silences trimmed unless
    /// `remove_silence` is false. A result no smaller than the source is dropped and the source
    /// returned (`status: "unchanged"`).
    static func optimize(_ context: RequestContext) async throws -> HTTPResponse {
        let voice = try enabledVoice(context)
        let body = try await context.jsonObject()
        let (source, requester) = try await owned(context, body["message_id"]?.stringValue)
        let targetKB = try bounded(body, "target_size_kb", 10...10_000)
        var bitrate = body["preserve_quality"]?.boolValue == false ? 16_000 : voice.configuration.defaultBitrate
        if let targetKB, source.durationMs > 0 {
            bitrate = min(bitrate, Int(Int64(targetKB) * 8192 * 1000 / max(source.durationMs, 1)))
        }
        bitrate = max(6000, bitrate)
        let options = VoiceOptimization(bitrate: bitrate, removeSilence: body["remove_silence"]?.boolValue ?? true,
                                        normalizeVolume: body["normalize_volume"]?.boolValue ?? false)
        let app = context.app
        let (_, path) = try await voice.file(of: source, app: app)
        let output = try await voice.transcoder.optimize(path: path, options)
        let derived = try await voice.storeDerived(outputPath: output, mimeType: "audio/ogg", fileExtension: "ogg",
                                                   from: source, owner: requester.userID, smallerThan: source.size, app: app)
        let optimized = derived ?? source
        let status = derived == nil ? "unchanged" : "success"
        var out = optimized.json(serverName: app.media.serverName)
        out["status"] = .string(status)
        out["message_id"] = .string(source.messageID)
        out["optimized_message_id"] = .string(optimized.messageID)
        out["bitrate"] = .int(Int64(bitrate))
        out["original_size"] = .int(source.size)
        if let targetKB { out["target_size_kb"] = .int(Int64(targetKB)) }
        return .json(.object(out))
    }
}
