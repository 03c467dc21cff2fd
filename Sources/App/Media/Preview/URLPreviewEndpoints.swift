import Matrix
import Transport

/// `preview_url` (spec: "Content repository"): the authenticated
/// `GET /_matrix/client/v1/media/preview_url` and the legacy `/_matrix/media/{v3,r0,v1}`
/// paths, which Synapse serves whatever `enable_authenticated_media` says (that switch
/// freezes downloads, not previews), as does this server. Reached from `Endpoints.register`.
enum URLPreviewEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/client/v1/media/preview_url", preview)
        for version in ["v3", "r0", "v1"] {
            routes.get("/_matrix/media/\(version)/preview_url", preview)
        }
    }

    /// `GET .../preview_url?url=&ts=`: the Open Graph description of `url` (404
    /// `M_UNRECOGNIZED` when previews are off, as Synapse answers).
    static func preview(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let previews = context.app.urlPreviews
        guard previews.configuration.enabled else { throw MatrixError(.unrecognized, "Unrecognized request") }
        guard let url = context.query["url"] else { throw MatrixError(.missingParam, "Missing url parameter") }
        // The spec's int64; kept within JSON's exact integers.
        let ts = try context.integer("ts", in: 0...(1 << 53)) ?? Clock.nowMilliseconds()
        let og = try await previews.preview(url: url, ts: ts, user: requester.userID, images: previewImages(context))
        return HTTPResponse(contentType: "application/json", bytes: og)
    }
}
