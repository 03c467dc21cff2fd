import Matrix
import Transport

/// Third-party invites over federation (server-server API, "Third-party invites"):
/// `PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}` and
/// `PUT /_matrix/federation/v1/3pid/onbind`. This server creates no `m.room.third_party_invite`
/// and binds no identity server, so both are refused with a Matrix error (403
/// `M_FORBIDDEN`) rather than left to the router's 404, as the issue asks: a caller learns the
/// feature is absent, not that the endpoint is.
enum FederationThirdPartyInvites {
    static func register(_ routes: inout RouteBuilder) {
        routes.put("/_matrix/federation/v1/exchange_third_party_invite/{roomId}", exchange)
        routes.put("/_matrix/federation/v1/3pid/onbind", onBind)
    }

    /// `PUT exchange_third_party_invite/{roomId}`: authenticated, room ID checked, refused.
    static func exchange(_ context: RequestContext) async throws -> HTTPResponse {
        let origin = try await requireServer(context)
        let roomID = try RoomID(parsing: context.parameter("roomId"))
        try await context.requireServerAllowed(origin, in: roomID)
        throw MatrixError(.forbidden, "Third-party invites are not supported by this server")
    }

    /// `PUT 3pid/onbind` (called by identity servers, which do not sign requests): refused.
    static func onBind(_ context: RequestContext) async throws -> HTTPResponse {
        throw MatrixError(.forbidden, "Third-party invites are not supported by this server")
    }
}
