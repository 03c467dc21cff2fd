import Matrix
import Persistence
import Transport

/// Synapse's media administration API (`docs/admin_api/media_admin_api.md`, the user admin
/// API's media listing, `statistics.md`) and the seed's `media_stats`: quarantine of one
/// media, of a room's or a user's, protection from quarantine, listings, deletion by id, by
/// age and size or by user, and usage statistics. Every route is for server admins
/// (`requireAdmin`: 401 without a token, 403 for other users). Deletion itself is
/// `MediaAdmin.delete` (`MediaAdmin+Deletion.swift`), shared with account erasure.
enum MediaAdmin {
    static let prefix = "/_synapse/admin/v1"

    static func register(_ routes: inout RouteBuilder) {
        routes.post("\(prefix)/media/quarantine/{serverName}/{mediaId}", quarantineOne)
        routes.post("\(prefix)/media/unquarantine/{serverName}/{mediaId}", unquarantineOne)
        routes.post("\(prefix)/room/{roomId}/media/quarantine", quarantineRoom)
        routes.post("\(prefix)/quarantine_media/{roomId}", quarantineRoom)
        routes.post("\(prefix)/user/{userId}/media/quarantine", quarantineUser)
        routes.post("\(prefix)/media/protect/{mediaId}", protect)
        routes.post("\(prefix)/media/unprotect/{mediaId}", unprotect)
        routes.get("\(prefix)/room/{roomId}/media", roomMedia)
        routes.get("\(prefix)/media/{serverName}/{mediaId}", mediaInfo)
        routes.delete("\(prefix)/media/{serverName}/{mediaId}", deleteOne)
        routes.post("\(prefix)/media/delete", deleteOld)
        routes.post("\(prefix)/media/{serverName}/delete", deleteOld)
        routes.get("\(prefix)/users/{userId}/media", userMedia)
        routes.delete("\(prefix)/users/{userId}/media", deleteUserMedia)
        routes.get("\(prefix)/media_stats", mediaStats)
        routes.get("\(prefix)/statistics/users/media", usersMediaStatistics)
    }

    // MARK: Quarantine and protection

    /// `POST /media/quarantine/{serverName}/{mediaId}`: downloads and thumbnails of it (and
    /// of any media with the same content) answer 404 from now on.
    static func quarantineOne(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let (origin, mediaID) = try mediaPath(context)
        try await context.app.database.mediaAdmin.quarantine(origin: origin, mediaID: mediaID, by: admin.userID.rawValue)
        return .json([:])
    }

    /// `POST /media/unquarantine/{serverName}/{mediaId}`.
    static func unquarantineOne(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (origin, mediaID) = try mediaPath(context)
        try await context.app.database.mediaAdmin.unquarantine(origin: origin, mediaID: mediaID)
        return .json([:])
    }

    /// `POST /room/{roomId}/media/quarantine` (and the legacy `/quarantine_media/{roomId}`):
    /// every media the room's events name, local or remote, that this server holds.
    static func quarantineRoom(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let room = try RoomID(parsing: context.parameter("roomId"))
        let uris = try await mediaURIs(in: room, app: context.app)
        let count = try await context.app.database.mediaAdmin.quarantine(uris.map { (origin: $0.origin, mediaID: $0.mediaID) },
                                                                         by: admin.userID.rawValue)
        return .json(["num_quarantined": .int(Int64(count))])
    }

    /// `POST /user/{userId}/media/quarantine`: every media the local user uploaded.
    static func quarantineUser(_ context: RequestContext) async throws -> HTTPResponse {
        let admin = try await context.requireAdmin()
        let user = try UserID(parsing: context.parameter("userId"))
        let count = try await context.app.database.mediaAdmin.quarantine(uploader: user, by: admin.userID.rawValue)
        return .json(["num_quarantined": .int(Int64(count))])
    }

    /// `POST /media/protect/{mediaId}`: local media that quarantine leaves alone.
    static func protect(_ context: RequestContext) async throws -> HTTPResponse {
        try await setProtected(context, true)
    }

    /// `POST /media/unprotect/{mediaId}`.
    static func unprotect(_ context: RequestContext) async throws -> HTTPResponse {
        try await setProtected(context, false)
    }

    static func setProtected(_ context: RequestContext, _ protected: Bool) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let mediaID = try boundedMediaID(context.parameter("mediaId"))
        let origin = context.app.configuration.serverName
        guard try await context.app.database.mediaAdmin.setProtected(origin: origin, mediaID: mediaID, protected) else {
            throw MatrixError(.notFound, "Unknown media")
        }
        return .json([:])
    }

    // MARK: Listings

    /// `GET /room/{roomId}/media`: the mxc URIs the room's (unencrypted) events name, split
    /// into this server's and other servers'.
    static func roomMedia(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let room = try RoomID(parsing: context.parameter("roomId"))
        guard try await context.app.database.roomEvents.roomVersion(of: room) != nil else {
            throw MatrixError(.notFound, "Room not found")
        }
        let uris = try await mediaURIs(in: room, app: context.app)
        let local = context.app.configuration.serverName
        return .json([
            "local": .array(uris.filter { $0.origin == local }.map { .string($0.uri) }),
            "remote": .array(uris.filter { $0.origin != local }.map { .string($0.uri) }),
        ])
    }

    /// `GET /media/{serverName}/{mediaId}`: what the server knows of one media.
    static func mediaInfo(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (origin, mediaID) = try mediaPath(context)
        guard let row = try await context.app.database.mediaAdmin.media(origin: origin, mediaID: mediaID) else {
            throw MatrixError(.notFound, "Unknown media")
        }
        var info = json(row)
        info["media_origin"] = .string(row.origin)
        info["user_id"] = row.uploader.map(JSON.string) ?? .null
        info["sha256"] = row.sha256.map(JSON.string) ?? .null
        info["filesystem_id"] = row.sha256.map(JSON.string) ?? .null
        return .json(["media_info": .object(info)])
    }

    /// `GET /users/{userId}/media`: a page of the media a local user uploaded, newest first
    /// unless `order_by`/`dir` say otherwise; `next_token` while more remain.
    static func userMedia(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let user = try await localUser(context)
        let page = try listingParameters(context)
        let (rows, total) = try await context.app.database.mediaAdmin.media(
            uploadedBy: user, order: page.order, forward: page.forward, from: page.from, limit: page.limit)
        var body: [String: JSON] = ["media": .array(rows.map { .object(json($0)) }), "total": .int(Int64(total))]
        if page.from + rows.count < total { body["next_token"] = .int(Int64(page.from + rows.count)) }
        return .json(.object(body))
    }

    // MARK: Statistics

    /// `GET /media_stats` (the seed's): every stored media and their total size.
    static func mediaStats(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (count, bytes) = try await context.app.database.mediaAdmin.totals()
        return .json(["total_media": .int(count), "total_size_bytes": .int(bytes)])
    }

    /// `GET /statistics/users/media`: local media usage per user (Synapse's `statistics.md`).
    static func usersMediaStatistics(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let from = try context.limit("from", default: 0, max: Int(Int32.max))
        let limit = try context.limit("limit", default: 100, max: 1_000)
        let order = try context.query["order_by"].map {
            guard let order = MediaAdminStore.UsageOrder(rawValue: $0) else {
                throw MatrixError(.invalidParam, "Unknown value for order_by: \($0)")
            }
            return order
        } ?? .userID
        let forward = try direction(context)
        let fromTS = try context.integer("from_ts", in: 0...Int64(1) << 53)
        let untilTS = try context.integer("until_ts", in: 0...Int64(1) << 53)
        if let fromTS, let untilTS, untilTS < fromTS {
            throw MatrixError(.invalidParam, "Query parameter until_ts must be greater than from_ts.")
        }
        let search = try context.query["search_term"].map {
            guard !$0.isEmpty else { throw MatrixError(.invalidParam, "Query parameter search_term cannot be empty.") }
            return try RequestBounds.text($0, "search_term", maxBytes: 255)
        }
        let (users, total) = try await context.app.database.mediaAdmin.usage(
            order: order, forward: forward, from: from, limit: limit, fromTS: fromTS, untilTS: untilTS, search: search)
        var body: [String: JSON] = ["total": .int(Int64(total)), "users": .array(users.map { user in
            .object(["user_id": .string(user.userID), "displayname": user.displayName.map(JSON.string) ?? .null,
                     "media_count": .int(user.mediaCount), "media_length": .int(user.mediaLength)])
        })]
        if from + users.count < total { body["next_token"] = .int(Int64(from + users.count)) }
        return .json(.object(body))
    }

    // MARK: Parameters

    /// `{serverName}/{mediaId}` of the path, bounded.
    static func mediaPath(_ context: RequestContext) throws -> (origin: String, mediaID: String) {
        let origin = try ServerName(parsing: context.parameter("serverName")).rawValue
        return (origin, try boundedMediaID(context.parameter("mediaId")))
    }

    /// A media id as Synapse makes them and the spec allows (`[A-Za-z0-9_-]`), at most 255 bytes.
    static func boundedMediaID(_ text: String) throws -> String {
        guard !text.isEmpty, text.utf8.count <= 255, text.utf8.allSatisfy(MXC.isMediaIDByte) else {
            throw MatrixError(.invalidParam, "Invalid media id")
        }
        return text
    }

    /// The path's `userId`, a local user who exists: 400 for another server's, 404 unknown.
    static func localUser(_ context: RequestContext) async throws -> UserID {
        let user = try UserID(parsing: context.parameter("userId"))
        guard user.serverName.rawValue == context.app.configuration.serverName else {
            throw MatrixError(.invalidParam, "Can only look up local users")
        }
        guard try await context.app.database.accounts.user(id: user) != nil else {
            throw MatrixError(.notFound, "Unknown user")
        }
        return user
    }

    struct Listing {
        var order: MediaAdminStore.Order
        var forward: Bool
        var from: Int
        var limit: Int
    }

    /// `from`, `limit`, `order_by` and `dir` of the user media listing and deletion; with
    /// neither `order_by` nor `dir`, newest first (Synapse's default).
    static func listingParameters(_ context: RequestContext) throws -> Listing {
        let query = context.query
        let from = try context.limit("from", default: 0, max: Int(Int32.max))
        let limit = try context.limit("limit", default: 100, max: 1_000)
        let order = try query["order_by"].map {
            guard let order = MediaAdminStore.Order(rawValue: $0) else {
                throw MatrixError(.invalidParam, "Unknown value for order_by: \($0)")
            }
            return order
        } ?? .createdTS
        let forward = try query["order_by"] == nil && query["dir"] == nil ? false : direction(context)
        return Listing(order: order, forward: forward, from: from, limit: limit)
    }

    /// `dir`: `f` (the default) or `b`.
    static func direction(_ context: RequestContext) throws -> Bool {
        switch context.query["dir"] ?? "f" {
        case "f": return true
        case "b": return false
        default: throw MatrixError(.invalidParam, "Unknown direction: must be f or b")
        }
    }

    /// A row as Synapse's user media listing shows it.
    static func json(_ row: MediaAdminStore.Row) -> [String: JSON] {
        [
            "media_id": .string(row.mediaID),
            "media_type": row.contentType.map(JSON.string) ?? .string("application/octet-stream"),
            "media_length": .int(row.size),
            "upload_name": row.uploadName.map(JSON.string) ?? .null,
            "created_ts": .int(row.createdTS),
            "last_access_ts": row.lastAccessTS.map(JSON.int) ?? .null,
            "quarantined_by": row.quarantinedBy.map(JSON.string) ?? .null,
            "safe_from_quarantine": .bool(row.safeFromQuarantine),
        ]
    }
}
