import Foundation
import Glibc
import Testing
import TestSupport

/// The real `myelin` binary as a child process, for what only a process of its own shows (its
/// memory map, its libraries).
enum ServerProcess {
    /// Starts `myelin serve` with `configuration` as its YAML file on a free port, waits until
    /// it answers, hands its pid and port to `body`, then kills it.
    static func withServer(configuration: String, _ body: (_ pid: pid_t, _ port: Int) async throws -> Void) async throws {
        let directory = makeTemporaryDirectory()
        let port = freeTCPPort()
        let config = directory + "/myelin.yaml"
        try configuration.write(toFile: config, atomically: true, encoding: .utf8)
        let command = "exec '\(AdminRegisterUserCLITests.binaryPath)' serve --config '\(config)' --listen 127.0.0.1:\(port)"
            + " --data-dir '\(directory)/data' > '\(directory)/log' 2>&1"
        let server = try ChildProcess(path: "/bin/sh", arguments: ["-c", command])
        defer {
            server.signal(SIGKILL)
            _ = server.wait()
        }
        var listening = false
        for _ in 0..<600 where !listening {
            if let client = try? RawClient(port: port, timeoutSeconds: 5) {
                client.send("GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
                listening = (try? await client.read().status) == 200
            }
            if !listening { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(listening, "the server did not answer: \((try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? "")")
        try await body(server.pid, port)
    }
}
