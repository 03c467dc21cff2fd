import Matrix

/// The client-server JSON form of push rules (spec: "Push Rules", `PushRule`, `PushCondition`,
/// actions), written from the typed rules of `PushRuleSet`; used by `PushRules` for the
/// server defaults a user starts with.
enum PushRulesJSON {
    /// The server-default rules of `user`, by kind.
    static func defaults(for user: UserID) -> [String: JSON] {
        var byKind: [String: [JSON]] = Dictionary(uniqueKeysWithValues: PushRule.Kind.allCases.map { ($0.rawValue, []) })
        for rule in PushRuleSet.serverDefault(for: user).rules {
            byKind[rule.kind.rawValue, default: []].append(encode(rule))
        }
        return byKind.mapValues { .array($0) }
    }

    static func encode(_ rule: PushRule) -> JSON {
        var object: [String: JSON] = ["rule_id": .string(rule.ruleID), "default": .bool(rule.isDefault),
                                      "enabled": .bool(rule.enabled), "actions": .array(rule.actions.map(encode))]
        switch rule.kind {
        case .override, .underride:
            object["conditions"] = .array(rule.conditions.map(encode))
        case .content:
            if case .eventMatch(_, let pattern)? = rule.conditions.first { object["pattern"] = .string(pattern.pattern) }
        case .room, .sender:
            break
        }
        return .object(object)
    }

    static func encode(_ action: PushAction) -> JSON {
        switch action {
        case .notify: return "notify"
        case .setTweak(let name, let value):
            var object: [String: JSON] = ["set_tweak": .string(name)]
            if let value { object["value"] = value }
            return .object(object)
        }
    }

    static func encode(_ condition: PushCondition) -> JSON {
        switch condition {
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
        case .unrecognised(let kind):
            return ["kind": .string(kind)]
        }
    }
}
