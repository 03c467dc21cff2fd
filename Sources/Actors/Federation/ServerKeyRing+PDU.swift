import Matrix

extension ServerKeyRing {
    /// Checks a PDU received over federation up to its hashes (server-server API "Checks
    /// performed on receipt of a PDU", steps 1–3): format and size for the room version,
    /// then a valid signature from each required server (`PDUVerification.requiredSigners`)
    /// by a key valid at `origin_server_ts` where the version enforces validity (keys that
    /// cannot be found are skipped, as the spec says, but at least one known key of each
    /// server must verify and none may fail), then the content hash (a mismatch gives the
    /// redacted event). Throws `M_BAD_JSON`/`M_TOO_LARGE` for the format, 401
    /// `M_UNAUTHORIZED` for signatures. The /send and join pipelines call it per PDU.
    public func verify(pdu json: JSON, roomVersion: RoomVersion) async throws(MatrixError) -> VerifiedPDU {
        let pdu = try PDUVerification.checkFormat(json, roomVersion: roomVersion)
        let validAt = PDUVerification.keyValidityTime(of: pdu)
        for server in PDUVerification.requiredSigners(of: pdu) {
            try await checkSignature(of: json, by: server, roomVersion: roomVersion, validAt: validAt)
        }
        return PDUVerification.checkContentHash(pdu)
    }

    /// At least one of `server`'s signatures on the event verifies with a key the ring knows
    /// valid at `validAt`; a known key whose signature fails refuses the event.
    func checkSignature(of json: JSON, by server: ServerName, roomVersion: RoomVersion, validAt: Int64?) async throws(MatrixError) {
        var verified = false
        for keyID in JSONSignatures.ed25519KeyIDs(of: json, entity: server.rawValue).prefix(PDUVerification.maxKeysPerSigner) {
            guard let key = try? await verifyKey(server: server, keyID: keyID, validAt: validAt) else { continue }
            try EventHashing.verifySignature(of: json, roomVersion: roomVersion, entity: server.rawValue, keyID: keyID, key: key)
            verified = true
        }
        guard verified else { throw MatrixError(.unauthorized, "PDU lacks a valid signature from \(server)") }
    }
}
