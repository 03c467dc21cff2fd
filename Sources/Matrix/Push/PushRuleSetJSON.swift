/// The client-server JSON form of push rules (spec: "Push Rules", `PushRule`, `PushCondition`,
/// actions; the `global` object of `m.push_rules` and of `GET /pushrules/`), read and written.
///
/// Reading merges with the server defaults of today: a stored default rule contributes only
/// its `enabled` flag and `actions` (a default this server no longer has is dropped, a new one
/// appears), and user rules take their place before the defaults of their kind, as Synapse
/// orders them: `.m.rule.master`, user override, default override, user content, default
/// content, user room, user sender, user underride, default underride. Anything malformed in
/// the stored object is skipped, never trusted: a rule without an id or a list of actions is
/// left out; a condition this server cannot read is kept as written and never matches.
extension PushRuleSet {
    /// At most this many rules of one kind are read from a stored object.
    public static let maxStoredRulesPerKind = 1000

    /// The rules from a stored `global` object (kind name → list of rules), merged with the
    /// server defaults of `user`.
    public init(json global: [String: JSON], user: UserID) {
        let defaults = PushRuleSet.serverDefault(for: user)
        var defaultIDs = Set<String>()
        for rule in defaults.rules { defaultIDs.insert(rule.ruleID) }
        var changedDefaults: [String: (enabled: Bool?, actions: [PushAction]?)] = [:]
        var userRules: [PushRule.Kind: [PushRule]] = [:]
        for kind in PushRule.Kind.allCases {
            guard let list = global[kind.rawValue]?.arrayValue else { continue }
            var seen = Set<String>()
            for item in list.prefix(Self.maxStoredRulesPerKind) {
                guard let object = item.objectValue, let id = object["rule_id"]?.stringValue, !id.isEmpty,
                      seen.insert(id).inserted else { continue }
                if id.hasPrefix(".") {
                    // Only a default of this kind; the rest of a stored default is ours to define.
                    guard defaultIDs.contains(id), defaults.rules.contains(where: { $0.ruleID == id && $0.kind == kind }) else {
                        continue
                    }
                    changedDefaults[id] = (object["enabled"]?.boolValue, object["actions"]?.arrayValue.map(PushAction.list))
                } else if let rule = PushRule(json: object, kind: kind) {
                    userRules[kind, default: []].append(rule)
                }
            }
        }
        var byKind: [PushRule.Kind: [PushRule]] = [:]
        var master: PushRule?
        for var rule in defaults.rules {
            if let change = changedDefaults[rule.ruleID] {
                if let enabled = change.enabled { rule.enabled = enabled }
                if let actions = change.actions { rule.actions = actions }
            }
            if rule.ruleID == PushRuleSet.masterRuleID {
                master = rule
            } else {
                byKind[rule.kind, default: []].append(rule)
            }
        }
        var rules: [PushRule] = []
        rules.reserveCapacity(defaults.rules.count + userRules.values.reduce(0) { $0 + $1.count })
        if let master { rules.append(master) }
        for kind in PushRule.Kind.allCases {
            rules += userRules[kind] ?? []
            rules += byKind[kind] ?? []
        }
        self.init(rules: rules)
    }

    public static let masterRuleID = ".m.rule.master"

    /// The rules as clients see them: kind name → list of rules in evaluation order.
    public var clientJSON: [String: JSON] {
        var byKind: [String: [JSON]] = [:]
        for kind in PushRule.Kind.allCases { byKind[kind.rawValue] = [] }
        for rule in rules { byKind[rule.kind.rawValue, default: []].append(rule.clientJSON) }
        return byKind.mapValues { .array($0) }
    }
}

extension PushRule {
    /// A user rule of `kind` from its JSON (`rule_id`, `actions`, `enabled`, and `conditions`
    /// or `pattern` as the kind has them); nil when malformed.
    public init?(json object: [String: JSON], kind: Kind) {
        guard let id = object["rule_id"]?.stringValue, !id.isEmpty, let actions = object["actions"]?.arrayValue else {
            return nil
        }
        let enabled = object["enabled"]?.boolValue ?? true
        let conditions: [PushCondition]
        switch kind {
        case .override, .underride:
            guard let list = object["conditions"]?.arrayValue, list.count <= PushRule.maxConditions else { return nil }
            conditions = list.map(PushCondition.init(json:))
        case .content:
            guard let pattern = object["pattern"]?.stringValue else { return nil }
            conditions = [.eventMatch(key: "content.body", pattern: PushGlob(pattern))]
        case .room:
            conditions = [.eventMatch(key: "room_id", pattern: PushGlob(id, literal: true))]
        case .sender:
            conditions = [.eventMatch(key: "sender", pattern: PushGlob(id, literal: true))]
        }
        self.init(id, kind: kind, isDefault: false, enabled: enabled, conditions: conditions,
                  actions: PushAction.list(actions))
    }

    /// Conditions read from one rule at most (a client asks for a handful).
    public static let maxConditions = 64

    /// The client-server form: `conditions` for override and underride rules, `pattern` for
    /// content rules, neither for room and sender rules (their id says it).
    public var clientJSON: JSON {
        var object: [String: JSON] = ["rule_id": .string(ruleID), "default": .bool(isDefault), "enabled": .bool(enabled),
                                      "actions": .array(actions.map(\.json))]
        switch kind {
        case .override, .underride:
            object["conditions"] = .array(conditions.map(\.json))
        case .content:
            if case .eventMatch(_, let pattern)? = conditions.first { object["pattern"] = .string(pattern.pattern) }
        case .room, .sender:
            break
        }
        return .object(object)
    }
}

extension PushCondition {
    /// A condition from its JSON; what this server cannot read (an unknown kind, a missing or
    /// mistyped parameter) is kept as `.unrecognised` and never matches.
    public init(json: JSON) {
        let key = json["key"]?.stringValue.map(PushCondition.canonicalPath)
        switch json["kind"]?.stringValue {
        case "event_match":
            // A pattern longer than any event property could be: unread (globs cost text × pattern).
            if let key, let pattern = json["pattern"]?.stringValue, pattern.utf8.count <= PushCondition.maxPatternBytes {
                self = .eventMatch(key: key, pattern: PushGlob(pattern))
                return
            }
        case "event_property_is":
            if let key, let value = json["value"], PushCondition.isComparable(value) {
                self = .eventPropertyIs(key: key, value: value)
                return
            }
        case "event_property_contains":
            if let key, let value = json["value"], PushCondition.isComparable(value) {
                self = .eventPropertyContains(key: key, value: value)
                return
            }
        case "contains_display_name":
            self = .containsDisplayName
            return
        case "room_member_count":
            if let spec = json["is"]?.stringValue {
                self = .roomMemberCount(is: spec)
                return
            }
        case "sender_notification_permission":
            if let key {
                self = .senderNotificationPermission(key: key)
                return
            }
        default:
            break
        }
        self = .unrecognised(json)
    }

    public static let maxPatternBytes = 4096

    /// A dot-separated property path as `PushEvent` writes them (appendix "Dot-separated
    /// property paths"): `\.` and `\\` escape a dot and a backslash; any other backslash is
    /// a literal one (`a\xb` names the property `a\xb`), so it is written escaped (`a\\xb`)
    /// for the lookup to find it. Paths without such a backslash are returned unchanged.
    static func canonicalPath(_ path: String) -> String {
        guard path.unicodeScalars.contains("\\") else { return path }
        let scalars = Array(path.unicodeScalars)
        var out = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            out.append(scalar)
            index += 1
            guard scalar == "\\" else { continue }
            if index < scalars.count, scalars[index] == "." || scalars[index] == "\\" {
                out.append(scalars[index])
                index += 1
            } else {
                out.append("\\")
            }
        }
        return String(out)
    }

    /// Non-compound canonical JSON: strings, booleans, null and integers within ±(2^53 − 1).
    static func isComparable(_ value: JSON) -> Bool {
        switch value {
        case .string, .bool, .null: return true
        case .int(let i): return i >= -JSON.canonicalIntegerLimit && i <= JSON.canonicalIntegerLimit
        default: return false
        }
    }

    public var json: JSON {
        switch self {
        case .eventMatch(let key, let pattern):
            return ["kind": "event_match", "key": .string(key), "pattern": .string(pattern.pattern)]
        case .eventPropertyIs(let key, let value):
            return ["kind": "event_property_is", "key": .string(key), "value": value]
        case .eventPropertyContains(let key, let value):
            return ["kind": "event_property_contains", "key": .string(key), "value": value]
        case .containsDisplayName:
            return ["kind": "contains_display_name"]
        case .roomMemberCount(let spec):
            return ["kind": "room_member_count", "is": .string(spec)]
        case .senderNotificationPermission(let key):
            return ["kind": "sender_notification_permission", "key": .string(key)]
        case .unrecognised(let json):
            return json
        }
    }
}

extension PushAction {
    /// The actions of a JSON list: `notify` and `set_tweak` objects; the historical
    /// `dont_notify` and `coalesce` and anything unknown are dropped (spec: "Historical Actions").
    public static func list(_ json: [JSON]) -> [PushAction] {
        var actions: [PushAction] = []
        for item in json.prefix(64) {
            if item.stringValue == "notify" {
                actions.append(.notify)
            } else if let name = item["set_tweak"]?.stringValue {
                actions.append(.setTweak(name, value: item["value"]))
            }
        }
        return actions
    }

    public var json: JSON {
        switch self {
        case .notify: return "notify"
        case .setTweak(let name, let value):
            var object: [String: JSON] = ["set_tweak": .string(name)]
            if let value { object["value"] = value }
            return .object(object)
        }
    }
}
