import Transport

/// A TLS client for the tests: a `RawClient` whose bytes pass through a client `TLSEngine`
/// for `host` (SNI and the certificate check); `send` and `read` speak plaintext. A failed
/// handshake shows as a closed connection (`read` throws).
public func tlsClient(port: Int, context: TLSContext, host: String = "127.0.0.1") throws -> RawClient {
    let client = try RawClient(port: port)
    let engine = try TLSEngine(context: context, host: host)
    client.sendFilter = { bytes in
        (try? engine.write(bytes)) == nil ? [] : engine.takeCiphertext()
    }
    client.receiveFilter = { [unowned client] bytes in
        bytes.withUnsafeBytes { engine.receive($0) }
        var plaintext: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        defer {
            // Handshake messages, and plaintext written before the handshake finished.
            let pending = engine.takeCiphertext()
            if !pending.isEmpty { client.sendRaw(pending) }
        }
        while true {
            guard let result = try? buffer.withUnsafeMutableBytes({ try engine.read(into: $0) }) else { return nil }
            switch result {
            case .bytes(let n): plaintext.append(contentsOf: buffer[0..<n])
            case .wantsInput: return plaintext
            case .closed: return plaintext.isEmpty ? nil : plaintext
            }
        }
    }
    return client
}
