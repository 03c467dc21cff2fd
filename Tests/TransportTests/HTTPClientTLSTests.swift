import Glibc
import TestSupport
import Testing
@testable import Transport

/// A free TCP port on 127.0.0.1 (bound, read, released).
func freeLoopbackPort() -> Int { freeTCPPort() }

/// HTTPS through the client's TLS engine against `openssl s_server -www` (an HTTP/1.0
/// answer whose body ends with the connection), with certificates from a throwaway CA.
@Suite(.serialized) struct HTTPClientTLSTests {
    static func withTLSServer(_ body: (TestCertificates, Int) async throws -> Void) async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let leaf = try certificates.issue("localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let port = freeLoopbackPort()
        let server = try ChildProcess(path: "/bin/sh", arguments: ["-c",
            "exec openssl s_server -accept 127.0.0.1:\(port) -cert \(leaf.certificateFile) -key \(leaf.privateKeyFile) -www -naccept 20 2>&1 </dev/null",
        ])
        // Ready when it accepts a connection.
        let probe = try loopbackClient { $0.tlsVerification = .none }
        defer { probe.shutdown() }
        for _ in 0..<100 {
            if (try? await probe.buffered(HTTPClientRequest(host: "127.0.0.1", port: port, target: "/"))) != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await body(certificates, port)
        // The child lives until here (its deinit kills it).
        withExtendedLifetime(server) {}
    }

    @Test func verifiedAgainstTheTestCA() async throws {
        try await Self.withTLSServer { certificates, port in
            let client = try loopbackClient { $0.tlsVerification = .verify(extraCAFiles: [certificates.caCertificateFile]) }
            defer { client.shutdown() }
            let byName = try await client.buffered(HTTPClientRequest(host: "127.0.0.1", port: port, target: "/", tlsServerName: "localhost"))
            #expect(byName.status == 200)
            #expect(String(decoding: byName.body, as: UTF8.self).contains("<HTML>") || !byName.body.isEmpty)
            // An IP literal is checked against the certificate's IP addresses.
            let byIP = try await client.buffered(HTTPClientRequest(host: "127.0.0.1", port: port, target: "/"))
            #expect(byIP.status == 200)
        }
    }

    @Test func wrongCAOrWrongNameFailsVerification() async throws {
        try await Self.withTLSServer { _, port in
            let other = try TestCertificates(commonName: "Another CA")
            defer { other.remove() }
            let client = try loopbackClient { $0.tlsVerification = .verify(extraCAFiles: [other.caCertificateFile]) }
            defer { client.shutdown() }
            try await expectClientError(.tls, "a certificate of an unknown CA was accepted") {
                _ = try await client.buffered(HTTPClientRequest(host: "127.0.0.1", port: port, target: "/", tlsServerName: "localhost"))
            }
        }
    }

    @Test func wrongNameFailsVerification() async throws {
        try await Self.withTLSServer { certificates, port in
            let client = try loopbackClient { $0.tlsVerification = .verify(extraCAFiles: [certificates.caCertificateFile]) }
            defer { client.shutdown() }
            try await expectClientError(.tls, "a certificate for another name was accepted") {
                _ = try await client.buffered(HTTPClientRequest(host: "127.0.0.1", port: port, target: "/", tlsServerName: "matrix.example.org"))
            }
        }
    }
}
