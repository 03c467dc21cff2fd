import Matrix

/// One voice message as stored.
public struct VoiceMessageRecord: Sendable, Equatable {
    public var messageID: String
    public var mediaID: String
    public var userID: String
    public var roomID: String?
    public var eventID: String?
    public var sourceMessageID: String?
    public var durationMs: Int64
    public var contentType: String
    public var format: String
    public var codec: String
    public var sampleRate: Int64
    public var channels: Int64
    /// Amplitudes 0...1024, as a JSON array text.
    public var waveform: String
    public var size: Int64
    public var createdTS: Int64

    public init(messageID: String, mediaID: String, userID: String, roomID: String?, eventID: String? = nil,
                sourceMessageID: String? = nil, durationMs: Int64, contentType: String, format: String, codec: String,
                sampleRate: Int64, channels: Int64, waveform: String, size: Int64, createdTS: Int64) {
        self.messageID = messageID
        self.mediaID = mediaID
        self.userID = userID
        self.roomID = roomID
        self.eventID = eventID
        self.sourceMessageID = sourceMessageID
        self.durationMs = durationMs
        self.contentType = contentType
        self.format = format
        self.codec = codec
        self.sampleRate = sampleRate
        self.channels = channels
        self.waveform = waveform
        self.size = size
        self.createdTS = createdTS
    }
}

/// Totals over a user's (or every) voice message.
public struct VoiceMessageStats: Sendable, Equatable {
    public var count: Int64
    public var durationMs: Int64
    public var sizeBytes: Int64
}

/// The voice-message rows (`Schema.voiceMessages`). Obtained from `Database.voiceMessages`;
/// called by the voice handlers (`App/Voice`). The audio itself is media: deleting a voice
/// message here leaves its media row to the caller (`MediaStore`).
public struct VoiceMessageStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    private static let columns = """
        message_id, media_id, user_id, room_id, event_id, source_message_id, duration_ms, content_type, format, codec,
        sample_rate, channels, waveform, size, created_ts
        """

    public func insert(_ r: VoiceMessageRecord) async throws {
        try await database.write { db in
            try db.execute("""
                INSERT INTO voice_messages (\(Self.columns))
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, .text(r.messageID), .text(r.mediaID), .text(r.userID), .text(r.roomID), .text(r.eventID),
                .text(r.sourceMessageID), .int(r.durationMs), .text(r.contentType), .text(r.format), .text(r.codec),
                .int(r.sampleRate), .int(r.channels), .text(r.waveform), .int(r.size), .int(r.createdTS))
        }
    }

    /// Records the room event sent for a message.
    public func setEvent(messageID: String, roomID: RoomID, eventID: EventID) async throws {
        try await database.write { db in
            try db.execute("UPDATE voice_messages SET room_id = ?, event_id = ? WHERE message_id = ?",
                           .text(roomID.rawValue), .text(eventID.rawValue), .text(messageID))
        }
    }

    public func message(_ messageID: String) async throws -> VoiceMessageRecord? {
        try await database.read { db in
            try db.queryFirst("SELECT \(Self.columns) FROM voice_messages WHERE message_id = ?", .text(messageID))
                .map(Self.record)
        }
    }

    /// Removes a message; the removed row, or nil when there was none.
    public func delete(_ messageID: String) async throws -> VoiceMessageRecord? {
        try await database.write { db in
            guard let row = try db.queryFirst("SELECT \(Self.columns) FROM voice_messages WHERE message_id = ?",
                                              .text(messageID)) else { return nil }
            _ = try db.execute("DELETE FROM voice_messages WHERE message_id = ?", .text(messageID))
            return try Self.record(row)
        }
    }

    /// A user's messages, newest first, at most `limit`.
    public func messages(of user: UserID, limit: Int) async throws -> [VoiceMessageRecord] {
        try await database.read { db in
            try db.query("""
                SELECT \(Self.columns) FROM voice_messages WHERE user_id = ?
                ORDER BY created_ts DESC, message_id DESC LIMIT ?
                """, .text(user.rawValue), .int(Int64(limit))).map(Self.record)
        }
    }

    /// The messages sent to (or uploaded for) a room, newest first, at most `limit`.
    public func messages(in room: RoomID, limit: Int) async throws -> [VoiceMessageRecord] {
        try await database.read { db in
            try db.query("""
                SELECT \(Self.columns) FROM voice_messages WHERE room_id = ?
                ORDER BY created_ts DESC, message_id DESC LIMIT ?
                """, .text(room.rawValue), .int(Int64(limit))).map(Self.record)
        }
    }

    /// Totals of a user's messages, or of every message when `user` is nil.
    public func stats(of user: UserID?) async throws -> VoiceMessageStats {
        try await database.read { db in
            let sql = "SELECT COUNT(*), COALESCE(SUM(duration_ms), 0), COALESCE(SUM(size), 0) FROM voice_messages"
            let row = try user.map { try db.queryFirst(sql + " WHERE user_id = ?", .text($0.rawValue)) }
                ?? db.queryFirst(sql, [])
            guard let row else { return VoiceMessageStats(count: 0, durationMs: 0, sizeBytes: 0) }
            return VoiceMessageStats(count: try row.int(0), durationMs: try row.int(1), sizeBytes: try row.int(2))
        }
    }

    private static func record(_ row: SQLRow) throws -> VoiceMessageRecord {
        VoiceMessageRecord(messageID: try row.text(0), mediaID: try row.text(1), userID: try row.text(2),
                           roomID: try row.optionalText(3), eventID: try row.optionalText(4),
                           sourceMessageID: try row.optionalText(5), durationMs: try row.int(6),
                           contentType: try row.text(7), format: try row.text(8), codec: try row.text(9),
                           sampleRate: try row.int(10), channels: try row.int(11), waveform: try row.text(12),
                           size: try row.int(13), createdTS: try row.int(14))
    }
}

extension Database {
    /// Voice messages (the seed's voice extension).
    public var voiceMessages: VoiceMessageStore { VoiceMessageStore(database: self) }
}
