import Testing
@testable import Matrix

/// Client-server API "Room History Visibility", "Server behaviour": the five steps and the
/// examples under them.
@Suite("History visibility")
struct HistoryVisibilityTests {
    typealias H = HistoryVisibility

    @Test func absentOrUnknownSettingIsShared() {
        #expect(H(content: nil) == .shared)
        #expect(H(content: "everyone") == .shared)
        #expect(H(content: "world_readable") == .worldReadable)
        #expect(H(content: "joined") == .joined)
        #expect(H.worldReadable.json == "world_readable")
    }

    @Test func worldReadableEventsAreVisibleToAnyone() {
        for membership in [nil] + MembershipState.allCases.map(Optional.some) {
            #expect(H.allows(.worldReadable, membership: membership, joinedAfter: false))
        }
    }

    @Test func aMemberJoinedAtTheEventSeesItWhateverTheSetting() {
        for visibility in H.allCases {
            #expect(H.allows(visibility, membership: .join, joinedAfter: false))
        }
    }

    @Test func sharedHistoryIsVisibleToUsersWhoJoinLater() {
        #expect(H.allows(.shared, membership: nil, joinedAfter: true))
        #expect(H.allows(.shared, membership: .invite, joinedAfter: true))
        #expect(!H.allows(.shared, membership: nil, joinedAfter: false))
        #expect(!H.allows(.shared, membership: .leave, joinedAfter: false))
        // Joining later opens only `shared` history.
        #expect(!H.allows(.invited, membership: nil, joinedAfter: true))
        #expect(!H.allows(.joined, membership: .invite, joinedAfter: true))
    }

    @Test func invitedHistoryStartsAtTheInvite() {
        #expect(H.allows(.invited, membership: .invite, joinedAfter: false))
        #expect(!H.allows(.joined, membership: .invite, joinedAfter: false))
        for membership: MembershipState? in [nil, .leave, .ban, .knock] {
            #expect(!H.allows(.invited, membership: membership, joinedAfter: true))
            #expect(!H.allows(.joined, membership: membership, joinedAfter: true))
        }
    }

    @Test func visibilityChangesAreVisibleIfEitherSideAllows() {
        // "a user should be able to see m.room.history_visibility events which change the
        // history_visibility from world_readable to joined or from joined to world_readable,
        // even if that user was not a member of the room."
        #expect(H.allowsChange(before: (.worldReadable, nil), after: (.joined, nil), joinedAfter: false))
        #expect(H.allowsChange(before: (.joined, nil), after: (.worldReadable, nil), joinedAfter: false))
        #expect(!H.allowsChange(before: (.joined, nil), after: (.invited, nil), joinedAfter: false))
        // "a user can always see m.room.member events which set their membership to join, or
        // which change their membership from join to any other value, even if
        // history_visibility is joined."
        #expect(H.allowsChange(before: (.joined, nil), after: (.joined, .join), joinedAfter: false))
        #expect(H.allowsChange(before: (.joined, .join), after: (.joined, .leave), joinedAfter: false))
        #expect(!H.allowsChange(before: (.joined, nil), after: (.joined, .invite), joinedAfter: false))
    }

    @Test func membershipStringsCompareWithTheirCases() {
        let stored: String? = "join"
        #expect(stored == MembershipState.join)
        #expect(stored != MembershipState.leave)
        #expect(nil != MembershipState.join)
        #expect(MembershipState.ban.json == "ban")
    }
}
