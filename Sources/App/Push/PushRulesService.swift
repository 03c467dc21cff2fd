import Matrix
import Persistence
import Synchronization

/// Every user's effective push rules (their stored `m.push_rules` merged with the server
/// defaults, in evaluation order), cached in memory. Owned by `MyelinApp` (`app.pushRules`);
/// read by the unread counts of `/sync`, the push rules API and the notification pipeline;
/// `invalidate` is called after every change of a user's `m.push_rules` (the push rules API is
/// the only writer: the account-data API refuses the type).
final class PushRulesService: Sendable {
    private let store: AccountDataStore

    private struct State {
        var rules: [UserID: PushRuleSet] = [:]
        /// Bumped by every invalidation: a load that began before one does not fill the cache
        /// with what it read (it may predate the change).
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Users whose rules are held at most (the cache is emptied when full; each set is about
    /// a kilobyte with the defaults shared).
    static let maxCachedUsers = 20_000

    init(store: AccountDataStore) { self.store = store }

    /// The user's rules: user rules and server defaults, in the order they are checked.
    func ruleSet(for user: UserID) async throws -> PushRuleSet {
        let generation: UInt64
        do {
            let cached = state.withLock { ($0.rules[user], $0.generation) }
            if let rules = cached.0 { return rules }
            generation = cached.1
        }
        let rules = try await load(user)
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.rules.count >= Self.maxCachedUsers { state.rules.removeAll(keepingCapacity: true) }
            state.rules[user] = rules
        }
        return rules
    }

    /// The user's rules when cached, without suspending (the push pipeline asks for each
    /// recipient of each event; an `await` there waits behind the whole loaded pool).
    func cachedRuleSet(for user: UserID) -> PushRuleSet? {
        state.withLock { $0.rules[user] }
    }

    /// The stored rules of `user` changed (or may have): the next `ruleSet(for:)` reads them.
    func invalidate(_ user: UserID) {
        state.withLock { state in
            state.generation &+= 1
            state.rules[user] = nil
        }
    }

    /// From the store: `m.push_rules`' `global` object merged with the defaults; the defaults
    /// alone when there is none (or it is not JSON).
    private func load(_ user: UserID) async throws -> PushRuleSet {
        guard let text = try await store.accountData(userID: user, roomID: nil, type: PushRulesService.accountDataType),
              let global = try? JSON.parse(Array(text.utf8))["global"]?.objectValue else {
            return .serverDefault(for: user)
        }
        return PushRuleSet(json: global, user: user)
    }

    /// The global account-data type the rules are stored under (and sent to clients as).
    static let accountDataType = "m.push_rules"
}
