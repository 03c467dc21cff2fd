import Actors
import Persistence

/// The files a deleted media leaves behind, under the media root
/// (`configuration.resolvedMediaPath`): its thumbnails and the content-addressed file itself.
extension MediaAdmin {
    /// Removes the thumbnails generated from content `sha256`. HOOK for the thumbnails
    /// branch (`m18-thumbs`): its `media_thumbnails` rows are keyed by sha256
    /// (`database.mediaThumbnails.delete(sha256:)` returns their paths under the media root);
    /// until it is merged there are no thumbnails to remove.
    static func removeThumbnails(sha256: String, app: MyelinApp) async throws {}

    /// Removes the content file of `sha256`.
    static func removeContent(sha256: String, app: MyelinApp) async throws {
        try await app.media.files.remove(sha256: sha256)
    }
}
