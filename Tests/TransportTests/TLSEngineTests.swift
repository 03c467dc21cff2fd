import TestSupport
import Testing
import Transport

/// The TLS engine on its own: a client engine and a server engine exchanging ciphertext in
/// memory, with certificates from a throwaway CA.
@Suite("TLS engine", .serialized)
struct TLSEngineTests {
    /// Moves ciphertext both ways and reads plaintext until neither side has anything more.
    /// Returns the plaintext each side received.
    static func pump(_ client: TLSEngine, _ server: TLSEngine) throws -> (client: [UInt8], server: [UInt8]) {
        var toClient: [UInt8] = []
        var toServer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        for _ in 0..<100 {
            let a = client.takeCiphertext()
            let b = server.takeCiphertext()
            if a.isEmpty && b.isEmpty && client.isHandshakeComplete && server.isHandshakeComplete { break }
            a.withUnsafeBytes { server.receive($0) }
            b.withUnsafeBytes { client.receive($0) }
            try drain(server, &buffer, into: &toServer)
            try drain(client, &buffer, into: &toClient)
        }
        return (toClient, toServer)
    }

    static func drain(_ engine: TLSEngine, _ buffer: inout [UInt8], into out: inout [UInt8]) throws {
        while true {
            let result = try buffer.withUnsafeMutableBytes { try engine.read(into: $0) }
            guard case .bytes(let n) = result else { return }
            out.append(contentsOf: buffer[0..<n])
        }
    }

    @Test func handshakeAndDataBothWays() throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let leaf = try ca.issue("server", dnsNames: ["matrix.example"], ipAddresses: ["127.0.0.1"])
        let serverContext = try TLSContext.server(certificateChainFile: leaf.certificateFile, privateKeyFile: leaf.privateKeyFile)
        let clientContext = try TLSContext.client(verification: .verify(extraCAFiles: [ca.caCertificateFile]))
        for host in ["matrix.example", "127.0.0.1"] {
            let client = try TLSEngine(context: clientContext, host: host)
            let server = try TLSEngine(context: serverContext)
            // Written before the handshake: it waits and leaves when the handshake is done.
            try Array("GET / HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { try client.write($0) }
            var (toClient, toServer) = try Self.pump(client, server)
            #expect(client.isHandshakeComplete && server.isHandshakeComplete)
            #expect(String(decoding: toServer, as: UTF8.self) == "GET / HTTP/1.1\r\n\r\n")
            #expect(client.negotiatedProtocol == "http/1.1")
            #expect(server.negotiatedProtocol == "http/1.1")
            #expect(server.requestedServerName == (host == "matrix.example" ? "matrix.example" : nil))
            #expect(client.protocolVersion == "TLSv1.3")
            // A large answer crosses several records.
            let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
            try big.withUnsafeBytes { try server.write($0) }
            (toClient, toServer) = try Self.pump(client, server)
            #expect(toClient == big)
        }
    }

    @Test func closeNotifyEndsTheStream() throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let leaf = try ca.issue("server", dnsNames: ["matrix.example"])
        let client = try TLSEngine(context: try TLSContext.client(verification: .verify(extraCAFiles: [ca.caCertificateFile])),
                                   host: "matrix.example")
        let server = try TLSEngine(context: try TLSContext.server(certificateChainFile: leaf.certificateFile,
                                                                  privateKeyFile: leaf.privateKeyFile))
        _ = try Self.pump(client, server)
        client.shutdown()
        let alert = client.takeCiphertext()
        #expect(!alert.isEmpty)
        alert.withUnsafeBytes { server.receive($0) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let result = try buffer.withUnsafeMutableBytes { try server.read(into: $0) }
        #expect(result == .closed)
        #expect(server.receivedCloseNotify)
    }

    @Test func wrongCAFailsVerification() throws {
        let ca = try TestCertificates()
        let other = try TestCertificates(commonName: "Another CA")
        defer { ca.remove(); other.remove() }
        let leaf = try ca.issue("server", dnsNames: ["matrix.example"])
        let serverContext = try TLSContext.server(certificateChainFile: leaf.certificateFile, privateKeyFile: leaf.privateKeyFile)
        let client = try TLSEngine(context: try TLSContext.client(verification: .verify(extraCAFiles: [other.caCertificateFile])),
                                   host: "matrix.example")
        let server = try TLSEngine(context: serverContext)
        #expect(throws: TLSError.self) { try Self.pump(client, server) }
        #expect(!client.isHandshakeComplete)
        // Without verification the same certificate is accepted.
        let lenient = try TLSEngine(context: try TLSContext.client(verification: .none), host: "matrix.example")
        _ = try Self.pump(lenient, try TLSEngine(context: serverContext))
        #expect(lenient.isHandshakeComplete)
    }

    @Test func wrongNameFailsVerification() throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let leaf = try ca.issue("server", dnsNames: ["matrix.example"], ipAddresses: ["127.0.0.1"])
        let serverContext = try TLSContext.server(certificateChainFile: leaf.certificateFile, privateKeyFile: leaf.privateKeyFile)
        let clientContext = try TLSContext.client(verification: .verify(extraCAFiles: [ca.caCertificateFile]))
        for host in ["other.example", "127.0.0.2"] {
            let client = try TLSEngine(context: clientContext, host: host)
            #expect(throws: TLSError.self) { try Self.pump(client, try TLSEngine(context: serverContext)) }
        }
    }

    @Test func serverRefusesTLS11() throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let leaf = try ca.issue("server", dnsNames: ["matrix.example"])
        let serverContext = try TLSContext.server(certificateChainFile: leaf.certificateFile, privateKeyFile: leaf.privateKeyFile)
        let old = try TLSContext.client(verification: .none, minimumVersion: .tls1_0, maximumVersion: .tls1_1)
        let client = try TLSEngine(context: old, host: "matrix.example")
        let server = try TLSEngine(context: serverContext)
        #expect(throws: TLSError.self) { try Self.pump(client, server) }
        #expect(!server.isHandshakeComplete)
        // Control: a server whose minimum is lowered accepts the same client at TLS 1.1, so
        // the refusal above is the server's minimum and not a client unable to offer 1.1.
        let lenient = try TLSContext.server(certificateChainFile: leaf.certificateFile, privateKeyFile: leaf.privateKeyFile,
                                            minimumVersion: .tls1_0)
        let again = try TLSEngine(context: old, host: "matrix.example")
        _ = try Self.pump(again, try TLSEngine(context: lenient))
        #expect(again.protocolVersion == "TLSv1.1")
    }

    @Test func mismatchedKeyIsRefused() throws {
        let ca = try TestCertificates()
        defer { ca.remove() }
        let a = try ca.issue("a", dnsNames: ["a.example"])
        let b = try ca.issue("b", dnsNames: ["b.example"])
        #expect(throws: TLSError.self) {
            try TLSContext.server(certificateChainFile: a.certificateFile, privateKeyFile: b.privateKeyFile)
        }
        #expect(throws: TLSError.self) {
            try TLSContext.server(certificateChainFile: ca.directory + "/missing.pem", privateKeyFile: a.privateKeyFile)
        }
    }
}
