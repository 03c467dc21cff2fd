import CTestSupport
import Glibc

/// A child process for tests, started with `posix_spawn`: its standard output is a pipe the
/// test reads, standard error is inherited, and every other descriptor is closed in the child.
///
/// Foundation's `Process.run()` was not used: it lists /proc/self/fd to close descriptors in
/// the child, and it crashed (a buffer overrun in that copy) while tests running beside it
/// held a thousand sockets open.
public final class ChildProcess: @unchecked Sendable {  // pid and fd never change; read by one thread at a time
    public let pid: pid_t
    /// The read end of the child's standard output.
    public let outputFD: Int32
    private var reaped = false

    public enum SpawnError: Error { case pipe(Int32), spawn(Int32) }

    public init(path: String, arguments: [String]) throws {
        var fds: [Int32] = [0, 0]
        guard myelin_test_pipe_cloexec(&fds) == 0 else { throw SpawnError.pipe(errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        myelin_test_spawn_close_from(&actions, 3)
        let argv = ([path] + arguments).map { strdup($0) }
        defer { for p in argv { free(p) } }
        var cArgv = argv + [nil]
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, &cArgv, environ)
        Glibc.close(fds[1])
        guard rc == 0 else {
            Glibc.close(fds[0])
            throw SpawnError.spawn(rc)
        }
        pid = child
        outputFD = fds[0]
    }

    deinit {
        Glibc.close(outputFD)
        if !reaped {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    public func signal(_ number: Int32) { Glibc.kill(pid, number) }

    public enum Chunk: Sendable { case bytes([UInt8]), endOfFile, timedOut }

    /// The next bytes the child wrote, waiting at most `timeoutMs` (blocking: call it through
    /// `blocking`).
    public func read(timeoutMs: Int32) -> Chunk {
        var descriptor = pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&descriptor, 1, timeoutMs)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { return .timedOut }
            break
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .endOfFile }
            return .bytes(Array(buffer[0..<n]))
        }
    }

    /// How the child ended.
    public enum Termination: Equatable, Sendable { case exited(Int32), signalled(Int32) }

    /// Waits for the child to end (blocking: call it through `blocking`).
    public func wait() -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        // WIFEXITED / WTERMSIG are macros Swift does not import.
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signalled(status & 0x7f)
    }

    /// Runs `path` to its end: its exit and everything it wrote to standard output (blocking:
    /// call it through `blocking`).
    public static func run(_ path: String, _ arguments: [String]) throws -> (termination: Termination, output: [UInt8]) {
        let child = try ChildProcess(path: path, arguments: arguments)
        var output: [UInt8] = []
        while case .bytes(let chunk) = child.read(timeoutMs: 120_000) { output += chunk }
        return (child.wait(), output)
    }
}
