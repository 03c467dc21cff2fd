/// Decides a user's actions for one event from their push rules: the first enabled rule whose
/// conditions all hold wins (client-server API "Push Rules"). Pure: the caller supplies what
/// the rules look at beyond the event (`PushContext`). Called by App's unread counts; the
/// push gateway sender will call it too.
public enum PushEvaluator {
    /// The outcome of one evaluation.
    public enum Outcome: Sendable, Equatable {
        /// No rule matched: no notification.
        case noMatch
        /// The winning rule and its actions (empty: the rule suppresses notifications).
        case matched(ruleID: String, actions: [PushAction])
        /// A `sender_notification_permission` condition was reached and the context has no power
        /// levels: evaluate again with them (they are read only when needed).
        case needsPowerLevels

        /// The actions, empty when nothing matched.
        public var actions: [PushAction] {
            if case .matched(_, let actions) = self { return actions }
            return []
        }
    }

    public static func evaluate(_ rules: PushRuleSet, _ event: PushEvent, _ context: PushContext) -> Outcome {
        // Rules are read in place (a buffer, not a copy of each rule): this runs once per
        // recipient of every counted event.
        rules.rules.withUnsafeBufferPointer { rules in
            for index in rules.indices where rules[index].enabled {
                if event.hasMentions && rules[index].isLegacyMention {
                    continue
                }
                if let type = rules[index].typeGuard {
                    guard let eventType = event.lowercasedType, eventType.utf8.count == type.utf8.count, eventType == type else {
                        continue
                    }
                }
                switch holds(rules[index].conditions, event, context) {
                case true?: return .matched(ruleID: rules[index].ruleID, actions: rules[index].actions)
                case false?: continue
                case nil: return .needsPowerLevels
                }
            }
            return .noMatch
        }
    }

    /// All conditions hold (nil: undecided for want of power levels).
    static func holds(_ conditions: [PushCondition], _ event: PushEvent, _ context: PushContext) -> Bool? {
        for index in conditions.indices {
            switch holds(conditions[index], event, context) {
            case true?: continue
            case false?: return false
            case nil: return nil
            }
        }
        return true
    }

    static func holds(_ condition: PushCondition, _ event: PushEvent, _ context: PushContext) -> Bool? {
        switch condition {
        case .eventMatch(let key, let pattern):
            if key == "content.body" {
                guard event.property(key)?.stringValue != nil else { return false }
                return pattern.matchesWord(in: event.body)
            }
            guard let value = event.lowercasedString(key) else { return false }
            return pattern.matches(lowercased: value)
        case .eventPropertyIs(let key, let value):
            guard let property = event.property(key), isNonCompound(property) else { return false }
            return property == value
        case .eventPropertyContains(let key, let value):
            guard let array = event.property(key)?.arrayValue else { return false }
            return array.contains { isNonCompound($0) && $0 == value }
        case .containsDisplayName:
            guard let name = context.displayNameGlob, event.property("content.body")?.stringValue != nil else {
                return false
            }
            return name.matchesWord(in: event.body)
        case .roomMemberCount(let spec):
            guard let count = context.memberCount else { return false }
            return memberCount(count, satisfies: spec)
        case .senderNotificationPermission(let key):
            guard let permission = context.senderNotificationPermission else { return nil }
            return permission(key)
        case .unrecognised:
            return false
        }
    }

    /// Strings, integers, booleans and null (doubles are not canonical JSON).
    static func isNonCompound(_ value: JSON) -> Bool {
        switch value {
        case .string, .int, .bool, .null: return true
        default: return false
        }
    }

    /// `room_member_count`'s `is`: a decimal integer optionally prefixed by `==`, `<`, `>`,
    /// `>=` or `<=` (no prefix: `==`). A malformed value matches nothing.
    static func memberCount(_ count: Int, satisfies spec: String) -> Bool {
        // Read as bytes (this runs per recipient): the operator, then at most 18 digits.
        var utf8 = spec.utf8[...]
        var op: (less: Bool, equal: Bool, greater: Bool) = (false, true, false)
        if utf8.starts(with: "==".utf8) { utf8 = utf8.dropFirst(2) }
        else if utf8.starts(with: ">=".utf8) { op = (false, true, true); utf8 = utf8.dropFirst(2) }
        else if utf8.starts(with: "<=".utf8) { op = (true, true, false); utf8 = utf8.dropFirst(2) }
        else if utf8.first == UInt8(ascii: "<") { op = (true, false, false); utf8 = utf8.dropFirst() }
        else if utf8.first == UInt8(ascii: ">") { op = (false, false, true); utf8 = utf8.dropFirst() }
        guard !utf8.isEmpty, utf8.count <= 18 else { return false }
        var n = 0
        for byte in utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return false }
            n = n * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return (op.less && count < n) || (op.equal && count == n) || (op.greater && count > n)
    }
}

/// What push rules look at beyond the event, for one recipient.
public struct PushContext {
    /// The recipient's display name in the room (`contains_display_name`); nil: none.
    public var displayName: String? {
        didSet { displayNameGlob = PushContext.glob(displayName) }
    }
    /// The display name as a literal pattern, compiled once per recipient.
    private(set) var displayNameGlob: PushGlob?
    /// The room's joined member count (`room_member_count`); nil when the caller does not
    /// know it, and such conditions then do not hold.
    public var memberCount: Int?
    /// May the sender notify for the `notifications` key given (`sender_notification_permission`);
    /// nil when the caller has not read the power levels yet (the evaluation then returns
    /// `.needsPowerLevels`).
    public var senderNotificationPermission: ((String) -> Bool)?

    public init(displayName: String?, memberCount: Int?, senderNotificationPermission: ((String) -> Bool)? = nil) {
        self.displayName = displayName
        displayNameGlob = PushContext.glob(displayName)
        self.memberCount = memberCount
        self.senderNotificationPermission = senderNotificationPermission
    }

    private static func glob(_ name: String?) -> PushGlob? {
        guard let name, !name.isEmpty else { return nil }
        return PushGlob(name, literal: true)
    }
}
