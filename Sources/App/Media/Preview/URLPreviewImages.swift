import Matrix

/// A preview's image is local media like an upload (made by the server, recorded with the
/// user who asked for the preview as its uploader, as Synapse records it).
extension MediaRepository: PreviewImageStoring {
    func storePreviewImage(_ bytes: [UInt8], contentType: String, fileName: String?, user: UserID) async throws -> String {
        try await store(bytes: bytes, contentType: contentType, fileName: fileName, uploader: user).mediaID
    }

    func deletePreviewImage(_ mediaID: String) async throws {
        try await delete(origin: serverName, mediaID: mediaID)
    }
}

extension URLPreviewEndpoints {
    static func previewImages(_ context: RequestContext) -> any PreviewImageStoring { context.app.media }
}
