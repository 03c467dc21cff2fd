import Matrix
import Transport

/// The v1 forms of `send_join` and `send_leave` (server-server API, deprecated but still
/// spoken by older servers and by SyTest's mock servers): the same handling as v2, the
/// answer wrapped as `[200, body]`.
enum FederationV1Membership {
    static func register(_ routes: inout RouteBuilder) {
        let prefix = FederationMembershipEndpoints.prefix
        routes.put(prefix + "/v1/send_join/{roomId}/{eventId}", sendJoin)
        routes.put(prefix + "/v1/send_leave/{roomId}/{eventId}", sendLeave)
        FederationV1Invite.register(&routes)
    }

    static func sendJoin(_ context: RequestContext) async throws -> HTTPResponse {
        wrapped(try await FederationMembershipEndpoints.sendJoin(context))
    }

    static func sendLeave(_ context: RequestContext) async throws -> HTTPResponse {
        wrapped(try await FederationMembershipEndpoints.sendLeave(context))
    }

    /// `[200, body]` around a successful JSON answer.
    static func wrapped(_ response: HTTPResponse) -> HTTPResponse {
        guard response.status == 200, case .bytes(let bytes) = response.body else { return response }
        var out: [UInt8] = Array("[200,".utf8)
        out.reserveCapacity(bytes.count + 6)
        out += bytes
        out.append(UInt8(ascii: "]"))
        return HTTPResponse(status: 200, contentType: "application/json", bytes: out)
    }
}
