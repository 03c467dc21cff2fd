import Testing
@testable import Persistence

@Suite("URL preview store")
struct URLPreviewStoreTests {
    @Test(arguments: Backend.enabled)
    func previewAtATimeAndExpiry(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.urlPreviews
            let url = "https://example.org/page"
            #expect(try await store.preview(url: url, at: 1_000) == nil)
            try await store.store(.init(url: url, fetchedTs: 1_000, expiresTs: 2_000, og: #"{"v":1}"#, mediaID: "IMG1"))
            try await store.store(.init(url: url, fetchedTs: 3_000, expiresTs: 4_000, og: #"{"v":2}"#, mediaID: nil))
            try await store.store(.init(url: url + "/other", fetchedTs: 3_500, expiresTs: 9_000, og: "{}", mediaID: nil))
            // The latest at or before the time; before the first, the earliest after it.
            #expect(try await store.preview(url: url, at: 1_500)?.og == #"{"v":1}"#)
            #expect(try await store.preview(url: url, at: 3_000)?.og == #"{"v":2}"#)
            #expect(try await store.preview(url: url, at: 99_999)?.og == #"{"v":2}"#)
            #expect(try await store.preview(url: url, at: 10)?.mediaID == "IMG1")
            #expect(try await store.preview(url: "https://example.org/none", at: 5_000) == nil)
            // The same fetch time again replaces the row.
            try await store.store(.init(url: url, fetchedTs: 3_000, expiresTs: 5_000, og: #"{"v":3}"#, mediaID: "IMG3"))
            #expect(try await store.preview(url: url, at: 3_000) == .init(url: url, fetchedTs: 3_000, expiresTs: 5_000,
                                                                           og: #"{"v":3}"#, mediaID: "IMG3"))
            #expect(try await store.count() == 3)
            // Expired rows go, with the media ids they held.
            #expect(try await store.deleteExpired(before: 6_000) == ["IMG1", "IMG3"])
            #expect(try await store.count() == 1)
            #expect(try await store.preview(url: url, at: 3_000) == nil)
            #expect(try await store.deleteExpired(before: 6_000).isEmpty)
        }
    }
}
