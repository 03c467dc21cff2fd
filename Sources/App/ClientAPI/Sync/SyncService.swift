import Actors
import Matrix
import Persistence
import Synchronization

/// The state of `/sync` that outlives a request: identical requests in flight (shared
/// computations), parsed filters, unread counts per user and room, and the presence of
/// syncing users. It reads the streams' positions and runs the long-poll loop: register with
/// the user's notifier, build when a stream concerning the user moved, otherwise wait.
/// Built by `MyelinApp`; called by `Sync` and `LegacySync`.
final class SyncService: Sendable {
    let responses = SyncResponseCache()
    let unreadCounts = UnreadCounts()
    let presence = SyncPresence()
    /// Parsed sync filters by inline text or `user\0id` (bounded; see `filter`).
    private let filters = Mutex<[String: SyncFilter]>([:])
    /// Each syncing user's `m.ignored_user_list`, with the account-data position visible
    /// before it was read (bounded; see `ignoredUsers`).
    private let ignoredLists = Mutex<[UserID: IgnoredList]>([:])
    private struct IgnoredList {
        var position: Int64
        var users: Set<String>
    }
    static let maxIgnoredLists = 100_000
    private let rooms: RoomService
    private let accounts: Accounts
    private let keys: KeyService

    init(rooms: RoomService, accounts: Accounts, keys: KeyService) {
        self.rooms = rooms
        self.accounts = accounts
        self.keys = keys
    }

    /// The streams' visible positions now.
    func currentToken() -> StreamToken {
        var token = StreamToken.zero
        token[.roomEvents] = rooms.eventStream.visiblePosition
        token[.accountData] = accounts.accountDataStream.visiblePosition
        token[.receipts] = rooms.receipts.stream.visiblePosition
        token[.typing] = rooms.typing.position
        token[.toDevice] = rooms.toDevice.stream.visiblePosition
        token[.presence] = accounts.presenceStream.visiblePosition
        token[.deviceLists] = keys.deviceListStream.visiblePosition
        return token
    }

    /// The sync filter of `text` (an inline filter or a stored filter's id, still
    /// percent-encoded), parsed once and shared by every sync that sends the same text.
    func filter(_ app: MyelinApp, _ user: UserID, _ text: String) async throws -> SyncFilter {
        if text.isEmpty { return SyncFilter.none }
        // An inline filter starts with `{` (or its escape `%7B`).
        let inline = text.hasPrefix("{") || text.hasPrefix("%7B") || text.hasPrefix("%7b")
        let key = inline ? text : user.rawValue + "\u{0}" + text
        if let cached = filters.withLock({ $0[key] }) { return cached }
        guard let decoded = PercentDecoding.decode(Substring(text), plusAsSpace: true) else {
            throw MatrixError(.invalidParam, "filter is not valid percent-encoded UTF-8")
        }
        let filter = try await Sync.parseFilter(app, user, decoded)
        filters.withLock { cache in
            if cache.count >= 4096 { cache.removeAll(keepingCapacity: true) }
            cache[key] = filter
        }
        return filter
    }

    /// The users in `user`'s `m.ignored_user_list` as of account-data position `upTo`. Every
    /// sync asks; the store is read only when the account-data stream moved past the position
    /// the cached list was read at (every account-data write advances that stream, and a
    /// position visible before the read is in what the read sees), so a long-poll woken for a
    /// message reads nothing here.
    func ignoredUsers(_ app: MyelinApp, _ user: UserID, upTo: Int64) async throws -> Set<String> {
        if let cached = ignoredLists.withLock({ $0[user] }), upTo <= cached.position { return cached.users }
        let position = accounts.accountDataStream.visiblePosition
        let users = try await Self.readIgnoredUsers(app, user)
        ignoredLists.withLock { lists in
            if let existing = lists[user], existing.position >= position { return }
            if lists.count >= Self.maxIgnoredLists { lists.removeAll(keepingCapacity: true) }
            lists[user] = IgnoredList(position: position, users: users)
        }
        return users
    }

    /// The users of `user`'s stored `m.ignored_user_list` account data.
    static func readIgnoredUsers(_ app: MyelinApp, _ user: UserID) async throws -> Set<String> {
        guard let text = try await app.database.accountData.accountData(userID: user, roomID: nil,
                                                                        type: "m.ignored_user_list") else { return [] }
        return Set((try? JSON.parse(Array(text.utf8)))?["ignored_users"]?.objectValue?.keys.map { $0 } ?? [])
    }

    /// The response to `request`, once there is something to say or its timeout passed
    /// (initial and full-state syncs answer at once).
    func respond(_ app: MyelinApp, _ request: Sync.Request, _ filter: SyncFilter) async throws -> SyncResult {
        let deadline = ContinuousClock.now + .milliseconds(request.timeoutMs)
        var waitFrom = request.since ?? .zero
        while true {
            let now = currentToken()
            if request.since == nil || request.fullState || now.isAhead(of: waitFrom) {
                if let response = try await build(app, request, filter, upTo: now,
                                                  allowEmpty: request.since == nil || request.fullState
                                                      || ContinuousClock.now >= deadline) {
                    return response
                }
                waitFrom = now
            }
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return try await final(app, request, filter) }
            // Registered before `currentToken` reads the positions (two-phase wait).
            let woke = await rooms.fanout.wait(request.user, since: waitFrom, timeout: remaining) { [self] in
                currentToken()
            }
            if woke == nil { return try await final(app, request, filter) }
            wakes.add(1, ordering: .relaxed)
            if !currentToken().isAhead(of: waitFrom) {
                try await awaitVisible(after: waitFrom, deadline: deadline)
            }
        }
    }

    /// Long-poll wake-ups (tests: a wake that finds nothing visible must not spin).
    let wakes = Atomic<Int>(0)

    /// A writer notifies the position it stored, which becomes visible only once every earlier
    /// position of its stream is stored too: a wake can come before its position is visible.
    /// Waits for it without holding the thread (with handlers on the loops, a sync spinning
    /// here would keep the earlier writer's continuation, queued to the same loop, from ever
    /// running), polling every millisecond until a position is visible or the deadline.
    private func awaitVisible(after token: StreamToken, deadline: ContinuousClock.Instant) async throws {
        while !currentToken().isAhead(of: token) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// The (possibly empty) response at the timeout.
    private func final(_ app: MyelinApp, _ request: Sync.Request, _ filter: SyncFilter) async throws -> SyncResult {
        try await build(app, request, filter, upTo: currentToken(), allowEmpty: true)!
    }

    /// Builds a response in a frame of its own. Not inlined: an async function's frame holds
    /// every local that lives across any of its suspension points, and the builder's would
    /// otherwise sit in `respond`'s frame for the whole long-poll (memory per held /sync).
    @inline(never)
    private func build(_ app: MyelinApp, _ request: Sync.Request, _ filter: SyncFilter, upTo now: StreamToken,
                       allowEmpty: Bool) async throws -> SyncResult? {
        try await SyncBuilder(app: app, request: request, filter: filter, upTo: now).build(allowEmpty: allowEmpty)
    }
}
