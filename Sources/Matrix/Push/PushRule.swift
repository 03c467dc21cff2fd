/// One push rule (client-server API "Push Rules"): when its conditions hold for an event, its
/// actions say whether and how the user is notified. Built by `PushRuleSet.serverDefault(for:)`
/// and, for the user's own rules, from JSON (`PushRuleSetJSON.swift`); evaluated by `PushEvaluator`.
public struct PushRule: Sendable, Hashable {
    /// The kinds in the order they are checked.
    public enum Kind: String, Sendable, CaseIterable {
        case override, content, room, sender, underride
    }

    public var ruleID: String {
        didSet { legacyMention = PushRuleSet.legacyMentionRules.contains(ruleID) }
    }
    public var kind: Kind
    /// A server-default rule (its id starts with a dot).
    public var isDefault: Bool
    public var enabled: Bool
    /// All must hold. `content` rules hold their `pattern` as one `event_match` on
    /// `content.body`; `room` and `sender` rules as one `event_match` on `room_id`/`sender`.
    public var conditions: [PushCondition] {
        didSet { typeGuard = PushRule.typeGuard(conditions) }
    }
    /// The event type the rule requires, lowercased, when one of its conditions is an
    /// `event_match` of `type` without wildcards: the evaluator compares it first and skips
    /// the rule's conditions for events of another type (most rules, most events).
    public private(set) var typeGuard: String?
    public var actions: [PushAction]
    /// One of the legacy body-mention rules that events with `m.mentions` skip (MSC3952);
    /// decided once here rather than by a set lookup per evaluation.
    public var isLegacyMention: Bool { isDefault && legacyMention }
    private var legacyMention: Bool

    public init(_ ruleID: String, kind: Kind, isDefault: Bool = false, enabled: Bool = true,
                conditions: [PushCondition], actions: [PushAction]) {
        self.ruleID = ruleID
        self.kind = kind
        self.isDefault = isDefault
        self.enabled = enabled
        self.conditions = conditions
        self.actions = actions
        legacyMention = PushRuleSet.legacyMentionRules.contains(ruleID)
        typeGuard = PushRule.typeGuard(conditions)
    }

    private static func typeGuard(_ conditions: [PushCondition]) -> String? {
        for case .eventMatch(let key, let pattern) in conditions where key == "type" && !pattern.hasWildcards {
            return pattern.lowercased
        }
        return nil
    }

    /// A `content` rule: `pattern` matched by word against `content.body`.
    public static func content(_ ruleID: String, pattern: String, isDefault: Bool = false, enabled: Bool = true,
                               actions: [PushAction]) -> PushRule {
        PushRule(ruleID, kind: .content, isDefault: isDefault, enabled: enabled,
                 conditions: [.eventMatch(key: "content.body", pattern: PushGlob(pattern))], actions: actions)
    }
}

/// A condition of a push rule (client-server API "Push Rules", "Conditions").
public enum PushCondition: Sendable, Hashable {
    /// Glob match, case-insensitive, on a string property (on `content.body`: any substring
    /// between word boundaries).
    case eventMatch(key: String, pattern: PushGlob)
    /// Exact match of a non-compound value.
    case eventPropertyIs(key: String, value: JSON)
    /// An array property holds the non-compound value.
    case eventPropertyContains(key: String, value: JSON)
    /// `content.body` holds the user's display name in the room, by word (deprecated in v1.17,
    /// kept by the legacy default rule).
    case containsDisplayName
    /// The room's member count compared as `is` says (`2`, `==2`, `<10`, `>=3`, ...).
    case roomMemberCount(is: String)
    /// The sender's power level reaches `notifications.<key>` of the power levels.
    case senderNotificationPermission(key: String)
    /// A condition this server does not know, or cannot read, kept as written (a client reads
    /// it back unchanged): never matches (spec).
    case unrecognised(JSON)
}

/// An action of a push rule. The historical `dont_notify` and `coalesce` are dropped when
/// rules are read (spec: "Historical Actions"), so an empty list means "do not notify".
public enum PushAction: Sendable, Hashable {
    case notify
    /// A tweak for the push gateway; `highlight` with no value means true.
    case setTweak(String, value: JSON?)

    public static let highlight = PushAction.setTweak("highlight", value: nil)
    public static func sound(_ name: String) -> PushAction { .setTweak("sound", value: .string(name)) }
}

extension Array where Element == PushAction {
    /// The actions notify.
    public var notifies: Bool { contains(.notify) }

    /// The `highlight` tweak is set, and not to false.
    public var highlights: Bool {
        for case .setTweak(let name, let value) in self where name == "highlight" {
            return value.map { $0 != .bool(false) } ?? true
        }
        return false
    }
}
