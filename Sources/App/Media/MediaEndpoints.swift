import Actors
import Matrix
import Persistence
import Transport

/// The content repository (spec: "Content repository", client-server API 1.11+ for the
/// authenticated paths): upload, create + asynchronous upload, download, config; the
/// legacy unauthenticated `/_matrix/media/{v3,r0}` paths and the seed's `/_matrix/media/v1`
/// aliases. Thumbnails and URL previews register their own routes.
enum MediaEndpoints {
    static let legacyVersions = ["v3", "r0", "v1"]

    static func register(_ routes: inout RouteBuilder) {
        for version in legacyVersions {
            routes.post("/_matrix/media/\(version)/upload", upload)
            routes.put("/_matrix/media/\(version)/upload/{serverName}/{mediaId}", uploadCreated)
            routes.get("/_matrix/media/\(version)/download/{serverName}/{mediaId}") { try await download($0, authenticated: false) }
            routes.get("/_matrix/media/\(version)/download/{serverName}/{mediaId}/{fileName}") {
                try await download($0, authenticated: false)
            }
            routes.get("/_matrix/media/\(version)/config", legacyConfig)
        }
        routes.post("/_matrix/media/v1/create", create)
        routes.get("/_matrix/client/v1/media/download/{serverName}/{mediaId}") { try await download($0, authenticated: true) }
        routes.get("/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}") {
            try await download($0, authenticated: true)
        }
        routes.get("/_matrix/client/v1/media/config", config)
    }

    /// `POST /_matrix/media/v3/upload?filename=`: stores the body as new media.
    static func upload(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let (contentType, fileName) = try uploadMetadata(context)
        let record = try await context.app.media.store(body: MediaRequestBody(context.request.body),
                                                       declaredLength: context.request.head.contentLength,
                                                       contentType: contentType, fileName: fileName,
                                                       uploader: requester.userID)
        return .json(["content_uri": .string(record.contentURI)])
    }

    /// `POST /_matrix/media/v1/create`: reserves an id the requester uploads to later.
    static func create(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let media = context.app.media
        let now = Clock.nowMilliseconds()
        let expires = now + Int64(media.configuration.pendingUploadExpiryMs)
        let mediaID = MediaRepository.newMediaID()
        guard try await media.store.createPending(origin: media.serverName, mediaID: mediaID, uploader: requester.userID,
                                                  now: now, expiresTs: expires,
                                                  maxPending: media.configuration.maxPendingUploads) else {
            throw MatrixError(.limitExceeded, "Too many pending media uploads", extra: ["retry_after_ms": 60_000])
        }
        return .json(["content_uri": .string("mxc://\(media.serverName)/\(mediaID)"), "unused_expires_at": .int(expires)])
    }

    /// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the upload of a created id,
    /// by its creator only, once, before it expires.
    static func uploadCreated(_ context: RequestContext) async throws -> HTTPResponse {
        let requester = try await context.requireUser()
        let media = context.app.media
        let mediaID = context.parameter("mediaId")
        guard context.parameter("serverName") == media.serverName,
              let record = try await media.store.record(origin: media.serverName, mediaID: mediaID) else {
            throw MatrixError(.notFound, "Unknown media ID")
        }
        guard record.uploader == requester.userID else {
            throw MatrixError(.forbidden, "You may not upload to this media ID")
        }
        guard record.isPending else {
            throw MatrixError("M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content", status: 409)
        }
        guard (record.expiresTs ?? .max) >= Clock.nowMilliseconds() else {
            throw MatrixError(.notFound, "Media ID has expired")
        }
        let (contentType, fileName) = try uploadMetadata(context)
        _ = try await media.store(body: MediaRequestBody(context.request.body),
                                  declaredLength: context.request.head.contentLength,
                                  contentType: contentType, fileName: fileName, uploader: requester.userID,
                                  mediaID: mediaID)
        return .json(.object([:]))
    }

    /// The `Content-Type` header and `filename` query parameter of an upload, bounded.
    static func uploadMetadata(_ context: RequestContext) throws -> (contentType: String?, fileName: String?) {
        let contentType = context.request.headers["Content-Type"]
        let fileName = context.query["filename"]
        if let contentType, contentType.utf8.count > 255 || contentType.utf8.contains(0) {
            throw MatrixError(.invalidParam, "Content-Type is too long")
        }
        if let fileName, fileName.utf8.count > 1024 || fileName.utf8.contains(0) {
            throw MatrixError(.invalidParam, "filename is too long")
        }
        return (contentType, fileName.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// `GET .../download/{serverName}/{mediaId}[/{fileName}]`, authenticated
    /// (`/_matrix/client/v1/media`) or legacy. The legacy paths refuse media stored while
    /// authenticated media was enforced (`media.enable_authenticated_media`).
    static func download(_ context: RequestContext, authenticated: Bool) async throws -> HTTPResponse {
        if authenticated { _ = try await context.requireUser() }
        let media = context.app.media
        let query = context.query
        let allowRemote = authenticated || query["allow_remote"] != "false"
        let timeout = try timeoutMilliseconds(query["timeout_ms"])
        let (record, path) = try await media.resolveWaiting(origin: context.parameter("serverName"),
                                                            mediaID: context.parameter("mediaId"),
                                                            allowRemote: allowRemote, timeoutMs: timeout)
        if !authenticated && media.configuration.enableAuthenticatedMedia && record.authenticated {
            throw MatrixError(.notFound, "Not found: use the authenticated media endpoints")
        }
        return media.downloadResponse(record: record, path: path, fileName: context.parameters["fileName"],
                                      request: context.request)
    }

    /// `timeout_ms`: digits only, default 20 s, at most 60 s (a client cannot hold a
    /// request for longer).
    static func timeoutMilliseconds(_ text: String?) throws -> Int64 {
        guard let text else { return 20_000 }
        guard !text.isEmpty, text.utf8.count <= 12, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = Int64(text) else {
            throw MatrixError(.invalidParam, "timeout_ms must be a non-negative integer")
        }
        return min(value, 60_000)
    }

    /// `GET /_matrix/client/v1/media/config`.
    static func config(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireUser()
        return .json(["m.upload.size": .int(Int64(context.app.media.configuration.maxUploadBytes))])
    }

    /// `GET /_matrix/media/{v3,r0,v1}/config`: the seed serves it without a token.
    static func legacyConfig(_ context: RequestContext) async throws -> HTTPResponse {
        .json(["m.upload.size": .int(Int64(context.app.media.configuration.maxUploadBytes))])
    }
}

/// A request body as the upload path consumes it: the transport's stream, or (a body the
/// transport buffered) its bytes as one chunk. A stream the transport failed because it
/// passed the size limit ends the upload with 413.
struct MediaRequestBody: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    typealias Failure = any Error
    let body: RequestBody

    init(_ body: RequestBody) { self.body = body }

    struct AsyncIterator: AsyncIteratorProtocol {
        var stream: RequestBodyStream.AsyncIterator?
        var buffered: [UInt8]?

        mutating func next() async throws -> [UInt8]? {
            if let bytes = buffered {
                buffered = nil
                return bytes.isEmpty ? nil : bytes
            }
            do {
                return try await stream?.next()
            } catch RequestBodyStream.StreamError.tooLarge {
                throw MatrixError(.tooLarge, "Upload exceeds the maximum size")
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        switch body {
        case .buffered(let bytes): return AsyncIterator(stream: nil, buffered: bytes)
        case .stream(let stream): return AsyncIterator(stream: stream.makeAsyncIterator(), buffered: nil)
        }
    }
}
