import Actors
import Matrix
import Transport

/// Two endpoints of the seed's API outside the specification (shared/spec/seed_endpoints.json,
/// section 5): `GET /_matrix/federation/v1/members/{roomId}`, the joined members of a room for
/// a server in it (X-Matrix authenticated, the room's ACL applied), and
/// `GET /_matrix/federation/v2/server`, this server's signed keys under another path (the
/// answer of `GET /_matrix/key/v2/server`; unauthenticated like it, since a server fetches
/// keys before it can check any signature). Registered with the room endpoints.
enum FederationSeedEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        routes.get(FederationRoomEndpoints.prefix + "/v1/members/{roomId}", members)
        routes.get(FederationRoomEndpoints.prefix + "/v2/server", KeyServer.serverKeys)
    }

    /// `GET /_matrix/federation/v1/members/{roomId}`: `{"joined": [user ids]}`, sorted.
    static func members(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let (_, actor, _) = try await FederationRoomEndpoints.roomOfHost(context, origin)
        let state = await actor.currentState ?? [:]
        let joined = state.compactMap { key, pdu in
            key.type == EventType.roomMember && pdu.membership == MembershipState.join.rawValue ? key.stateKey : nil
        }.sorted()
        return .json(["joined": .array(joined.map { .string($0) })])
    }
}
