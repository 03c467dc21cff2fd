import Glibc
import TestSupport
import Testing
import Transport
@testable import App

/// `listeners[].tls`: the configuration, the whole API over HTTPS, and the certificate
/// reload of SIGHUP (`MyelinServer.reloadTLS`).
@Suite("TLS listeners of the daemon", .serialized)
struct TLSListenerAppTests {
    @Test func configurationIsReadAndChecked() throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let leaf = try ca.issue("server", ipAddresses: ["127.0.0.1"])
        let configuration = try ConfigurationLoader.load(yaml: """
            listeners:
              - host: 127.0.0.1
                port: 8008
              - host: 0.0.0.0
                port: 8448
                tls: {certificate: \(leaf.certificateFile), private_key: \(leaf.privateKeyFile)}
            """)
        #expect(configuration.listeners[0].tls == nil)
        #expect(configuration.listeners[1].tls == .init(certificate: leaf.certificateFile, privateKey: leaf.privateKeyFile))

        func error(_ tls: String) -> ConfigurationError? {
            do {
                _ = try ConfigurationLoader.load(yaml: "listeners:\n  - port: 8448\n    tls: \(tls)\n")
                return nil
            } catch {
                return error as? ConfigurationError
            }
        }
        #expect(error("{certificate: \(leaf.certificateFile)}")?.path == "listeners[0].tls.private_key")
        #expect(error("{private_key: \(leaf.privateKeyFile)}")?.path == "listeners[0].tls.certificate")
        let missing = error("{certificate: /nonexistent/cert.pem, private_key: \(leaf.privateKeyFile)}")
        #expect(missing?.path == "listeners[0].tls.certificate")
        #expect(missing?.message.contains("/nonexistent/cert.pem") == true)
        #expect(error("{certificate: a, private_key: b, ciphers: x}")?.path == "listeners[0].tls.ciphers")
        #expect(error("yes") != nil)
    }

    /// A key that does not match its certificate stops the start, naming the listener.
    @Test func mismatchedKeyStopsTheStart() async throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let a = try ca.issue("a", ipAddresses: ["127.0.0.1"])
        let b = try ca.issue("b", ipAddresses: ["127.0.0.1"])
        await #expect(throws: ConfigurationError.self) {
            try await withMyelinServer({
                $0.listeners = [.init(host: "127.0.0.1", port: 0, tls: .init(certificate: a.certificateFile, privateKey: b.privateKeyFile))]
            }) { _, _ in }
        }
    }

    @Test func apiOverHTTPSAndCertificateReload() async throws {
        let ca = try TestCertificates()
        let second = try TestCertificates(commonName: "Second CA")
        defer { ca.remove(); second.remove() }
        let leaf = try ca.issue("server", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let next = try second.issue("next", ipAddresses: ["127.0.0.1"])
        // The configured files are copies, replaced in place as a renewal would.
        let certificate = ca.directory + "/live.pem"
        let key = ca.directory + "/live.key"
        try copy(leaf.certificateFile, to: certificate)
        try copy(leaf.privateKeyFile, to: key)
        let trustsFirst = try TLSContext.client(verification: .verify(extraCAFiles: [ca.caCertificateFile]))
        let trustsSecond = try TLSContext.client(verification: .verify(extraCAFiles: [second.caCertificateFile]))
        try await withMyelinServer({
            $0.listeners = [.init(host: "127.0.0.1", port: 0, tls: .init(certificate: certificate, privateKey: key))]
        }) { server, port in
            let client = try tlsClient(port: port, context: trustsFirst)
            for _ in 0..<3 {
                client.send("GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
                let response = try await client.read()
                #expect(response.status == 200)
                #expect(response.text.contains("\"versions\""))
            }

            try copy(next.certificateFile, to: certificate)
            try copy(next.privateKeyFile, to: key)
            server.reloadTLS()
            #expect(try await versions(port, trustsSecond) == 200)
            // The connection opened before the reload keeps its certificate.
            client.send("GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(try await client.read().status == 200)

            // A broken file: the reload fails, and the current certificate stays.
            try copy(leaf.certificateFile, to: certificate)  // does not match the key now in place
            server.reloadTLS()
            #expect(try await versions(port, trustsSecond) == 200)
        }
    }

    private func versions(_ port: Int, _ context: TLSContext) async throws -> Int {
        let client = try tlsClient(port: port, context: context)
        client.send("GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return try await client.read().status
    }

    private func copy(_ from: String, to: String) throws {
        guard let input = fopen(from, "r") else { throw TestCertificates.Failure(description: "cannot read \(from)") }
        defer { fclose(input) }
        guard let output = fopen(to + ".tmp", "w") else { throw TestCertificates.Failure(description: "cannot write \(to)") }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, input)
            if n == 0 { break }
            fwrite(buffer, 1, n, output)
        }
        fclose(output)
        rename(to + ".tmp", to)
    }
}
