import Actors
import Matrix
import Persistence
import Transport

/// The push rules API (client-server API "Push Rules: API"): `GET /pushrules/` and the
/// `global` scope's rules by kind and id, their `enabled` flag and `actions`, user rules
/// added (with `before` / `after`) and deleted. The user's whole rule set lives in their
/// global account data `m.push_rules` (as sync delivers it, like Synapse), written on the
/// first change; until then it is the server defaults. Reads go through `PushRulesService`
/// (`app.pushRules`), which merges the stored rules with the server defaults of today and
/// which every change invalidates; the unread counts of `/sync` evaluate the same sets.
enum PushRules {
    static let kinds = PushRule.Kind.allCases.map(\.rawValue)
    static let maxUserRules = 500

    static func register(_ routes: inout RouteBuilder) {
        // `/pushrules/` and `/pushrules/global/` end with a slash; without it they are 400
        // (and `/pushrules` 404), as Synapse answers.
        routes.client(.get, "/pushrules/{scope}", getAll)
        routes.client(.put, "/pushrules/{scope}", incomplete)
        routes.client(.get, "/pushrules/{scope}/{kind}", getKind)
        routes.client(.put, "/pushrules/{scope}/{kind}", incomplete)
        routes.client(.get, "/pushrules/{scope}/{kind}/{ruleId}/{attribute}", incomplete)
        routes.client(.put, "/pushrules/{scope}/{kind}/{ruleId}/{attribute}", incomplete)
        routes.client(.get, "/pushrules/{scope}/{kind}/{ruleId}", getRule)
        routes.client(.put, "/pushrules/{scope}/{kind}/{ruleId}", putRule)
        routes.client(.delete, "/pushrules/{scope}/{kind}/{ruleId}", deleteRule)
        routes.client(.get, "/pushrules/{scope}/{kind}/{ruleId}/enabled", getEnabled)
        routes.client(.put, "/pushrules/{scope}/{kind}/{ruleId}/enabled", putEnabled)
        routes.client(.get, "/pushrules/{scope}/{kind}/{ruleId}/actions", getActions)
        routes.client(.put, "/pushrules/{scope}/{kind}/{ruleId}/actions", putActions)
    }

    // MARK: handlers

    /// `GET /pushrules/` (every scope).
    static func getAll(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser().userID
        guard context.parameter("scope").isEmpty else { throw MatrixError(.invalidParam, "Missing trailing slash", status: 400) }
        return .json(["global": .object(try await load(context.app, user))])
    }

    /// `GET /pushrules/global/`.
    static func getKind(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser().userID
        guard context.parameter("kind").isEmpty else { throw MatrixError(.invalidParam, "Missing trailing slash", status: 400) }
        try checkScope(context.parameter("scope"))
        return .json(.object(try await load(context.app, user)))
    }

    /// A path that names no rule, or an unknown attribute of one.
    static func incomplete(_ context: RequestContext) async throws -> HTTPResponse {
        _ = try await context.requireUser()
        throw MatrixError(.invalidParam, "Not a push rule path", status: 400)
    }

    /// `GET /pushrules/global/{kind}/{ruleId}`; an empty id (`/pushrules/global/{kind}/`) lists the kind.
    static func getRule(_ context: RequestContext) async throws -> HTTPResponse {
        if context.parameter("ruleId").isEmpty {
            let user = try await context.requireUser().userID
            let (_, kind) = try scopeAndKind(context)
            return .json(try await load(context.app, user)[kind] ?? .array([]))
        }
        let user = try await context.requireUser().userID
        let (_, kind) = try scopeAndKind(context)
        let rules = try await load(context.app, user)
        return .json(.object(try find(rules, kind, context.parameter("ruleId")).rule))
    }

    static func getEnabled(_ context: RequestContext) async throws -> HTTPResponse {
        try await getField(context, "enabled")
    }

    static func getActions(_ context: RequestContext) async throws -> HTTPResponse {
        try await getField(context, "actions")
    }

    static func putEnabled(_ context: RequestContext) async throws -> HTTPResponse {
        let body = try await context.jsonObject()
        guard let enabled = body["enabled"], enabled.boolValue != nil else { throw MatrixError(.badJSON, "enabled must be a boolean") }
        return try await setField(context, "enabled", enabled)
    }

    static func putActions(_ context: RequestContext) async throws -> HTTPResponse {
        let body = try await context.jsonObject()
        guard let actions = body["actions"], let list = actions.arrayValue, list.count <= 20 else {
            throw MatrixError(.badJSON, "actions must be a list")
        }
        try checkActions(list)
        return try await setField(context, "actions", actions)
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}`: adds or replaces a user rule; new rules come
    /// first in their kind unless `before` / `after` name another user rule.
    static func putRule(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser().userID
        let (_, kind) = try scopeAndKind(context)
        let ruleID = context.parameter("ruleId")
        guard !ruleID.isEmpty, ruleID.utf8.count <= 255, !ruleID.contains("/"), !ruleID.contains("\\") else {
            throw MatrixError(.invalidParam, "Invalid rule id")
        }
        if ruleID.hasPrefix(".") { throw MatrixError(.invalidParam, "cannot add new rule_ids that start with '.'") }
        let body = try await context.jsonObject()
        let rule = try userRule(kind, ruleID, body)
        let before = context.query["before"], after = context.query["after"]
        try await update(context.app, user) { rules in
            var list = rules[kind]?.arrayValue ?? []
            var rule = rule
            // Replacing a rule keeps whether it is enabled (as Synapse); a new one is enabled.
            if let existing = list.first(where: { $0["rule_id"]?.stringValue == ruleID }), let enabled = existing["enabled"],
               case .object(var object) = rule {
                object["enabled"] = enabled
                rule = .object(object)
            }
            list.removeAll { $0["rule_id"]?.stringValue == ruleID }
            guard list.filter({ $0["default"]?.boolValue != true }).count < maxUserRules else {
                throw MatrixError(.invalidParam, "Too many push rules")
            }
            list.insert(rule, at: try position(list, kind: kind, before: before, after: after))
            rules[kind] = .array(list)
        }
        return .json([:])
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`: user rules only.
    static func deleteRule(_ context: RequestContext) async throws -> HTTPResponse {
        let user = try await context.requireUser().userID
        let (_, kind) = try scopeAndKind(context)
        let ruleID = context.parameter("ruleId")
        try await update(context.app, user) { rules in
            let found = try find(rules, kind, ruleID)
            // Server-default rules are not the user's to delete: 404 as Synapse answers (the
            // spec lists no other error); they can be disabled instead.
            if found.rule["default"]?.boolValue == true {
                throw MatrixError(.notFound, "Server-default rules cannot be deleted (disable them instead)")
            }
            var list = rules[kind]?.arrayValue ?? []
            list.remove(at: found.index)
            rules[kind] = .array(list)
        }
        return .json([:])
    }

    // MARK: helpers

    static func getField(_ context: RequestContext, _ field: String) async throws -> HTTPResponse {
        let user = try await context.requireUser().userID
        let (_, kind) = try scopeAndKind(context)
        let rule = try find(try await load(context.app, user), kind, context.parameter("ruleId")).rule
        return .json([field: rule[field] ?? .null])
    }

    static func setField(_ context: RequestContext, _ field: String, _ value: JSON) async throws -> HTTPResponse {
        let user = try await context.requireUser().userID
        let (_, kind) = try scopeAndKind(context)
        let ruleID = context.parameter("ruleId")
        try await update(context.app, user) { rules in
            let found = try find(rules, kind, ruleID)
            var list = rules[kind]?.arrayValue ?? []
            var rule = found.rule
            rule[field] = value
            list[found.index] = .object(rule)
            rules[kind] = .array(list)
        }
        return .json([:])
    }

    static func checkScope(_ scope: String) throws {
        guard scope == "global" else { throw MatrixError(.invalidParam, "Unknown scope \(scope.prefix(32))", status: 400) }
    }

    static func scopeAndKind(_ context: RequestContext) throws -> (String, String) {
        let scope = context.parameter("scope"), kind = context.parameter("kind")
        try checkScope(scope)
        guard kinds.contains(kind) else { throw MatrixError(.invalidParam, "Unknown kind \(kind.prefix(32))", status: 400) }
        return (scope, kind)
    }

    static func find(_ rules: [String: JSON], _ kind: String, _ ruleID: String) throws -> (index: Int, rule: [String: JSON]) {
        let list = rules[kind]?.arrayValue ?? []
        guard let index = list.firstIndex(where: { $0["rule_id"]?.stringValue == ruleID }), let rule = list[index].objectValue else {
            throw MatrixError(.notFound, "Unknown rule")
        }
        return (index, rule)
    }

    /// Where a new rule goes: next to `before` / `after` (a user rule of the kind; another
    /// name is 400 `M_UNKNOWN` as the spec's example and Synapse answer), else first among the
    /// kind's rules (after `.m.rule.master`, which always comes first).
    static func position(_ list: [JSON], kind: String, before: String?, after: String?) throws -> Int {
        if let anchor = before ?? after {
            guard let index = list.firstIndex(where: { $0["rule_id"]?.stringValue == anchor }),
                  list[index]["default"]?.boolValue != true else {
                throw MatrixError(.unknown, "before/after rule not found: \(anchor.prefix(64))", status: 400)
            }
            return before != nil ? index : index + 1
        }
        return list.first?["rule_id"]?.stringValue == ".m.rule.master" ? 1 : 0
    }

    /// A user rule from its `PUT` body: `actions`, plus `conditions` (override, underride)
    /// or `pattern` (content); room and sender rules are named by their id.
    static func userRule(_ kind: String, _ ruleID: String, _ body: [String: JSON]) throws -> JSON {
        guard let actions = body["actions"]?.arrayValue, actions.count <= 20 else { throw MatrixError(.badJSON, "Missing actions") }
        try checkActions(actions)
        var rule: [String: JSON] = ["rule_id": .string(ruleID), "default": false, "enabled": true, "actions": .array(actions)]
        switch kind {
        case "override", "underride":
            guard let conditions = body["conditions"]?.arrayValue, conditions.count <= 20, conditions.allSatisfy({ $0["kind"]?.stringValue != nil }) else {
                throw MatrixError(.badJSON, "conditions must be a list of objects with a kind")
            }
            // Globs cost text × pattern per evaluation: bounded like content patterns.
            for condition in conditions where (condition["pattern"]?.stringValue?.utf8.count ?? 0) > PushCondition.maxPatternBytes
                || (condition["key"]?.stringValue?.utf8.count ?? 0) > 1024 {
                throw MatrixError(.invalidParam, "Condition pattern or key too long")
            }
            rule["conditions"] = .array(conditions)
        case "content":
            guard let pattern = body["pattern"]?.stringValue, pattern.utf8.count <= 1000 else {
                throw MatrixError(.badJSON, "Content rules need a pattern")
            }
            rule["pattern"] = .string(pattern)
        default:
            break
        }
        return .object(rule)
    }

    /// Actions are `notify`, the historical `dont_notify` / `coalesce`, or `set_tweak` objects.
    static func checkActions(_ actions: [JSON]) throws {
        for action in actions {
            if let name = action.stringValue, ["notify", "dont_notify", "coalesce"].contains(name) { continue }
            if action["set_tweak"]?.stringValue != nil { continue }
            throw MatrixError(.unrecognized, "Unrecognised action", status: 400)
        }
    }

    /// The user's rules by kind, as clients see them (`PushRulesService`: stored user rules
    /// merged with the server defaults of today).
    static func load(_ app: MyelinApp, _ user: UserID) async throws -> [String: JSON] {
        try await app.pushRules.ruleSet(for: user).clientJSON
    }

    /// Changes the user's rules and stores the whole set (as `GET /pushrules/` shows it: sync
    /// sends it to the user's devices) on the account-data stream; then drops the cached set
    /// and wakes the user's syncs.
    static func update(_ app: MyelinApp, _ user: UserID,
                       _ change: @escaping @Sendable (inout [String: JSON]) throws -> Void) async throws {
        let accounts = app.accounts
        let type = PushRulesService.accountDataType
        let position = try await accounts.accountDataStream.withNextPosition { position in
            try await accounts.database.accountData.updateAccountData(userID: user, roomID: nil, type: type,
                                                                     position: position) { current in
                let stored = current.flatMap { try? JSON.parse(Array($0.utf8))["global"]?.objectValue } ?? [:]
                var rules = PushRuleSet(json: stored, user: user).clientJSON
                try change(&rules)
                return JSON.object(["global": .object(rules)]).encodedString
            }
            return position
        }
        app.pushRules.invalidate(user)
        app.roomService.fanout.notify([user], of: StreamChange(.accountData, position))
    }
}
