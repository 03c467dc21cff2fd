import Matrix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What ffprobe (and the decoding pass) learnt of an audio file.
struct AudioAnalysis: Sendable, Equatable {
    var durationMs: Int64
    /// ffprobe's demuxer name (`ogg`, `wav`, `mov,mp4,m4a,3gp,3g2,mj2`...).
    var format: String
    var codec: String
    var sampleRate: Int64
    var channels: Int64
    /// About 100 amplitudes in 0...1024 (MSC3246).
    var waveform: [Int]
}

/// An output format of `convert`: the MIME type a client names, and how ffmpeg writes it.
struct VoiceFormat: Sendable, Equatable {
    var mimeType: String
    var encoder: String
    var muxer: String
    var fileExtension: String

    /// The fixed allow-list of target formats (`voice/config` lists it).
    static let all: [VoiceFormat] = [
        VoiceFormat(mimeType: "audio/ogg", encoder: "libopus", muxer: "ogg", fileExtension: "ogg"),
        VoiceFormat(mimeType: "audio/webm", encoder: "libopus", muxer: "webm", fileExtension: "webm"),
        VoiceFormat(mimeType: "audio/mpeg", encoder: "libmp3lame", muxer: "mp3", fileExtension: "mp3"),
        VoiceFormat(mimeType: "audio/mp4", encoder: "aac", muxer: "mp4", fileExtension: "m4a"),
        VoiceFormat(mimeType: "audio/wav", encoder: "pcm_s16le", muxer: "wav", fileExtension: "wav"),
        VoiceFormat(mimeType: "audio/flac", encoder: "flac", muxer: "flac", fileExtension: "flac"),
    ]

    static let aliases: [String: String] = [
        "audio/opus": "audio/ogg", "audio/ogg; codecs=opus": "audio/ogg", "audio/mp3": "audio/mpeg",
        "audio/aac": "audio/mp4", "audio/m4a": "audio/mp4", "audio/x-m4a": "audio/mp4", "audio/x-wav": "audio/wav",
        "audio/wave": "audio/wav", "audio/x-flac": "audio/flac",
    ]

    static func named(_ mime: String) -> VoiceFormat? {
        let key = mime.lowercased()
        let canonical = aliases[key] ?? key
        return all.first { $0.mimeType == canonical }
    }

    /// Encoders with a bitrate (PCM and FLAC are lossless and ignore one).
    var takesBitrate: Bool { encoder != "pcm_s16le" && encoder != "flac" }
}

/// How `optimize` shapes a message: always mono Ogg/Opus at `bitrate`, optionally with leading,
/// trailing and inner silences removed (`silenceremove`) and loudness evened (`dynaudnorm`).
struct VoiceOptimization: Sendable, Equatable {
    var bitrate: Int
    var removeSilence: Bool
    var normalizeVolume: Bool
}

/// Runs ffprobe and ffmpeg over stored audio for the voice API, bounded: at most
/// `voice.max_concurrent_conversions` children at once (others queue, past the queue 429), each
/// under `Subprocess`'s limits, inputs restricted to local files and audio demuxers (no
/// playlists or network protocols reachable from an uploaded file). Owned by `VoiceMessages`.
final class VoiceTranscoder: Sendable {
    let configuration: Configuration.Voice
    let limiter: ConversionLimiter
    /// Where outputs are written before they are stored as media (`<media root>/voice/tmp`).
    let scratchDirectory: String

    /// Demuxers an input may be read with: audio containers only.
    static let inputFormats = "ogg,matroska,webm,mov,mp4,m4a,3gp,mp3,wav,flac,aac,aiff,caf,amr,au,w64"

    init(configuration: Configuration.Voice, mediaRoot: String) {
        self.configuration = configuration
        limiter = ConversionLimiter(running: configuration.maxConcurrentConversions, queued: configuration.maxQueuedConversions)
        scratchDirectory = mediaRoot + "/voice/tmp"
    }

    private var inputOptions: [String] {
        ["-v", "error", "-protocol_whitelist", "file", "-format_whitelist", Self.inputFormats]
    }

    private func run(_ executable: String, _ arguments: [String], sink: (@Sendable ([UInt8]) -> Void)? = nil) async throws -> SubprocessResult {
        try await limiter.acquire()
        defer { limiter.release() }
        return try await Subprocess.run(executable, arguments, limits: configuration.subprocessLimits,
                                        prlimit: configuration.prlimitPath.isEmpty ? nil : configuration.prlimitPath,
                                        stdoutSink: sink)
    }

    /// Probes and decodes `path`: its duration, format, codec and waveform. Not audio (no
    /// audio stream, or nothing ffprobe can parse) → 400 `M_INVALID_PARAM`.
    func analyse(path: String) async throws -> AudioAnalysis {
        let probe = try await run(configuration.ffprobePath, inputOptions
            + ["-print_format", "json", "-show_format", "-show_streams", "file:" + path])
        if probe.timedOut { throw MatrixError(.unknown, "Probing the audio took too long", status: 503) }
        guard probe.succeeded, var analysis = Self.parseProbe(probe.stdout) else {
            throw MatrixError(.invalidParam, "The file is not audio that this server can read")
        }
        // Refused before decoding when the container says so; the decode stops just past the
        // limit whatever the container claims.
        try checkDuration(analysis.durationMs)
        let reducer = WaveformReducer()
        let decode = try await run(configuration.ffmpegPath, ["-nostdin"] + inputOptions
            + ["-i", "file:" + path, "-t", String(configuration.maxDurationMs / 1000 + 1),
               "-vn", "-map", "0:a:0", "-ac", "1", "-ar", String(WaveformReducer.sampleRate),
               "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"], sink: { reducer.consume($0) })
        if decode.timedOut { throw MatrixError(.unknown, "Decoding the audio took too long", status: 503) }
        guard decode.succeeded else { throw MatrixError(.invalidParam, "The audio could not be decoded") }
        let decodedMs = reducer.decodedMilliseconds
        if analysis.durationMs <= 0 { analysis.durationMs = decodedMs }
        try checkDuration(decodedMs)
        analysis.waveform = reducer.waveform(buckets: 100)
        return analysis
    }

    private func checkDuration(_ milliseconds: Int64) throws {
        guard milliseconds <= Int64(configuration.maxDurationMs) else {
            throw MatrixError(.invalidParam, "Voice messages may last at most \(configuration.maxDurationMs) ms")
        }
    }

    /// ffprobe's JSON: the first audio stream, the container's duration (or the stream's).
    static func parseProbe(_ bytes: [UInt8]) -> AudioAnalysis? {
        guard case .object(let root)? = try? JSON.parse(bytes),
              case .array(let streams)? = root["streams"] else { return nil }
        let audio = streams.compactMap { stream -> [String: JSON]? in
            guard case .object(let s) = stream, s["codec_type"]?.stringValue == "audio" else { return nil }
            return s
        }.first
        guard let audio else { return nil }
        let format: [String: JSON]
        if case .object(let f)? = root["format"] { format = f } else { format = [:] }
        let seconds = Double(format["duration"]?.stringValue ?? "") ?? Double(audio["duration"]?.stringValue ?? "") ?? 0
        // Bounded before converting: a hostile container may claim any duration.
        let durationMs = seconds.isFinite && seconds > 0 ? Int64(min(seconds, 1e9) * 1000 + 0.5) : 0
        return AudioAnalysis(durationMs: durationMs, format: String((format["format_name"]?.stringValue ?? "unknown").prefix(64)),
                             codec: String((audio["codec_name"]?.stringValue ?? "unknown").prefix(64)),
                             sampleRate: min(max(Int64(audio["sample_rate"]?.stringValue ?? "") ?? 0, 0), 10_000_000),
                             channels: min(max(audio["channels"]?.intValue ?? 0, 0), 1024), waveform: [])
    }

    /// Converts `path` to `format` (Opus, MP3, AAC at `bitrate`); the output file's path, to be
    /// stored and removed by the caller.
    func convert(path: String, to format: VoiceFormat, bitrate: Int) async throws -> String {
        var codec = ["-c:a", format.encoder]
        if format.takesBitrate { codec += ["-b:a", String(bitrate)] }
        return try await transcode(path: path, extension: format.fileExtension, filters: nil,
                                   codec: codec + ["-f", format.muxer])
    }

    /// Mono Ogg/Opus at the optimization's bitrate, optionally trimmed and normalised.
    func optimize(path: String, _ o: VoiceOptimization) async throws -> String {
        var filters: [String] = []
        if o.removeSilence {
            filters.append("silenceremove=start_periods=1:start_threshold=-50dB:stop_periods=-1:stop_duration=0.6:stop_threshold=-50dB")
        }
        if o.normalizeVolume { filters.append("dynaudnorm") }
        return try await transcode(path: path, extension: "ogg", filters: filters.isEmpty ? nil : filters.joined(separator: ","),
                                   codec: ["-ac", "1", "-c:a", "libopus", "-b:a", String(o.bitrate), "-application", "voip", "-f", "ogg"])
    }

    private func transcode(path: String, extension ext: String, filters: String?, codec: [String]) async throws -> String {
        let output = scratchDirectory + "/" + Self.randomName() + "." + ext
        let directory = scratchDirectory
        try await OffPool.run { try OffPool.makeDirectories(directory) }
        var arguments = ["-nostdin", "-y"] + inputOptions + ["-i", "file:" + path, "-vn", "-map", "0:a:0", "-map_metadata", "-1"]
        if let filters { arguments += ["-af", filters] }
        arguments += codec + ["-fs", String(configuration.maxOutputBytes), "file:" + output]
        let result = try await run(configuration.ffmpegPath, arguments)
        guard result.succeeded else {
            try? await OffPool.run { _ = unlink(output) }
            if result.timedOut { throw MatrixError(.unknown, "The conversion took too long", status: 503) }
            throw MatrixError(.invalidParam, "The audio could not be converted")
        }
        return output
    }

    static func randomName() -> String {
        (0..<16).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
    }
}

/// Reduces decoded mono 16-bit PCM, as it streams from ffmpeg, to the RMS of 10 ms blocks;
/// `waveform` then groups the blocks into buckets. Holds 4 bytes per 10 ms of audio (240 KB
/// for ten minutes), never the PCM. Fed on the subprocess thread, read after it finished.
final class WaveformReducer: Sendable {
    static let sampleRate = 8000
    static let blockSamples = 80
    private struct State {
        var blocks: [Float] = []
        var sumSquares: Double = 0
        var inBlock = 0
        var samples = 0
        var leftover: UInt8?
    }
    private let state = Mutex(State())
    /// About 12 hours of blocks: past this the stream is not a voice message.
    private static let maxBlocks = 4_320_000

    func consume(_ chunk: [UInt8]) {
        state.withLock { s in
            var index = 0
            var bytes = chunk
            if let low = s.leftover { bytes.insert(low, at: 0); s.leftover = nil }
            while index + 1 < bytes.count {
                let sample = Int16(bitPattern: UInt16(bytes[index]) | UInt16(bytes[index + 1]) << 8)
                index += 2
                let value = Double(sample) / 32768
                s.sumSquares += value * value
                s.inBlock += 1
                s.samples += 1
                if s.inBlock == Self.blockSamples {
                    if s.blocks.count < Self.maxBlocks { s.blocks.append(Float((s.sumSquares / Double(s.inBlock)).squareRoot())) }
                    s.sumSquares = 0
                    s.inBlock = 0
                }
            }
            if index < bytes.count { s.leftover = bytes[index] }
        }
    }

    var decodedMilliseconds: Int64 {
        state.withLock { Int64($0.samples) * 1000 / Int64(Self.sampleRate) }
    }

    /// `count` amplitudes in 0...1024, the loudest bucket at 1024 (as Element draws them).
    func waveform(buckets count: Int) -> [Int] {
        let blocks = state.withLock { s -> [Float] in
            var blocks = s.blocks
            if s.inBlock > 0 { blocks.append(Float((s.sumSquares / Double(s.inBlock)).squareRoot())) }
            return blocks
        }
        guard !blocks.isEmpty else { return [] }
        let n = min(count, blocks.count)
        var values = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let start = i * blocks.count / n, end = max(start + 1, (i + 1) * blocks.count / n)
            values[i] = blocks[start..<end].max() ?? 0
        }
        let peak = values.max() ?? 0
        guard peak > 0 else { return values.map { _ in 0 } }
        return values.map { Int(min(1024, max(0, ($0 / peak * 1024).rounded()))) }
    }
}

/// At most `running` holders at once; up to `queued` more wait in order, others are refused
/// with 429 at once. Guards the ffmpeg/ffprobe children (each takes a core and memory).
final class ConversionLimiter: Sendable {
    private let state = Mutex<(running: Int, waiters: [CheckedContinuation<Void, any Error>])>((0, []))
    let maxRunning: Int
    let maxQueued: Int

    init(running: Int, queued: Int) {
        maxRunning = max(1, running)
        maxQueued = max(0, queued)
    }

    func acquire() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let admitted: Bool? = state.withLock { s in
                if s.running < maxRunning { s.running += 1; return true }
                if s.waiters.count < maxQueued { s.waiters.append(continuation); return nil }
                return false
            }
            switch admitted {
            case true?: continuation.resume()
            case false?: continuation.resume(throwing: MatrixError(.limitExceeded, "Too many audio conversions in progress; try again shortly",
                                                                   extra: ["retry_after_ms": .int(2000)]))
            case nil: break
            }
        }
    }

    /// Hands the place to the first waiter, or frees it.
    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            if s.waiters.isEmpty { s.running -= 1; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// Blocking file work (reading a converted file, creating directories, removing scratch
/// files) on a thread of its own, never on the cooperative pool.
enum OffPool {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job { continuation.resume(with: Result { try body() }) }
            let box = Unmanaged.passRetained(job).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            }, box)
            if rc == 0 {
                pthread_detach(thread)
            } else {
                Unmanaged<Job>.fromOpaque(box).release()
                continuation.resume(throwing: SubprocessError(description: "cannot start a thread (\(rc))"))
            }
        }
    }

    private final class Job: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws {
        var current = ""
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + part
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw SubprocessError(description: "cannot create \(current) (errno \(errno))")
            }
        }
    }

    /// A whole file of at most `limit` bytes.
    static func readFile(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SubprocessError(description: "cannot open \(path) (errno \(errno))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw SubprocessError(description: "cannot read \(path) (errno \(errno))") }
            if n == 0 { break }
            guard bytes.count + n <= limit else { throw MatrixError(.tooLarge, "The audio is too large", status: 413) }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return bytes
    }
}
