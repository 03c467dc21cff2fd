import Matrix
import Persistence
import Testing
@testable import Actors

/// The services a room actor updates itself after each commit: the timeline service holds
/// the actor's own ring (one ring), the membership service follows member events.
@Suite struct RoomServicesTests {
    @Test func theTimelineServiceHoldsTheActorsRing() async throws {
        try await withStore(.sqlite) { database in
            let timelines = TimelineService()
            let rooms = try await makeRooms(database, recent: 4, timelines: timelines)
            let alice = testUser("alice")
            let (roomID, created) = try await rooms.createRoom(creator: alice)
            var published = try #require(timelines.timeline(of: roomID))
            #expect(published.lastPosition == created.last?.streamOrdering)
            #expect(published.historyVisibility == "shared")
            for n in 0..<6 { _ = try await rooms.send(message(alice, "m\(n)"), in: roomID) }
            let actor = try await rooms.room(roomID)
            published = try #require(timelines.timeline(of: roomID))
            // The same ring as the actor's, and known visible: its newest position is visible.
            #expect(published.recent == (await actor.recentEvents(after: published.floor)))
            #expect(published.recent.count == 4)
            #expect(published.lastPosition == (await actor.lastStreamOrdering))
            #expect(published.lastPosition <= rooms.context.events.visiblePosition)
            #expect(timelines.lastPosition(of: roomID) == published.lastPosition)
            let newest = try #require(published.newest(after: published.lastPosition - 2, upTo: .max, limit: 10) { _ in true })
            #expect(newest.events.count == 2 && !newest.limited)
            // Reads reaching before the ring are refused (the caller asks the actor or the store).
            #expect(published.newest(after: 0, upTo: .max, limit: 10) { _ in true } == nil)

            _ = try await rooms.send(EventDraft(type: "m.room.history_visibility", sender: alice, stateKey: "",
                                                content: ["history_visibility": "joined"]), in: roomID)
            #expect(timelines.timeline(of: roomID)?.historyVisibility == "joined")

            // A deactivated actor's ring leaves the service; its position stays. The next
            // activation publishes the ring loaded from the store.
            let last = published.lastPosition + 1
            await rooms.registry.deactivateAll()
            #expect(timelines.timeline(of: roomID) == nil)
            #expect(timelines.lastPosition(of: roomID) == last)
            _ = try await rooms.room(roomID)
            #expect(timelines.timeline(of: roomID)?.lastPosition == last)
            #expect(timelines.timeline(of: roomID)?.historyVisibility == "joined")
            await rooms.registry.deactivateAll()
        }
    }

    @Test(arguments: Backend.enabled)
    func theMembershipServiceFollowsMemberEvents(_ backend: Backend) async throws {
        try await withStore(backend) { database in
            let rooms = try await makeRooms(database)
            let memberships = rooms.context.memberships
            let alice = testUser("alice"), bob = testUser("bob")
            let (roomID, _) = try await rooms.createRoom(creator: alice)
            // Loaded from the store on first use, then kept current by the room actor.
            #expect(try await memberships.memberships(of: alice)[roomID.rawValue]?.membership == "join")
            #expect(try await memberships.memberships(of: bob).isEmpty)
            let invite = try await rooms.send(EventDraft(type: "m.room.member", sender: alice, stateKey: bob.rawValue,
                                                         content: ["membership": "invite"]), in: roomID)
            let cached = try #require(memberships.cached(bob)?[roomID.rawValue])
            #expect(cached.membership == "invite" && cached.streamOrdering == invite.streamOrdering)
            // A change for a user not cached is merged into their next load.
            memberships.forget(bob)
            _ = try await rooms.send(EventDraft(type: "m.room.member", sender: bob, stateKey: bob.rawValue,
                                               content: ["membership": "join"]), in: roomID)
            #expect(memberships.cached(bob) == nil)
            #expect(try await memberships.memberships(of: bob)[roomID.rawValue]?.membership == "join")
            await rooms.registry.deactivateAll()
        }
    }
}
