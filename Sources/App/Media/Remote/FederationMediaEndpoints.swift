import Actors
import Matrix
import Persistence
import Transport

/// The federation content repository (server-server API "Content Repository", Matrix 1.11):
/// other servers download this server's media over X-Matrix-authenticated requests, as a
/// `multipart/mixed` answer (`MultipartMediaBody`: `{}` metadata, then the file streamed from
/// the content store). Local media only: a server asks the origin itself. Registered by
/// `Endpoints.register`; the client side is `FederationMediaSource`.
enum FederationMediaEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        routes.get("/_matrix/federation/v1/media/download/{mediaId}", download)
        routes.get("/_matrix/federation/v1/media/thumbnail/{mediaId}", thumbnail)
    }

    /// `GET /_matrix/federation/v1/media/download/{mediaId}`.
    static func download(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireServer()
        let (record, path) = try await localMedia(context)
        return try multipart(context, record: record, path: path, length: record.size)
    }

    /// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width=&height=&method=&animated=`:
    /// the thumbnail a local client would get (`MediaThumbnails`: the nearest configured size),
    /// as the multipart answer.
    static func thumbnail(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireServer()
        let query = context.query
        guard let width = query["width"].flatMap({ Int($0) }), let height = query["height"].flatMap({ Int($0) }),
              (1...10_000).contains(width), (1...10_000).contains(height) else {
            throw MatrixError(.invalidParam, "width and height must be integers between 1 and 10000")
        }
        guard let method = ThumbnailMethod(rawValue: query["method"] ?? "scale") else {
            throw MatrixError(.invalidParam, "method must be scale or crop")
        }
        let (record, path) = try await localMedia(context)
        guard let sha256 = record.sha256 else { throw MatrixError(.notFound, "Media not found") }
        let served = try await context.app.thumbnails.thumbnail(sha256: sha256, source: path, width: width, height: height,
                                                                method: method, animated: query["animated"] == "true")
        var shown = record
        shown.contentType = served.record.contentType
        shown.size = served.record.size
        shown.uploadName = nil
        return try multipart(context, record: shown, path: served.path, length: served.record.size)
    }

    /// The local media of the path's `mediaId`: 404 for unknown or quarantined ids, 504
    /// `M_NOT_YET_UPLOADED` for an id made by `/create` whose upload has not come (the spec's
    /// answer; the asking server may try again).
    static func localMedia(_ context: RequestContext) async throws -> (MediaRecord, String) {
        let mediaID = context.parameter("mediaId")
        guard MediaIdentifiers.isValidMediaID(mediaID) else { throw MatrixError(.notFound, "Media not found") }
        let media = context.app.media
        guard let (record, path) = try await media.local(mediaID: mediaID), record.sha256 != nil, record.quarantinedBy == nil else {
            if let pending = try await media.store.record(origin: media.serverName, mediaID: mediaID), pending.isPending,
               pending.quarantinedBy == nil {
                throw MatrixError("M_NOT_YET_UPLOADED", "Media has not been uploaded yet", status: 504)
            }
            throw MatrixError(.notFound, "Media not found")
        }
        return (record, path)
    }

    /// The file as the second part, with the Content-Type and Content-Disposition the
    /// client download would have (core's `downloadResponse` decides both).
    static func multipart(_ context: RequestContext, record: MediaRecord, path: String, length: Int64) throws -> HTTPResponse {
        let plain = context.app.media.downloadResponse(record: record, path: path, fileName: nil, request: context.request)
        var headers: [(name: String, value: String)] = []
        headers.append(("Content-Type", plain.contentType ?? record.contentType ?? "application/octet-stream"))
        if let disposition = plain.headers["Content-Disposition"] { headers.append(("Content-Disposition", disposition)) }
        return MultipartMediaBody(partHeaders: headers).response(filePath: path, fileLength: length)
    }
}

/// Media ids and server names as they may appear in a path: bounded, and of the characters
/// this server and Synapse generate (`[A-Za-z0-9_-]`), so that no id names a file or
/// smuggles a path segment.
enum MediaIdentifiers {
    static func isValidMediaID(_ id: String) -> Bool {
        (1...255).contains(id.utf8.count) && id.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2D
        }
    }
}
