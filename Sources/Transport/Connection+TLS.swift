import CLibUV

/// The TLS layer of a connection on a TLS listener: ciphertext from the socket is decrypted
/// and parsed, plaintext output is encrypted on its way to the socket. Everything runs on the
/// loop thread on memory buffers (`TLSEngine`), so a handshake never blocks the loop; a peer
/// that never finishes it is closed by the deadline that runs from accept
/// (`headerReadTimeoutMs`, like a slow request head).
extension Connection {
    /// Ciphertext from the socket: the handshake advances, and the plaintext is parsed.
    func receivedCiphertext(_ bytes: UnsafeRawBufferPointer, _ tls: TLSEngine) {
        tls.receive(bytes)
        // The socket's bytes were copied into the engine: the loop's read buffer takes the
        // plaintext. All of it is decrypted now (kept as paused input if the parser pauses),
        // since no socket read would come to fetch what stayed in the engine.
        let buffer = UnsafeMutableRawBufferPointer(start: loop.readBuffer, count: loop.readBufferSize)
        while !state.isClosed {
            let result: TLSEngine.ReadResult
            do {
                result = try tls.read(into: buffer)
            } catch {
                handshakeOrRecordFailed(tls)
                return
            }
            switch result {
            case .bytes(let count):
                receivedPlaintext(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            case .wantsInput:
                if tls.pendingCiphertext > 0 { markDirty() }  // handshake messages
                return
            case .closed:
                // close_notify: the peer sends nothing more (RFC 8446, 6.1), as at EOF.
                peerClosed()
                return
            }
        }
    }

    /// Encrypts the plaintext in `output` and replaces it with the ciphertext for the socket
    /// (with any handshake messages waiting). False when the connection failed and closed.
    func encryptOutput(_ tls: TLSEngine) -> Bool {
        if !output.isEmpty {
            do {
                try tls.write(output)
            } catch {
                close()
                return false
            }
            output.removeAll(keepingCapacity: output.capacity <= 64 * 1024)
        }
        if tls.pendingCiphertext > 0 { tls.takeCiphertext(appendingTo: &output) }
        return true
    }

    /// The handshake failed (a version below the minimum, garbage) or a record did not
    /// decrypt: the alert goes out if the socket takes it at once, and the connection closes.
    private func handshakeOrRecordFailed(_ tls: TLSEngine) {
        perform(state.stopReading())
        tryWrite(tls.takeCiphertext())
        close()
    }

    /// Sends close_notify, best effort, as the connection closes.
    func sendCloseNotify(_ tls: TLSEngine) {
        guard tls.isHandshakeComplete, !tls.receivedCloseNotify else { return }
        tls.shutdown()
        tryWrite(tls.takeCiphertext())
    }

    private func tryWrite(_ bytes: [UInt8]) {
        guard !bytes.isEmpty, state.writesInFlight == 0 else { return }
        var copy = bytes
        copy.withUnsafeMutableBytes { raw in
            var buf = uv_buf_init(raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(raw.count))
            _ = uv_try_write(stream, &buf, 1)
        }
    }
}
