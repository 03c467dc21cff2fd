import Matrix
import Testing
@testable import Persistence

/// The remote media cache's queries on both backends: usage counts only other origins'
/// stored content (not local uploads, not pending ids), and the LRU order is by last access.
@Suite struct RemoteMediaCacheStoreTests {
    @Test(arguments: Backend.enabled)
    func usageAndLeastRecentlyUsed(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let media = database.media
            let cache = database.remoteMediaCache
            func row(_ origin: String, _ id: String, size: Int64, access: Int64, sha: String? = String(repeating: "a", count: 64),
                     uploader: UserID? = nil) -> MediaRecord {
                MediaRecord(origin: origin, mediaID: id, sha256: sha, size: size, contentType: "image/png", uploadName: nil,
                            uploader: uploader, createdTs: 1, lastAccessTs: access)
            }
            #expect(try await cache.usage(localOrigin: "local.test") == (0, 0))
            try await media.insert(row("local.test", "mine", size: 1_000, access: 1, uploader: try UserID(parsing: "@a:local.test")))
            try await media.insert(row("remote.test", "old", size: 10, access: 100))
            try await media.insert(row("remote.test", "new", size: 20, access: 300))
            try await media.insert(row("other.test:8448", "mid", size: 30, access: 200))
            try await media.insert(row("remote.test", "pending", size: 0, access: 1, sha: nil))
            let usage = try await cache.usage(localOrigin: "local.test")
            #expect(usage.bytes == 60 && usage.count == 3)
            let lru = try await cache.leastRecentlyUsed(localOrigin: "local.test", limit: 10)
            #expect(lru.map(\.mediaID) == ["old", "mid", "new"])
            #expect(lru.map(\.size) == [10, 30, 20])
            #expect(try await cache.leastRecentlyUsed(localOrigin: "local.test", limit: 1).map(\.mediaID) == ["old"])
            try await media.touch(origin: "remote.test", mediaID: "old", now: 400)
            #expect(try await cache.leastRecentlyUsed(localOrigin: "local.test", limit: 10).map(\.mediaID) == ["mid", "new", "old"])
        }
    }
}
