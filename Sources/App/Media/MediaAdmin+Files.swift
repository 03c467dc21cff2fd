import Actors
import Persistence

/// The files a deleted media leaves behind, under the media root
/// (`configuration.resolvedMediaPath`): its thumbnails (rows of `media_thumbnails` and their
/// files, keyed by the content's sha256) and the content-addressed file itself.
extension MediaAdmin {
    /// Removes the thumbnails generated from content `sha256` (rows, then files).
    static func removeThumbnails(sha256: String, app: MyelinApp) async throws {
        let files = MediaFileStore(root: app.configuration.resolvedMediaPath)
        for path in try await app.database.mediaThumbnails.delete(sha256: sha256) {
            await files.removeTemporary(files.root + "/" + path)
        }
    }

    /// Removes the content file of `sha256`.
    static func removeContent(sha256: String, app: MyelinApp) async throws {
        try await MediaFileStore(root: app.configuration.resolvedMediaPath).remove(sha256: sha256)
    }
}
