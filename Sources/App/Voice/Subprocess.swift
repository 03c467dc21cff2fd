import Actors
import Matrix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The bounds of one run of an external program (ffmpeg, ffprobe). Every field comes from
/// configuration (`voice:`), never from a request.
struct SubprocessLimits: Sendable, Equatable {
    /// Wall-clock time from spawn; on expiry the whole process group is killed.
    var wallClockMilliseconds: Int = 30_000
    /// Address space of the child (`RLIMIT_AS`, set by `prlimit --as`); 0 means none.
    var memoryBytes: Int = 512 << 20
    /// Largest file the child may write (`RLIMIT_FSIZE`; the kernel stops it with SIGXFSZ).
    var fileSizeBytes: Int = 64 << 20
    /// CPU seconds (`RLIMIT_CPU`), a second line behind the wall clock.
    var cpuSeconds: Int = 60
    /// Captured standard output; a child that writes more is killed and the run fails.
    var maxStdoutBytes: Int = 1 << 20
    /// Captured standard error (kept for logs; the excess is dropped, the child goes on).
    var maxStderrBytes: Int = 64 << 10
}

/// How a run ended.
struct SubprocessResult: Sendable {
    /// The exit code, or nil when a signal ended the child.
    var exitCode: Int32?
    var signal: Int32?
    /// The wall clock ran out and the group was killed.
    var timedOut: Bool
    /// Standard output went past `maxStdoutBytes` and the group was killed.
    var stdoutOverflow: Bool
    var stdout: [UInt8]
    var stderr: [UInt8]

    var succeeded: Bool { exitCode == 0 && !timedOut && !stdoutOverflow }
    var stderrText: String { String(decoding: stderr.suffix(2048), as: UTF8.self) }
}

struct SubprocessError: Error, CustomStringConvertible {
    var description: String
}

/// Runs an external program as a bounded child: `posix_spawn` with an argument vector (never a
/// shell), standard input from `/dev/null`, inherited descriptors closed, its own process
/// group, rlimits applied by util-linux's `prlimit` before it executes the program, output
/// captured with byte caps, and a wall-clock limit that kills the group. Spawning, reading and
/// waiting happen on a dedicated thread per run, never on the cooperative pool; the caller
/// awaits a continuation. Used by `VoiceTranscoder` (ffprobe and ffmpeg).
enum Subprocess {
    /// Serialises pipe creation and spawning: descriptors are marked close-on-exec right after
    /// `pipe()`, and no other spawn of ours may run in between and inherit them.
    private static let spawnLock = Mutex<Void>(())

    /// Runs `executable` with `arguments` under `limits`. `stdoutSink`, when given, receives
    /// standard output chunk by chunk on the runner's thread instead of it being captured
    /// (the waveform reduces decoded PCM that way without holding it). Cancelling the calling
    /// task kills the group.
    static func run(_ executable: String, _ arguments: [String], limits: SubprocessLimits, prlimit: String?,
                    stdoutSink: (@Sendable ([UInt8]) -> Void)? = nil) async throws -> SubprocessResult {
        let run = Run(argv: commandLine(executable, arguments, limits: limits, prlimit: prlimit),
                      limits: limits, sink: stdoutSink)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SubprocessResult, any Error>) in
                run.continuation.withLock { $0 = continuation }
                let box = Unmanaged.passRetained(run).toOpaque()
                var thread = pthread_t()
                let rc = pthread_create(&thread, nil, { raw in
                    let run = Unmanaged<Run>.fromOpaque(raw!).takeRetainedValue()
                    run.execute()
                    return nil
                }, box)
                if rc == 0 {
                    pthread_detach(thread)
                } else {
                    Unmanaged<Run>.fromOpaque(box).release()
                    run.finish(.failure(SubprocessError(description: "cannot start a thread (\(rc))")))
                }
            }
        } onCancel: {
            run.cancel()
        }
    }

    /// The argument vector: `prlimit --as --fsize --cpu -- program args` when limits apply.
    static func commandLine(_ executable: String, _ arguments: [String], limits: SubprocessLimits, prlimit: String?) -> [String] {
        guard let prlimit, !prlimit.isEmpty else { return [executable] + arguments }
        var argv = [prlimit]
        if limits.memoryBytes > 0 { argv.append("--as=\(limits.memoryBytes)") }
        if limits.fileSizeBytes > 0 { argv.append("--fsize=\(limits.fileSizeBytes)") }
        if limits.cpuSeconds > 0 { argv.append("--cpu=\(limits.cpuSeconds)") }
        argv.append("--nofile=64")
        return argv + ["--", executable] + arguments
    }

    /// One run; owned by its thread once started (the fields under `state` are shared with
    /// the cancelling task).
    final class Run: Sendable {
        let argv: [String]
        let limits: SubprocessLimits
        let sink: (@Sendable ([UInt8]) -> Void)?
        let continuation = Mutex<CheckedContinuation<SubprocessResult, any Error>?>(nil)
        /// The child's pid while it has not been reaped (0 before spawn and after), and
        /// whether the caller cancelled.
        let state = Mutex<(pid: pid_t, cancelled: Bool)>((0, false))

        init(argv: [String], limits: SubprocessLimits, sink: (@Sendable ([UInt8]) -> Void)?) {
            self.argv = argv
            self.limits = limits
            self.sink = sink
        }

        func finish(_ result: Result<SubprocessResult, any Error>) {
            continuation.withLock { c in
                c?.resume(with: result)
                c = nil
            }
        }

        /// Kills the group if the child runs (the leader is unreaped, so its pid is not reused).
        func cancel() {
            state.withLock { s in
                s.cancelled = true
                if s.pid > 0 { kill(-s.pid, SIGKILL) }
            }
        }

        func execute() {
            var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
            let spawned: Result<pid_t, SubprocessError> = spawnLock.withLock { _ in
                guard pipe(&out) == 0 else { return .failure(SubprocessError(description: "pipe failed")) }
                guard pipe(&err) == 0 else {
                    close(out[0]); close(out[1])
                    return .failure(SubprocessError(description: "pipe failed"))
                }
                for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                return spawn(stdout: out[1], stderr: err[1])
            }
            guard case .success(let pid) = spawned else {
                if case .failure(let error) = spawned { finish(.failure(error)) }
                return
            }
            close(out[1]); close(err[1])
            let cancelledEarly = state.withLock { s -> Bool in
                s.pid = pid
                return s.cancelled
            }
            if cancelledEarly { kill(-pid, SIGKILL) }
            let result = supervise(pid: pid, stdout: out[0], stderr: err[0])
            close(out[0]); close(err[0])
            finish(.success(result))
        }

        private func spawn(stdout: Int32, stderr: Int32) -> Result<pid_t, SubprocessError> {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, stdout, 1)
            posix_spawn_file_actions_adddup2(&actions, stderr, 2)
            // Descriptors of the server (sockets, database files) never reach the child, even
            // one opened without close-on-exec.
            for fd in Self.openDescriptors() where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
            posix_spawnattr_setpgroup(&attributes, 0)
            var empty = sigset_t()
            sigemptyset(&empty)
            posix_spawnattr_setsigmask(&attributes, &empty)
            // Signals the server ignores (SIGPIPE) would stay ignored across exec.
            var defaults = sigset_t()
            sigemptyset(&defaults)
            for signal in [SIGPIPE, SIGXFSZ, SIGXCPU, SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, signal) }
            posix_spawnattr_setsigdefault(&attributes, &defaults)
            let environment = ["PATH=/usr/bin:/bin", "LC_ALL=C"]
            var pid: pid_t = 0
            let rc = withCStrings(argv) { argvPointers in
                withCStrings(environment) { envPointers in
                    posix_spawn(&pid, argv[0], &actions, &attributes, argvPointers, envPointers)
                }
            }
            guard rc == 0 else { return .failure(SubprocessError(description: "cannot run \(argv[0]) (errno \(rc))")) }
            return .success(pid)
        }

        /// Reads both pipes until they close or the deadline passes, then reaps the child.
        private func supervise(pid: pid_t, stdout: Int32, stderr: Int32) -> SubprocessResult {
            let deadline = Clock.monotonicNanoseconds() + Int64(limits.wallClockMilliseconds) * 1_000_000
            var result = SubprocessResult(exitCode: nil, signal: nil, timedOut: false, stdoutOverflow: false, stdout: [], stderr: [])
            var open = [stdout, stderr]
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            var killed = false
            func killGroup() {
                if !killed { kill(-pid, SIGKILL); killed = true }
            }
            while !open.isEmpty {
                let remaining = (deadline - Clock.monotonicNanoseconds()) / 1_000_000
                if remaining <= 0 {
                    if !killed { result.timedOut = true }
                    killGroup()
                }
                var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                // After the kill the pipes close at once; a short wait bounds the tail.
                let timeout = killed ? 1000 : Int32(clamping: max(1, remaining))
                let ready = poll(&fds, nfds_t(fds.count), timeout)
                if ready < 0 && errno == EINTR { continue }
                if ready <= 0 { if killed { break } else { continue } }
                for entry in fds where entry.revents != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                    if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                    if n <= 0 { open.removeAll { $0 == entry.fd }; continue }
                    let chunk = Array(buffer[0..<n])
                    if entry.fd == stdout {
                        if let sink {
                            sink(chunk)
                        } else if result.stdout.count + n > limits.maxStdoutBytes {
                            result.stdoutOverflow = true
                            killGroup()
                        } else {
                            result.stdout.append(contentsOf: chunk)
                        }
                    } else if result.stderr.count < limits.maxStderrBytes {
                        result.stderr.append(contentsOf: chunk.prefix(limits.maxStderrBytes - result.stderr.count))
                    }
                }
            }
            reap(pid: pid, deadline: deadline, killed: &killed, into: &result)
            return result
        }

        /// Waits for the leader to exit (bounded by the deadline), kills what is left of its
        /// group while the leader's pid is still reserved, then reaps it.
        private func reap(pid: pid_t, deadline: Int64, killed: inout Bool, into result: inout SubprocessResult) {
            var info = siginfo_t()
            while true {
                info = siginfo_t()  // WNOHANG with nothing to report leaves it as it was on some systems
                // WNOWAIT: the leader stays a zombie, so `-pid` still names its group below.
                let rc = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT | WNOHANG)
                if rc == 0 && info.si_signo == SIGCHLD { break }
                if rc < 0 && errno != EINTR { break }
                if Clock.monotonicNanoseconds() >= deadline && !killed {
                    result.timedOut = true
                    kill(-pid, SIGKILL)
                    killed = true
                }
                // The pipes closed: the child is exiting; this waits milliseconds, not spins.
                var none = pollfd()
                _ = poll(&none, 0, 5)
            }
            kill(-pid, SIGKILL)  // grandchildren, if any
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            state.withLock { $0.pid = 0 }
            if status & 0x7f == 0 {
                result.exitCode = (status >> 8) & 0xff
            } else {
                result.signal = status & 0x7f
            }
        }

        /// The descriptors open in this process (`/proc/self/fd`).
        static func openDescriptors() -> [Int32] {
            guard let directory = opendir("/proc/self/fd") else { return [] }
            defer { closedir(directory) }
            let own = dirfd(directory)
            var fds: [Int32] = []
            while let entry = readdir(directory) {
                if let fd = Int32(MediaFileStore.entryName(entry)), fd != own { fds.append(fd) }
            }
            return fds
        }
    }
}

/// A NULL-terminated array of C strings alive for the duration of `body`.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    return body(pointers + [nil])
}
