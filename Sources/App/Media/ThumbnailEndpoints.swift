import Actors
import Matrix
import Persistence
import Transport

/// `GET .../thumbnail/{serverName}/{mediaId}` (spec: "Content repository", thumbnails):
/// authenticated under `/_matrix/client/v1/media`, legacy under `/_matrix/media/{v3,r0}` and
/// the seed's `/_matrix/media/v1` alias. The response is the thumbnail file, with the
/// headers of a download (`MediaRepository.downloadResponse`).
enum ThumbnailEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}") { try await thumbnail($0, authenticated: true) }
        for version in MediaEndpoints.legacyVersions {
            routes.get("/_matrix/media/\(version)/thumbnail/{serverName}/{mediaId}") {
                try await thumbnail($0, authenticated: false)
            }
        }
    }

    /// The validated query of a thumbnail request.
    struct Request: Equatable {
        var width: Int
        var height: Int
        var method: ThumbnailMethod
        var animated: Bool
    }

    static func thumbnail(_ context: RequestContext, authenticated: Bool) async throws -> HTTPResponse {
        if authenticated { _ = try await context.requireUser() }
        let query = context.query
        let request = try parse(query)
        let media = context.app.media
        let allowRemote = authenticated || query["allow_remote"] != "false"
        let timeout = try MediaEndpoints.timeoutMilliseconds(query["timeout_ms"])
        let (record, path) = try await media.resolveWaiting(origin: context.parameter("serverName"),
                                                            mediaID: context.parameter("mediaId"),
                                                            allowRemote: allowRemote, timeoutMs: timeout)
        if !authenticated && media.configuration.enableAuthenticatedMedia && record.authenticated {
            throw MatrixError(.notFound, "Not found: use the authenticated media endpoints")
        }
        guard let sha256 = record.sha256 else { throw MatrixError(.notFound, "Media not found") }
        let served = try await context.app.thumbnails.thumbnail(sha256: sha256, source: path, width: request.width,
                                                                height: request.height, method: request.method,
                                                                animated: request.animated)
        var shown = record
        shown.contentType = served.record.contentType
        shown.size = served.record.size
        shown.uploadName = nil
        return media.downloadResponse(record: shown, path: served.path, fileName: nil, request: context.request)
    }

    /// `width` and `height` (required, 1...8192), `method` (`scale` by default or `crop`),
    /// `animated` (`true`/`false`).
    static func parse(_ query: [String: String]) throws -> Request {
        func dimension(_ name: String) throws -> Int {
            guard let text = query[name] else { throw MatrixError(.missingParam, "Missing integer query parameter '\(name)'") }
            guard !text.isEmpty, text.utf8.count <= 9, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = Int(text), (1...Thumbnailer.maxDimension).contains(value) else {
                throw MatrixError(.invalidParam, "Query parameter '\(name)' must be an integer from 1 to \(Thumbnailer.maxDimension)")
            }
            return value
        }
        let width = try dimension("width")
        let height = try dimension("height")
        let method: ThumbnailMethod
        switch query["method"] {
        case nil, "scale": method = .scale
        case "crop": method = .crop
        default: throw MatrixError(.invalidParam, "Query parameter 'method' must be one of [scale, crop]")
        }
        let animated: Bool
        switch query["animated"] {
        case nil, "false": animated = false
        case "true": animated = true
        default: throw MatrixError(.invalidParam, "Query parameter 'animated' must be true or false")
        }
        return Request(width: width, height: height, method: method, animated: animated)
    }
}
