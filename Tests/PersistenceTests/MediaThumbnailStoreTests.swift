import Testing
@testable import Persistence

/// `media_thumbnails` (migration 101) on both backends.
@Suite struct MediaThumbnailStoreTests {
    static func row(_ sha: String, _ w: Int, _ h: Int, _ method: String, animated: Bool = false, size: Int64 = 100) -> ThumbnailRecord {
        ThumbnailRecord(sha256: sha, width: w, height: h, method: method, animated: animated, thumbnailWidth: w,
                        thumbnailHeight: h, contentType: "image/png", size: size,
                        path: "thumbnails/\(sha)/\(w)x\(h)-\(method)\(animated ? "-animated" : "").png", createdTs: 1)
    }

    @Test(arguments: Backend.enabled)
    func insertReplaceListDelete(backend: Backend) async throws {
        try await withDatabase(backend) { database in
            let store = database.mediaThumbnails
            let (a, b) = (String(repeating: "a", count: 64), String(repeating: "b", count: 64))
            try await store.insert(Self.row(a, 32, 32, "crop"))
            try await store.insert(Self.row(a, 320, 240, "scale"))
            try await store.insert(Self.row(a, 320, 240, "scale", animated: true))
            try await store.insert(Self.row(b, 32, 32, "crop"))
            // The same key again replaces the row (a regenerated file).
            try await store.insert(Self.row(a, 32, 32, "crop", size: 999))
            let still = try await store.thumbnails(sha256: a, animated: false).sorted { $0.width < $1.width }
            #expect(still == [Self.row(a, 32, 32, "crop", size: 999), Self.row(a, 320, 240, "scale")])
            #expect(try await store.thumbnails(sha256: a, animated: true) == [Self.row(a, 320, 240, "scale", animated: true)])
            let removed = try await store.delete(sha256: a)
            #expect(removed.count == 3)
            #expect(try await store.thumbnails(sha256: a, animated: false).isEmpty)
            #expect(try await store.thumbnails(sha256: b, animated: false).count == 1)
        }
    }
}
