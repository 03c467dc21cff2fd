/// A user's push rules in the order they are checked: `.m.rule.master` first, then override,
/// content, room, sender and underride rules (client-server API "Push Rules"). The server
/// defaults (`serverDefault(for:)`), or a user's stored rules merged with them
/// (`init(json:user:)`, which puts the user's rules before the defaults of each kind).
public struct PushRuleSet: Sendable, Hashable {
    public var rules: [PushRule]

    public init(rules: [PushRule]) { self.rules = rules }

    /// The server-default rules for `user` ("Predefined Rules"), with the legacy mention rules
    /// that v1.17 removed from the specification (`.m.rule.contains_display_name`,
    /// `.m.rule.roomnotif`, `.m.rule.contains_user_name`): clients still rely on body mentions,
    /// and the evaluator skips them for events with `m.mentions` (MSC3952).
    public static func serverDefault(for user: UserID) -> PushRuleSet {
        // The rules are the same for everyone but three conditions: each user's set copies the
        // shared template (its rules' condition and action arrays are shared, not rebuilt) and
        // replaces those three, so a cached set costs about a kilobyte, not ten.
        var rules = template.rules
        let me = user.rawValue
        rules[UserSpecific.invite].conditions = inviteForMe(me)
        rules[UserSpecific.mention].conditions = [userMention(me)]
        rules[UserSpecific.userName].conditions = [userName(String(user.localpart))]
        return PushRuleSet(rules: rules)
    }

    private static func inviteForMe(_ me: String) -> [PushCondition] {
        [.eventMatch(key: "type", pattern: PushGlob(EventType.roomMember)),
         .eventMatch(key: "content.membership", pattern: PushGlob(MembershipState.invite.rawValue)),
         .eventMatch(key: "state_key", pattern: PushGlob(me, literal: true))]
    }

    private static func userMention(_ me: String) -> PushCondition {
        .eventPropertyContains(key: "content.m\\.mentions.user_ids", value: .string(me))
    }

    private static func userName(_ localpart: String) -> PushCondition {
        .eventMatch(key: "content.body", pattern: PushGlob(localpart, literal: true))
    }

    private static let template = build(me: "", localpart: "")

    /// Where the conditions that name the user sit in `template`.
    private enum UserSpecific {
        static let invite = index(of: ".m.rule.invite_for_me")
        static let mention = index(of: ".m.rule.is_user_mention")
        static let userName = index(of: ".m.rule.contains_user_name")

        static func index(of ruleID: String) -> Int {
            guard let index = template.rules.firstIndex(where: { $0.ruleID == ruleID }) else {
                preconditionFailure("no default rule \(ruleID)")
            }
            return index
        }
    }

    private static func build(me: String, localpart: String) -> PushRuleSet {
        func rule(_ id: String, _ kind: PushRule.Kind, enabled: Bool = true, _ conditions: [PushCondition],
                  _ actions: [PushAction]) -> PushRule {
            PushRule(id, kind: kind, isDefault: true, enabled: enabled, conditions: conditions, actions: actions)
        }
        func match(_ key: String, _ pattern: String) -> PushCondition { .eventMatch(key: key, pattern: PushGlob(pattern)) }
        func type(_ type: String) -> PushCondition { match("type", type) }
        let highlightWithSound: [PushAction] = [.notify, .sound("default"), .highlight]
        return PushRuleSet(rules: [
            rule(".m.rule.master", .override, enabled: false, [], []),
            rule(".m.rule.suppress_notices", .override, [match("content.msgtype", "m.notice")], []),
            rule(".m.rule.invite_for_me", .override, inviteForMe(me), [.notify, .sound("default")]),
            rule(".m.rule.member_event", .override, [type(EventType.roomMember)], []),
            rule(".m.rule.is_user_mention", .override,
                 [userMention(me)], highlightWithSound),
            rule(".m.rule.contains_display_name", .override, [.containsDisplayName], highlightWithSound),
            rule(".m.rule.is_room_mention", .override,
                 [.eventPropertyIs(key: "content.m\\.mentions.room", value: .bool(true)),
                  .senderNotificationPermission(key: "room")], [.notify, .highlight]),
            rule(".m.rule.roomnotif", .override,
                 [match("content.body", "@room"), .senderNotificationPermission(key: "room")], [.notify, .highlight]),
            rule(".m.rule.tombstone", .override, [type(EventType.roomTombstone), match("state_key", "")], [.notify, .highlight]),
            rule(".m.rule.reaction", .override, [type(EventType.reaction)], []),
            rule(".m.rule.room.server_acl", .override, [type(EventType.roomServerACL), match("state_key", "")], []),
            rule(".m.rule.suppress_edits", .override,
                 [.eventPropertyIs(key: "content.m\\.relates_to.rel_type", value: .string(RelationType.replace))], []),
            // MSC3930 (polls, unstable types), as Synapse serves them with polls enabled.
            rule(".org.matrix.msc3930.rule.poll_response", .override, [type(PushRuleSet.pollResponse)], []),
            PushRule(".m.rule.contains_user_name", kind: .content, isDefault: true,
                     conditions: [userName(localpart)],
                     actions: highlightWithSound),
            rule(".m.rule.call", .underride, [type(EventType.callInvite)], [.notify, .sound("ring")]),
            rule(".m.rule.encrypted_room_one_to_one", .underride, [.roomMemberCount(is: "2"), type(EventType.roomEncrypted)],
                 [.notify, .sound("default")]),
            rule(".m.rule.room_one_to_one", .underride, [.roomMemberCount(is: "2"), type(EventType.roomMessage)],
                 [.notify, .sound("default")]),
            rule(".m.rule.message", .underride, [type(EventType.roomMessage)], [.notify]),
            rule(".m.rule.encrypted", .underride, [type(EventType.roomEncrypted)], [.notify]),
            // Not in the specification; Synapse serves them (Element's Jitsi widgets, MSC3930 polls).
            rule(".im.vector.jitsi", .underride,
                 [type("im.vector.modular.widgets"), match("content.type", "jitsi"), match("state_key", "*")], [.notify]),
            rule(".org.matrix.msc3930.rule.poll_start_one_to_one", .underride,
                 [.roomMemberCount(is: "2"), type(PushRuleSet.pollStart)], [.notify, .sound("default")]),
            rule(".org.matrix.msc3930.rule.poll_start", .underride, [type(PushRuleSet.pollStart)], [.notify]),
            rule(".org.matrix.msc3930.rule.poll_end_one_to_one", .underride,
                 [.roomMemberCount(is: "2"), type(PushRuleSet.pollEnd)], [.notify, .sound("default")]),
            rule(".org.matrix.msc3930.rule.poll_end", .underride, [type(PushRuleSet.pollEnd)], [.notify]),
        ])
    }

    static let pollStart = "org.matrix.msc3381.poll.start"
    static let pollResponse = "org.matrix.msc3381.poll.response"
    static let pollEnd = "org.matrix.msc3381.poll.end"

    /// Rules whose conditions look for mentions in the body; they do not apply to events with
    /// `m.mentions` (MSC3952).
    public static let legacyMentionRules: Set<String> = [".m.rule.contains_display_name", ".m.rule.roomnotif",
                                                          ".m.rule.contains_user_name"]
}
