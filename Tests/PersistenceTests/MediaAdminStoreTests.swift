import Matrix
import Testing
@testable import Persistence

/// The administrators' media queries (`MediaAdminStore`) on both backends: listing order with
/// NULLs and ties, paging, quarantine by content, protection, deletion selections, the
/// reference count that decides a content file's removal, and usage statistics.
@Suite("Media admin store on SQLite and PostgreSQL")
struct MediaAdminStoreTests {
    static let alice = try! UserID(parsing: "@alice:t")
    static let bob = try! UserID(parsing: "@bob:t")

    static func seed(_ database: Database) async throws {
        let rows: [MediaRecord] = [
            MediaRecord(origin: "t", mediaID: "m1", sha256: "aa", size: 300, contentType: "image/png", uploadName: "b.png",
                        uploader: alice, createdTs: 1_000, lastAccessTs: 5_000),
            MediaRecord(origin: "t", mediaID: "m2", sha256: "bb", size: 100, contentType: nil, uploadName: nil,
                        uploader: alice, createdTs: 2_000),
            MediaRecord(origin: "t", mediaID: "m3", sha256: "aa", size: 300, contentType: "image/png", uploadName: "a.png",
                        uploader: bob, createdTs: 2_000),
            MediaRecord(origin: "t", mediaID: "m4", sha256: nil, size: 0, contentType: nil, uploadName: nil,
                        uploader: alice, createdTs: 3_000, expiresTs: 9_000),
            MediaRecord(origin: "remote.example", mediaID: "r1", sha256: "aa", size: 300, contentType: "image/png",
                        uploadName: nil, uploader: nil, createdTs: 500),
        ]
        for row in rows { #expect(try await database.media.insert(row)) }
    }

    @Test(arguments: Backend.enabled)
    func listingOrdersPagesAndCounts(_ backend: Backend) async throws {
        try await withDatabase(backend) { database in
            try await Self.seed(database)
            let store = database.mediaAdmin
            let newest = try await store.media(uploadedBy: Self.alice, order: .createdTS, forward: false, from: 0, limit: 10)
            #expect(newest.total == 3)
            #expect(newest.rows.map(\.mediaID) == ["m4", "m2", "m1"])
            // NULL names first in ascending order on both backends, ties by media id.
            let byName = try await store.media(uploadedBy: Self.alice, order: .uploadName, forward: true, from: 0, limit: 10)
            #expect(byName.rows.map(\.mediaID) == ["m2", "m4", "m1"])
            let page = try await store.media(uploadedBy: Self.alice, order: .mediaLength, forward: true, from: 1, limit: 1)
            #expect(page.rows.map(\.mediaID) == ["m2"])
            #expect(page.total == 3)
            let m1 = try #require(try await store.media(origin: "t", mediaID: "m1"))
            #expect(m1.lastAccessTS == 5_000)
            #expect(m1.uploadName == "b.png")
            #expect(!m1.safeFromQuarantine)
        }
    }

    @Test(arguments: Backend.enabled)
    func quarantineFollowsContentAndSparesProtectedMedia(_ backend: Backend) async throws {
        try await withDatabase(backend) { database in
            try await Self.seed(database)
            let store = database.mediaAdmin
            #expect(try await store.setProtected(origin: "t", mediaID: "m3", true))
            #expect(try await !store.setProtected(origin: "t", mediaID: "nope", true))
            // m1 and the cached remote copy share its content; m3 does too but is protected.
            #expect(try await store.quarantine(origin: "t", mediaID: "m1", by: "@admin:t") == 2)
            #expect(try await store.media(origin: "remote.example", mediaID: "r1")?.quarantinedBy == "@admin:t")
            #expect(try await store.media(origin: "t", mediaID: "m3")?.quarantinedBy == nil)
            #expect(try await store.unquarantine(origin: "t", mediaID: "m1") == 2)
            #expect(try await store.quarantine(uploader: Self.alice, by: "@admin:t") == 3)
            #expect(try await store.quarantine([("t", "m3"), ("remote.example", "r1"), ("t", "unknown")], by: "@admin:t") == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func deletionSelectsOldLargeUnprotectedMediaAndReportsOrphanedContent(_ backend: Backend) async throws {
        try await withDatabase(backend) { database in
            try await Self.seed(database)
            let store = database.mediaAdmin
            // Last access (m1: 5000) counts, not creation; pending ids are never selected.
            #expect(try await store.localMediaToDelete(origin: "t", beforeTS: 4_000, sizeGreaterThan: 0, keepingProfiles: false,
                                                       roomAvatars: [], limit: 10) == ["m2", "m3"])
            #expect(try await store.localMediaToDelete(origin: "t", beforeTS: 10_000, sizeGreaterThan: 100, keepingProfiles: true,
                                                       roomAvatars: ["mxc://t/m3"], limit: 10) == ["m1"])
            #expect(try await store.setProtected(origin: "t", mediaID: "m1", true))
            #expect(try await store.localMediaToDelete(origin: "t", beforeTS: 10_000, sizeGreaterThan: 100, keepingProfiles: false,
                                                       roomAvatars: [], limit: 10) == ["m3"])
            // "aa" is shared by m1, m3 and r1: only the last deletion orphans it.
            #expect(try await store.deleteMedia(origin: "t", mediaID: "m1")?.orphanedSHA256 == nil)
            #expect(try await store.deleteMedia(origin: "t", mediaID: "m3")?.orphanedSHA256 == nil)
            #expect(try await store.deleteMedia(origin: "remote.example", mediaID: "r1")?.orphanedSHA256 == "aa")
            #expect(try await store.deleteMedia(origin: "t", mediaID: "m1") == nil)
            #expect(try await store.deleteMedia(origin: "t", mediaID: "m2")?.orphanedSHA256 == "bb")
        }
    }

    @Test(arguments: Backend.enabled)
    func totalsAndPerUserUsage(_ backend: Backend) async throws {
        try await withDatabase(backend) { database in
            try await Self.seed(database)
            let store = database.mediaAdmin
            let totals = try await store.totals()
            #expect(totals.count == 4)  // the pending id holds no bytes yet
            #expect(totals.bytes == 1_000)
            let usage = try await store.usage(order: .mediaLength, forward: false, from: 0, limit: 10, fromTS: nil,
                                              untilTS: nil, search: nil)
            #expect(usage.total == 2)
            #expect(usage.users.map(\.userID) == ["@alice:t", "@bob:t"])
            #expect(usage.users.first?.mediaCount == 2)
            #expect(usage.users.first?.mediaLength == 400)
            let windowed = try await store.usage(order: .userID, forward: true, from: 0, limit: 10, fromTS: 1_500,
                                                 untilTS: 2_500, search: "ali")
            #expect(windowed.users == [.init(userID: "@alice:t", displayName: nil, mediaCount: 1, mediaLength: 100)])
        }
    }
}
