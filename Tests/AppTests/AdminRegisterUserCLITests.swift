import Foundation
import Matrix
import Testing
import TestSupport
@testable import App

/// `myelin register-user`, the real binary, against a running server: it reads the shared
/// secret and the listener from the configuration file, registers an admin (the admin API
/// then says so), refuses an existing user, and says so and exits non-zero when the file has
/// no secret or no server answers.
@Suite("myelin register-user")
struct AdminRegisterUserCLITests {
    /// The `myelin` executable built beside the test bundle.
    static var binaryPath: String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        while directory.pathComponents.count > 1,
              !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("myelin").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("myelin").path
    }

    /// Runs the binary with `arguments` (standard input empty, standard error joined to the
    /// output); its exit status and output.
    static func run(_ arguments: [String]) async throws -> (status: ChildProcess.Termination, output: String) {
        let quoted = ([binaryPath] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let command = quoted.joined(separator: " ") + " < /dev/null 2>&1"
        let (termination, output) = try await blocking { try ChildProcess.run("/bin/sh", ["-c", command]) }
        return (termination, String(decoding: output, as: UTF8.self))
    }

    static func writeConfig(port: Int, secret: String?) throws -> String {
        let path = makeTemporaryDirectory() + "/myelin.yaml"
        var text = "server_name: localhost\nlisteners:\n  - host: 127.0.0.1\n    port: \(port)\n"
        if let secret { text += "registration:\n  shared_secret: \(secret)\n" }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func registersAnAdminFromTheConfigurationFile() async throws {
        try await withMyelinServer({ $0.registration.sharedSecret = "s3cret" }) { server, port in
            let config = try Self.writeConfig(port: port, secret: "s3cret")
            let (status, output) = try await Self.run(["register-user", "-c", config, "-u", "alice", "-p", "pw-alice", "--admin"])
            #expect(status == .exited(0), "\(output)")
            #expect(output.contains("@alice:localhost"), "\(output)")

            // The admin API, with the new admin's own login, says so.
            let login = try await AdminUsersTests.login(port, "alice", "pw-alice")
            let alice = try MatrixTestClient(port: port, token: try #require(login.json["access_token"]?.stringValue))
            let flag = try await alice.call("GET", "/_synapse/admin/v1/users/@alice:localhost/admin")
            #expect(flag.status == 200)
            #expect(flag.json["admin"] == true)

            // A plain user with --no-admin, the password from a file.
            let passwordFile = makeTemporaryDirectory() + "/pw"
            try "pw-bob\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
            let bob = try await Self.run(["register-user", "-c", config, "-u", "bob", "--password-file", passwordFile, "--no-admin"])
            #expect(bob.status == .exited(0), "\(bob.output)")
            #expect(try await alice.call("GET", "/_synapse/admin/v1/users/@bob:localhost/admin").json["admin"] == false)
            #expect(try await AdminUsersTests.login(port, "bob", "pw-bob").status == 200)

            // The same user again: refused, non-zero.
            let again = try await Self.run(["register-user", "-c", config, "-u", "alice", "-p", "x", "--admin"])
            #expect(again.status == .exited(1))
            #expect(again.output.contains("already exists"), "\(again.output)")
            // A wrong secret: the MAC is refused.
            let wrong = try await Self.run(["register-user", "-c", config, "--shared-secret", "nope", "-u", "carol", "-p", "x", "--no-admin"])
            #expect(wrong.status == .exited(1))
            #expect(wrong.output.contains("shared secret"), "\(wrong.output)")
            _ = server
        }
    }

    @Test func saysSoWithoutASecretOrAServer() async throws {
        // No secret in the file: refused before any connection.
        let noSecret = try Self.writeConfig(port: 9, secret: nil)
        let missing = try await Self.run(["register-user", "-c", noSecret, "-u", "alice", "-p", "pw", "--admin"])
        #expect(missing.status == .exited(1))
        #expect(missing.output.contains("registration.shared_secret is not set"), "\(missing.output)")

        // A secret but nothing listening: connection refused, said plainly.
        let listener = freePort()
        let nobody = try Self.writeConfig(port: listener, secret: "s3cret")
        let refused = try await Self.run(["register-user", "-c", nobody, "-u", "alice", "-p", "pw", "--admin"])
        #expect(refused.status == .exited(1))
        #expect(refused.output.contains("Is the server running?"), "\(refused.output)")

        // A server whose configuration has no secret answers that the API is off.
        try await withMyelinServer { _, port in
            let config = try Self.writeConfig(port: port, secret: "s3cret")
            let off = try await Self.run(["register-user", "-c", config, "-u", "alice", "-p", "pw", "--no-admin"])
            #expect(off.status == .exited(1))
            #expect(off.output.contains("not enabled"), "\(off.output)")
        }
    }
}
