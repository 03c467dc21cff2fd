import Glibc
import Logging
import TestSupport
@testable import App

/// Starts a real Myelin server on an ephemeral 127.0.0.1 port over a fresh data directory.
func withMyelin(_ configure: (inout Configuration) -> Void = { _ in },
                _ body: (Int, Configuration) async throws -> Void) async throws {
    try await withMyelinServer(configure) { server, port in try await body(port, server.configuration) }
}

/// `withMyelin` for tests that also reach into the running server (`@testable`).
func withMyelinServer(_ configure: (inout Configuration) -> Void = { _ in },
                      _ body: (MyelinServer, Int) async throws -> Void) async throws {
    var configuration = Configuration()
    configuration.listeners = [.init(host: "127.0.0.1", port: 0)]
    configuration.dataDirectory = makeTemporaryDirectory()
    configuration.transport.loops = 2
    configuration.transport.workers = 2
    configuration.logging.accessLog = false
    configuration.rateLimits.enabled = false  // tests of the limits turn them back on
    configure(&configuration)
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    let server = try await MyelinServer(configuration: configuration, logger: logger, handlesSignals: false)
    let port = try await server.start()[0]
    do {
        try await body(server, port)
    } catch {
        server.stop()
        await server.waitUntilStopped()
        throw error
    }
    server.stop()
    await server.waitUntilStopped()
}

func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/myelin-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: path!)
}
