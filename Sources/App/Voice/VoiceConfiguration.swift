/// The `voice:` section: the voice-message extension (`/_matrix/client/r0/voice/*` and
/// `/_synapse/enhanced/voice/*`) and the bounds of the ffmpeg/ffprobe children it runs.
/// Read by `ConfigurationLoader.readVoice`, printed by `ConfigurationTemplate.voice`, used by
/// `VoiceMessages` and `VoiceTranscoder`.
extension Configuration {
    struct Voice: Sendable, Equatable {
        var enabled = true
        var ffmpegPath = "/usr/bin/ffmpeg"
        var ffprobePath = "/usr/bin/ffprobe"
        /// util-linux's `prlimit`, which sets the children's rlimits; empty runs them without.
        var prlimitPath = "/usr/bin/prlimit"
        /// The largest voice upload (decoded bytes).
        var maxSizeBytes = 20 << 20
        /// The longest voice message (probed duration).
        var maxDurationMs = 600_000
        /// Conversions (probe, waveform, convert, optimize) running at once; more wait in a
        /// queue of `maxQueuedConversions`, past which the answer is 429.
        var maxConcurrentConversions = 2
        var maxQueuedConversions = 16
        /// Wall clock of one ffmpeg/ffprobe run; the process group is killed past it.
        var timeoutMs = 60_000
        /// Address space of one run (`RLIMIT_AS`).
        var memoryLimitBytes = 1 << 30
        /// The largest file a conversion may write (`-fs` and `RLIMIT_FSIZE`).
        var maxOutputBytes = 32 << 20
        /// `GET /voice/{message_id}` inlines the audio as base64 up to this size.
        var inlineContentMaxBytes = 2 << 20
        /// Opus bitrate of `convert` and `optimize` when the request names none (bit/s).
        var defaultBitrate = 32_000

        var subprocessLimits: SubprocessLimits {
            SubprocessLimits(wallClockMilliseconds: timeoutMs, memoryBytes: memoryLimitBytes, fileSizeBytes: maxOutputBytes,
                             cpuSeconds: max(1, timeoutMs / 1000 * 2), maxStdoutBytes: 1 << 20, maxStderrBytes: 64 << 10)
        }
    }
}

extension ConfigurationLoader {
    static func readVoice(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("voice") { v in
            try v.bool("enabled") { configuration.voice.enabled = $0 }
            try v.string("ffmpeg_path") { configuration.voice.ffmpegPath = $0 }
            try v.string("ffprobe_path") { configuration.voice.ffprobePath = $0 }
            try v.string("prlimit_path") { configuration.voice.prlimitPath = $0 }
            try v.int("max_size_bytes", range: 1024...(1 << 31)) { configuration.voice.maxSizeBytes = $0 }
            try v.int("max_duration_ms", range: 1000...86_400_000) { configuration.voice.maxDurationMs = $0 }
            try v.int("max_concurrent_conversions", range: 1...64) { configuration.voice.maxConcurrentConversions = $0 }
            try v.int("max_queued_conversions", range: 0...10_000) { configuration.voice.maxQueuedConversions = $0 }
            try v.int("timeout_ms", range: 10...3_600_000) { configuration.voice.timeoutMs = $0 }
            try v.int("memory_limit_bytes", range: 0...(1 << 40)) { configuration.voice.memoryLimitBytes = $0 }
            try v.int("max_output_bytes", range: 1024...(1 << 34)) { configuration.voice.maxOutputBytes = $0 }
            try v.int("inline_content_max_bytes", range: 0...(64 << 20)) { configuration.voice.inlineContentMaxBytes = $0 }
            try v.int("default_bitrate", range: 6000...320_000) { configuration.voice.defaultBitrate = $0 }
        }
    }
}

extension ConfigurationTemplate {
    static func voice(_ d: Configuration) -> String {
        let v = d.voice
        return """

        # Voice messages (the seed's /_matrix/client/r0/voice/* and /_synapse/enhanced/voice/*),
        # stored as media; ffprobe and ffmpeg run as bounded child processes.
        voice:
          enabled: \(v.enabled)
          ffmpeg_path: \(v.ffmpegPath)
          ffprobe_path: \(v.ffprobePath)
          # util-linux prlimit applies the memory, file-size and CPU limits; "" runs without
          prlimit_path: \(v.prlimitPath)
          max_size_bytes: \(v.maxSizeBytes)
          max_duration_ms: \(v.maxDurationMs)
          # ffmpeg/ffprobe runs at once, and how many may wait (past that: 429)
          max_concurrent_conversions: \(v.maxConcurrentConversions)
          max_queued_conversions: \(v.maxQueuedConversions)
          # per run: wall clock (the process group is killed), address space, largest output file
          timeout_ms: \(v.timeoutMs)
          memory_limit_bytes: \(v.memoryLimitBytes)
          max_output_bytes: \(v.maxOutputBytes)
          # GET /voice/{message_id} inlines the audio as base64 up to this size
          inline_content_max_bytes: \(v.inlineContentMaxBytes)
          # Opus bitrate (bit/s) of convert and optimize when the request names none
          default_bitrate: \(v.defaultBitrate)

        """
    }
}
