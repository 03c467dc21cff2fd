import Matrix

/// Until the content repository lands, preview images are not stored (previews answer
/// without `og:image`).
struct NoPreviewImages: PreviewImageStoring {
    func storePreviewImage(_ bytes: [UInt8], contentType: String, fileName: String?, user: UserID) async throws -> String {
        throw MatrixError(.unknown, "Media storage is not available")
    }
}

extension URLPreviewEndpoints {
    static func previewImages(_ context: RequestContext) -> any PreviewImageStoring { NoPreviewImages() }
}
