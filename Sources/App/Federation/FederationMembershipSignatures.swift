import Actors
import Matrix

extension FederationMembershipEndpoints {
    /// A membership event sent directly by a server (`send_join`, `send_leave`, `send_knock`,
    /// `invite`) verified: signatures, then content hash. One that is not validly signed —
    /// no valid signature, or no content hash, which any signing server adds — is refused
    /// with 403 `M_FORBIDDEN`, as Synapse does (its signature check runs before the hash
    /// check); other format errors stay 400.
    static func verifySigned(_ json: JSON, version: RoomVersion, app: MyelinApp) async throws -> PDU {
        do {
            return try await FederationPDUs.verifyPDUSignatures(json, version: version, keyRing: app.keyRing)
        } catch let error as MatrixError where error.code == .unauthorized || (error.code == .badJSON && json["hashes"] == nil) {
            throw MatrixError(.forbidden, "The event is not correctly signed: \(error.message)")
        }
    }
}
