import Foundation
import Matrix
import Testing
import TestSupport
@testable import App

/// The bounded subprocess runner and the audio analysis over real ffmpeg/ffprobe children and
/// a speech sample espeak-ng makes at test time.
@Suite("Voice subprocess and transcoder")
struct VoiceSubprocessTests {
    static let prlimit = "/usr/bin/prlimit"

    @Test func capturesOutputAndExitCode() async throws {
        let result = try await Subprocess.run("/bin/sh", ["-c", "printf hello; printf oops >&2; exit 3"],
                                              limits: SubprocessLimits(), prlimit: Self.prlimit)
        #expect(String(decoding: result.stdout, as: UTF8.self) == "hello")
        #expect(String(decoding: result.stderr, as: UTF8.self) == "oops")
        #expect(result.exitCode == 3)
        #expect(!result.timedOut && !result.succeeded)
    }

    /// A child past its wall clock is killed with its whole group: the grandchild `sleep`
    /// (which holds the pipe) goes too, and the call returns near the limit, not after the
    /// grandchild's 300 s (the bound is loose: a loaded machine took 15 s to return).
    @Test func wallClockKillsTheProcessGroup() async throws {
        var limits = SubprocessLimits()
        limits.wallClockMilliseconds = 300
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("voice-kill-\(UUID().uuidString)").path
        let start = Date()
        let result = try await Subprocess.run("/bin/sh", ["-c", "sleep 300 & echo $! > \(marker); wait"],
                                              limits: limits, prlimit: Self.prlimit)
        let elapsed = Date().timeIntervalSince(start)
        #expect(result.timedOut)
        #expect(result.signal == SIGKILL)
        #expect(elapsed < 120)
        let grandchild = try #require(Int32(String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        try? FileManager.default.removeItem(atPath: marker)
        // Reaped by init once killed: gone within a moment.
        var alive = true
        for _ in 0..<50 where alive {
            alive = kill(grandchild, 0) == 0 && !isZombie(grandchild)
            if alive { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(!alive)
    }

    @Test func standardOutputPastItsCapKillsTheChild() async throws {
        var limits = SubprocessLimits()
        limits.maxStdoutBytes = 1000
        let result = try await Subprocess.run("/bin/sh", ["-c", "yes"], limits: limits, prlimit: Self.prlimit)
        #expect(result.stdoutOverflow)
        #expect(result.stdout.count <= 1000)
        #expect(!result.succeeded)
    }

    /// `prlimit --fsize`: a child writing past the output limit is stopped by the kernel.
    @Test func fileSizeLimitStopsAWriter() async throws {
        var limits = SubprocessLimits()
        limits.fileSizeBytes = 64 << 10
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("voice-fsize-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try await Subprocess.run("/bin/dd", ["if=/dev/zero", "of=\(path)", "bs=1024", "count=1024"],
                                              limits: limits, prlimit: Self.prlimit)
        #expect(!result.succeeded)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? -1
        #expect(size <= 64 << 10)
    }

    /// `prlimit --as`: a child that asks for more memory than allowed fails.
    @Test func memoryLimitRefusesABigAllocation() async throws {
        var limits = SubprocessLimits()
        limits.memoryBytes = 64 << 20
        let result = try await Subprocess.run("/usr/bin/python3", ["-c", "b = bytearray(256 * 1024 * 1024)"],
                                              limits: limits, prlimit: Self.prlimit)
        #expect(!result.succeeded)
        let free = try await Subprocess.run("/usr/bin/python3", ["-c", "b = bytearray(1024)"],
                                            limits: SubprocessLimits(), prlimit: Self.prlimit)
        #expect(free.succeeded)
    }

    @Test func standardInputIsEmptyAndServerDescriptorsAreClosed() async throws {
        let fd = open("/dev/null", O_RDONLY)  // opened without close-on-exec
        defer { close(fd) }
        let result = try await Subprocess.run("/bin/sh", ["-c", "cat; ls /proc/self/fd"], limits: SubprocessLimits(), prlimit: nil)
        let listed = String(decoding: result.stdout, as: UTF8.self).split(whereSeparator: \.isNewline)
        #expect(result.succeeded)
        #expect(!listed.contains(Substring(String(fd))))
    }

    @Test func limiterQueuesThenRefuses() async throws {
        let limiter = ConversionLimiter(running: 1, queued: 1)
        try await limiter.acquire()
        let waiter = Task { try await limiter.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        await #expect(throws: MatrixError.self) { try await limiter.acquire() }
        limiter.release()
        try await waiter.value
        limiter.release()
        try await limiter.acquire()
        limiter.release()
    }

    @Test func speechIsAnalysed() async throws {
        let sample = try await VoiceSamples.speech(seconds: 10)
        defer { try? FileManager.default.removeItem(atPath: sample) }
        let transcoder = VoiceTranscoder(configuration: Configuration.Voice(), mediaRoot: VoiceSamples.directory)
        let analysis = try await transcoder.analyse(path: sample)
        #expect(abs(analysis.durationMs - 10_000) <= 100)
        #expect(analysis.format == "wav")
        #expect(analysis.channels == 1)
        #expect(analysis.waveform.count == 100)
        #expect(analysis.waveform.max() == 1024)
        // Speech then the padded silence: the tail is quiet.
        #expect(analysis.waveform.suffix(5).allSatisfy { $0 < 50 })
    }

    /// Longer than `max_duration_ms`: refused from the probe, before the decode.
    @Test func tooLongIsRefused() async throws {
        let sample = try await VoiceSamples.speech(seconds: 3)
        defer { try? FileManager.default.removeItem(atPath: sample) }
        var configuration = Configuration.Voice()
        configuration.maxDurationMs = 2000
        let transcoder = VoiceTranscoder(configuration: configuration, mediaRoot: VoiceSamples.directory)
        await #expect(throws: MatrixError.self) { try await transcoder.analyse(path: sample) }
        configuration.maxDurationMs = 4000
        let accepted = try await VoiceTranscoder(configuration: configuration, mediaRoot: VoiceSamples.directory).analyse(path: sample)
        #expect(abs(accepted.durationMs - 3000) <= 100)
    }

    @Test func nonAudioIsRefused() async throws {
        let path = VoiceSamples.directory + "/random-\(UUID().uuidString).bin"
        _ = FileManager.default.createFile(atPath: path, contents: Data((0..<4096).map { _ in UInt8.random(in: 0...255) }))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let transcoder = VoiceTranscoder(configuration: Configuration.Voice(), mediaRoot: VoiceSamples.directory)
        await #expect(throws: MatrixError.self) { try await transcoder.analyse(path: path) }
        // A playlist naming a local file is not followed (HLS is not an allowed demuxer).
        let playlist = VoiceSamples.directory + "/list-\(UUID().uuidString).m3u8"
        try "#EXTM3U\n#EXTINF:1,\nfile:/etc/passwd\n".write(toFile: playlist, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: playlist) }
        await #expect(throws: MatrixError.self) { try await transcoder.analyse(path: playlist) }
    }
}

func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    guard let close = stat.lastIndex(of: ")") else { return false }
    return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
}

/// Speech samples made by espeak-ng and padded/trimmed by sox at test time.
enum VoiceSamples {
    static let directory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myelin-voice-samples").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    /// A WAV of exactly `seconds` seconds: espeak-ng's speech, padded with silence. The tools
    /// run on a thread of their own (`blocking`), never on the cooperative pool, whose few
    /// threads every server of the suite needs: waiting there starved other tests' requests.
    static func speech(seconds: Int) async throws -> String {
        try await blocking { try speechBlocking(seconds: seconds) }
    }

    private static func speechBlocking(seconds: Int) throws -> String {
        let id = UUID().uuidString
        let raw = directory + "/speech-\(id).wav", padded = directory + "/speech-\(id)-\(seconds)s.wav"
        try runTool("/usr/bin/espeak-ng", ["-w", raw, "-s", "150", "Hello, this is a voice message from Myelin."])
        try runTool("/usr/bin/sox", [raw, padded, "pad", "0", String(seconds), "trim", "0", String(seconds)])
        try? FileManager.default.removeItem(atPath: raw)
        return padded
    }

    static func runTool(_ path: String, _ arguments: [String]) throws {
        // ChildProcess, not Foundation's Process (see ChildProcess).
        guard try ChildProcess.run(path, arguments).termination == .exited(0) else { throw VoiceSampleError(tool: path) }
    }

    struct VoiceSampleError: Error { var tool: String }

    /// `ffprobe`'s duration of a file in milliseconds.
    static func probedDurationMs(_ path: String) async throws -> Int64 {
        try await blocking { try probedDurationMsBlocking(path) }
    }

    private static func probedDurationMsBlocking(_ path: String) throws -> Int64 {
        let output = try ChildProcess.run("/usr/bin/ffprobe", ["-v", "error", "-show_entries", "format=duration",
                                                               "-of", "default=nw=1:nk=1", path]).output
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Int64(((Double(text) ?? -1) * 1000).rounded())
    }

    /// `ffprobe`'s channel count of the first audio stream.
    static func probedChannels(_ path: String) async throws -> Int {
        try await blocking { try probedChannelsBlocking(path) }
    }

    private static func probedChannelsBlocking(_ path: String) throws -> Int {
        let output = try ChildProcess.run("/usr/bin/ffprobe", ["-v", "error", "-select_streams", "a:0", "-show_entries",
                                                               "stream=channels,codec_name", "-of", "default=nw=1", path]).output
        let text = String(decoding: output, as: UTF8.self)
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("channels=") {
            return Int(line.dropFirst("channels=".count)) ?? -1
        }
        return -1
    }
}
