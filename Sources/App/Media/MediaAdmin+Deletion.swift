import Matrix
import Persistence
import Transport

/// Deleting local media: the row, its thumbnails, and the content file once no row
/// references its sha256 any more (identical uploads share one file). Used by the admin
/// routes and by account erasure (`POST /account/deactivate` with `erase: true`).
extension MediaAdmin {
    /// At most this many media go in one delete-by-age request (Synapse has no cap; one
    /// request here must stay a bounded amount of work: the admin repeats it).
    static let maxDeletedPerRequest = 10_000

    /// `DELETE /media/{serverName}/{mediaId}`: one local media.
    static func deleteOne(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let (origin, mediaID) = try mediaPath(context)
        guard origin == context.app.configuration.serverName else {
            throw MatrixError(.invalidParam, "Can only delete local media")
        }
        guard try await delete(origin: origin, mediaID: mediaID, app: context.app) else {
            throw MatrixError(.notFound, "Unknown media")
        }
        return deletedResponse([mediaID])
    }

    /// `POST /media/delete?before_ts=&size_gt=&keep_profiles=`: local media last accessed
    /// before `before_ts` (ms) and larger than `size_gt` bytes; media used as an avatar are
    /// kept unless `keep_profiles=false`.
    static func deleteOld(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let local = context.app.configuration.serverName
        if let server = context.parameters["serverName"], server != local {
            throw MatrixError(.invalidParam, "Can only delete local media")
        }
        guard context.query["before_ts"] != nil else { throw MatrixError(.missingParam, "Missing integer query parameter 'before_ts'") }
        let beforeTS = try context.integer("before_ts", in: 0...Int64(1) << 53) ?? 0
        // Synapse's guard against seconds given for milliseconds.
        guard beforeTS >= 30_000_000_000 else {
            throw MatrixError(.invalidParam, "before_ts you provided is from the year 1970. Double check that you are providing a timestamp in milliseconds.")
        }
        let sizeGreaterThan = try context.integer("size_gt", in: 0...Int64.max) ?? 0
        let keepProfiles: Bool
        switch context.query["keep_profiles"] ?? "true" {
        case "true": keepProfiles = true
        case "false": keepProfiles = false
        default: throw MatrixError(.invalidParam, "keep_profiles must be true or false")
        }
        let avatars = keepProfiles ? try await roomAvatarURIs(app: context.app) : []
        let ids = try await context.app.database.mediaAdmin.localMediaToDelete(
            origin: local, beforeTS: beforeTS, sizeGreaterThan: sizeGreaterThan, keepingProfiles: keepProfiles,
            roomAvatars: avatars, limit: maxDeletedPerRequest)
        var deleted: [String] = []
        for id in ids {
            if try await delete(origin: local, mediaID: id, app: context.app) { deleted.append(id) }
        }
        return deletedResponse(deleted)
    }

    /// `DELETE /users/{userId}/media`: a page (same parameters as the listing) of the user's media.
    static func deleteUserMedia(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireAdmin()
        let user = try await localUser(context)
        let page = try listingParameters(context)
        let (rows, _) = try await context.app.database.mediaAdmin.media(
            uploadedBy: user, order: page.order, forward: page.forward, from: page.from, limit: page.limit)
        var deleted: [String] = []
        for row in rows {
            if try await delete(origin: row.origin, mediaID: row.mediaID, app: context.app) { deleted.append(row.mediaID) }
        }
        return deletedResponse(deleted)
    }

    static func deletedResponse(_ ids: [String]) -> HTTPResponse {
        .json(["deleted_media": .array(ids.map { .string($0) }), "total": .int(Int64(ids.count))])
    }

    /// Every media `user` uploaded, deleted (account erasure); how many.
    @discardableResult
    static func deleteAllMedia(of user: UserID, app: MyelinApp) async throws -> Int {
        var deleted = 0
        while true {
            let (rows, _) = try await app.database.mediaAdmin.media(uploadedBy: user, order: .mediaID, forward: true,
                                                                    from: 0, limit: 500)
            if rows.isEmpty { return deleted }
            var progressed = false
            for row in rows {
                guard try await delete(origin: row.origin, mediaID: row.mediaID, app: app) else { continue }
                deleted += 1
                progressed = true
            }
            if !progressed { return deleted }
        }
    }

    /// Deletes one media: its row, its thumbnails and, when it was the content's last
    /// reference, the content file. False when there was no such media.
    static func delete(origin: String, mediaID: String, app: MyelinApp) async throws -> Bool {
        guard let deleted = try await app.database.mediaAdmin.deleteMedia(origin: origin, mediaID: mediaID) else {
            return false
        }
        // The file and its thumbnails (keyed by content) go with the last reference, counted
        // again under the content's lock: an identical upload may have written its row since.
        if let sha256 = deleted.orphanedSHA256 { await app.media.removeIfUnreferenced(sha256: sha256) }
        return true
    }

    // MARK: Media named by a room's events

    /// The distinct mxc URIs a room's events carry (in any field: `url`, `info.thumbnail_url`,
    /// an avatar's `url`...), in order of first appearance. Encrypted events carry none in clear.
    static func mediaURIs(in room: RoomID, app: MyelinApp) async throws -> [MXC] {
        var seen = Set<String>()
        var found: [MXC] = []
        var after: Int64 = Int64.min
        while true {
            let page = try await app.database.mediaAdmin.roomEventJSON(room, after: after, limit: 500)
            for (_, json) in page {
                for uri in MXC.scan(json) where seen.insert(uri.uri).inserted { found.append(uri) }
            }
            guard let last = page.last else { return found }
            after = last.position
        }
    }

    /// The mxc URIs of every room avatar event stored (for `keep_profiles`).
    static func roomAvatarURIs(app: MyelinApp) async throws -> Set<String> {
        var uris = Set<String>()
        for json in try await app.database.mediaAdmin.roomAvatarEventJSON() {
            for uri in MXC.scan(json) { uris.insert(uri.uri) }
        }
        return uris
    }
}

/// An `mxc://server/mediaId` URI found in stored event JSON.
struct MXC: Sendable, Hashable {
    var origin: String
    var mediaID: String
    var uri: String { "mxc://\(origin)/\(mediaID)" }

    static func isMediaIDByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
    }

    /// Server names: DNS names, IPv4, `[IPv6]`, with a port.
    static func isServerNameByte(_ b: UInt8) -> Bool {
        isMediaIDByte(b) || b == 0x2E || b == 0x3A || b == 0x5B || b == 0x5D
    }

    private static let scheme = Array("mxc://".utf8)

    /// Every well-formed mxc URI in `bytes` (JSON text: a URI ends at its closing quote, or at
    /// a character no server name or media id may contain). Server names and ids beyond 255
    /// bytes are skipped.
    static func scan(_ bytes: [UInt8]) -> [MXC] {
        var found: [MXC] = []
        var i = 0
        let n = bytes.count
        while i + scheme.count <= n {
            guard bytes[i] == 0x6D, bytes[i..<(i + scheme.count)].elementsEqual(scheme) else { i += 1; continue }
            var j = i + scheme.count
            let serverStart = j
            while j < n, isServerNameByte(bytes[j]) { j += 1 }
            let serverEnd = j
            guard serverEnd > serverStart, serverEnd - serverStart <= 255, j < n, bytes[j] == 0x2F else { i = max(j, i + 1); continue }
            j += 1
            let idStart = j
            while j < n, isMediaIDByte(bytes[j]) { j += 1 }
            if j > idStart, j - idStart <= 255 {
                found.append(MXC(origin: String(decoding: bytes[serverStart..<serverEnd], as: UTF8.self),
                                 mediaID: String(decoding: bytes[idStart..<j], as: UTF8.self)))
            }
            i = j
        }
        return found
    }
}
