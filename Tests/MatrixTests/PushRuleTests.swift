import Testing
@testable import Matrix

/// Client-server API "Push Rules": the conditions with the specification's own examples, and
/// the predefined rules.
@Suite("Push rules")
struct PushRuleTests {
    let bob = try! UserID(parsing: "@bob:example.org")

    func event(_ json: String) throws -> PushEvent { PushEvent(try JSON.parse(Array(json.utf8))) }

    func holds(_ condition: PushCondition, _ json: String, context: PushContext = PushContext(displayName: nil, memberCount: nil))
        throws -> Bool? {
        PushEvaluator.holds(condition, try event(json), context)
    }

    func message(_ content: String, type: String = "m.room.message", extra: String = "") -> String {
        #"{"type":"\#(type)","sender":"@alice:example.org","room_id":"!r:example.org","content":\#(content)\#(extra)}"#
    }

    /// The default rules' verdict for Bob, with a sender allowed to notify the room unless said.
    func outcome(_ json: String, displayName: String? = "Bob Smith", members: Int? = 5, mayNotify: Bool = true)
        throws -> PushEvaluator.Outcome {
        PushEvaluator.evaluate(.serverDefault(for: bob), try event(json),
                               PushContext(displayName: displayName, memberCount: members, senderNotificationPermission: { _ in mayNotify }))
    }

    @Test func eventMatchIsACaseInsensitiveGlobOverTheWholeValue() throws {
        let lunch = PushCondition.eventMatch(key: "content.topic", pattern: PushGlob("lunc?*"))
        func topic(_ value: String) -> String { #"{"type":"m.room.topic","state_key":"","content":{"topic":\#(value)}}"# }
        #expect(try holds(lunch, topic(#""Lunch plans""#)) == true)
        #expect(try holds(lunch, topic(#""LUNCH""#)) == true)
        #expect(try holds(lunch, topic(#"" lunch""#)) == false)
        #expect(try holds(lunch, topic(#""lunc""#)) == false)
        #expect(try holds(lunch, topic("null")) == false)
        // Absent or not a string: no match even for `*`.
        #expect(try holds(.eventMatch(key: "content.nothing", pattern: PushGlob("*")), topic(#""x""#)) == false)
        #expect(try holds(.eventMatch(key: "content", pattern: PushGlob("*")), topic(#""x""#)) == false)
    }

    @Test func bodyMatchesAnySubstringBetweenWordBoundaries() throws {
        let example = PushCondition.eventMatch(key: "content.body", pattern: PushGlob("ex*ple"))
        func body(_ text: String) -> String { #"{"type":"m.room.message","content":{"body":"\#(text)"}}"# }
        #expect(try holds(example, body("An example event.")) == true)
        #expect(try holds(example, body("exple")) == true)
        #expect(try holds(example, body("An exciting triple-whammy")) == true)
        #expect(try holds(example, body("An examples event")) == false)
        #expect(try holds(example, body("Anexample event")) == false)
        #expect(try holds(.eventMatch(key: "content.body", pattern: PushGlob("b?b")), body("hi BOB!")) == true)
    }

    @Test func eventPropertyIsMatchesExactValues() throws {
        let federate = PushCondition.eventPropertyIs(key: "content.m\\.federate", value: .bool(true))
        func create(_ value: String) -> String { #"{"type":"m.room.create","state_key":"","content":{"m.federate":\#(value)}}"# }
        #expect(try holds(federate, create("true")) == true)
        #expect(try holds(federate, create(#""true""#)) == false)
        #expect(try holds(federate, create("1")) == false)
        #expect(try holds(.eventPropertyIs(key: "content.m\\.federate", value: .null), create("null")) == true)
    }

    @Test func eventPropertyContainsLooksInArrays() throws {
        let json = ##"{"type":"m.room.canonical_alias","state_key":"","content":{"alias":"#somewhere:localhost","alt_aliases":["#somewhere:example.org","#myroom:example.com"]}}"##
        #expect(try holds(.eventPropertyContains(key: "content.alt_aliases", value: "#myroom:example.com"), json) == true)
        #expect(try holds(.eventPropertyContains(key: "content.alt_aliases", value: ":example.com"), json) == false)
        #expect(try holds(.eventPropertyContains(key: "content.alias", value: "#somewhere:localhost"), json) == false)
    }

    @Test func roomMemberCountComparesAsPrefixed() {
        #expect(PushEvaluator.memberCount(2, satisfies: "2"))
        #expect(PushEvaluator.memberCount(2, satisfies: "==2"))
        #expect(!PushEvaluator.memberCount(3, satisfies: "2"))
        #expect(PushEvaluator.memberCount(10, satisfies: "<=10"))
        #expect(!PushEvaluator.memberCount(10, satisfies: "<10"))
        #expect(PushEvaluator.memberCount(11, satisfies: ">10"))
        #expect(PushEvaluator.memberCount(10, satisfies: ">=10"))
        #expect(!PushEvaluator.memberCount(10, satisfies: "=<10"))
        #expect(!PushEvaluator.memberCount(10, satisfies: ""))
    }

    @Test func unrecognisedConditionsNeverMatch() throws {
        #expect(try holds(.unrecognised(["kind": "org.example.future"]), message(#"{"body":"x"}"#)) == false)
    }

    @Test func senderPermissionWaitsForPowerLevels() throws {
        let json = message(#"{"msgtype":"m.text","body":"x","m.mentions":{"room":true}}"#)
        #expect(PushEvaluator.evaluate(.serverDefault(for: bob), try event(json), PushContext(displayName: nil, memberCount: nil))
            == .needsPowerLevels)
        #expect(try outcome(json).actions.highlights)
        // Without the power, the message is an ordinary one.
        #expect(try outcome(json, mayNotify: false) == .matched(ruleID: ".m.rule.message", actions: [.notify]))
    }

    @Test func predefinedOverrideRules() throws {
        #expect(try outcome(message(#"{"msgtype":"m.notice","body":"Bob"}"#)) == .matched(ruleID: ".m.rule.suppress_notices", actions: []))
        let invite = #"{"type":"m.room.member","state_key":"@bob:example.org","sender":"@alice:example.org","content":{"membership":"invite"}}"#
        #expect(try outcome(invite) == .matched(ruleID: ".m.rule.invite_for_me", actions: [.notify, .sound("default")]))
        let otherInvite = #"{"type":"m.room.member","state_key":"@carol:example.org","content":{"membership":"invite"}}"#
        #expect(try outcome(otherInvite) == .matched(ruleID: ".m.rule.member_event", actions: []))
        let mention = try outcome(message(#"{"msgtype":"m.text","body":"x","m.mentions":{"user_ids":["@bob:example.org"]}}"#))
        #expect(mention == .matched(ruleID: ".m.rule.is_user_mention", actions: [.notify, .sound("default"), .highlight]))
        let tombstone = #"{"type":"m.room.tombstone","state_key":"","content":{"body":"moved","replacement_room":"!n:x"}}"#
        #expect(try outcome(tombstone) == .matched(ruleID: ".m.rule.tombstone", actions: [.notify, .highlight]))
        // No implicit state key: a tombstone that is not state does not match.
        #expect(try outcome(#"{"type":"m.room.tombstone","content":{}}"#) == .noMatch)
        #expect(try outcome(#"{"type":"m.reaction","content":{"m.relates_to":{"rel_type":"m.annotation","key":"👍"}}}"#)
            == .matched(ruleID: ".m.rule.reaction", actions: []))
        #expect(try outcome(#"{"type":"m.room.server_acl","state_key":"","content":{"allow":["*"]}}"#)
            == .matched(ruleID: ".m.rule.room.server_acl", actions: []))
        let edit = message(#"{"msgtype":"m.text","body":"* Bob","m.relates_to":{"rel_type":"m.replace","event_id":"$e"}}"#)
        #expect(try outcome(edit) == .matched(ruleID: ".m.rule.suppress_edits", actions: []))
    }

    @Test func legacyBodyMentionsUnlessTheEventHasMentions() throws {
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"ask bob smith"}"#)).actions.highlights)
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"Hey Bob, look"}"#))
            == .matched(ruleID: ".m.rule.contains_user_name", actions: [.notify, .sound("default"), .highlight]))
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"bobcat sighted"}"#)) == .matched(ruleID: ".m.rule.message", actions: [.notify]))
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"hello @room"}"#)) == .matched(ruleID: ".m.rule.roomnotif", actions: [.notify, .highlight]))
        // With `m.mentions` the body is not searched (MSC3952).
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"bob smith @room","m.mentions":{}}"#))
            == .matched(ruleID: ".m.rule.message", actions: [.notify]))
    }

    @Test func predefinedUnderrideRules() throws {
        #expect(try outcome(message(#"{"call_id":"c"}"#, type: "m.call.invite")) == .matched(ruleID: ".m.rule.call", actions: [.notify, .sound("ring")]))
        #expect(try outcome(message(#"{"ciphertext":"..."}"#, type: "m.room.encrypted"), members: 2)
            == .matched(ruleID: ".m.rule.encrypted_room_one_to_one", actions: [.notify, .sound("default")]))
        #expect(try outcome(message(#"{"ciphertext":"..."}"#, type: "m.room.encrypted")) == .matched(ruleID: ".m.rule.encrypted", actions: [.notify]))
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"hi"}"#), members: 2)
            == .matched(ruleID: ".m.rule.room_one_to_one", actions: [.notify, .sound("default")]))
        #expect(try outcome(message(#"{"msgtype":"m.text","body":"hi"}"#), members: nil) == .matched(ruleID: ".m.rule.message", actions: [.notify]))
        #expect(try outcome(#"{"type":"m.room.topic","state_key":"","content":{"topic":"t"}}"#) == .noMatch)
    }

    @Test func theMasterRuleSilencesEverythingWhenEnabled() throws {
        var rules = PushRuleSet.serverDefault(for: bob)
        #expect(rules.rules.first?.ruleID == ".m.rule.master" && rules.rules.first?.enabled == false)
        rules.rules[0].enabled = true
        let json = message(#"{"msgtype":"m.text","body":"bob","m.mentions":{"user_ids":["@bob:example.org"]}}"#)
        #expect(PushEvaluator.evaluate(rules, try event(json), PushContext(displayName: nil, memberCount: 2))
            == .matched(ruleID: ".m.rule.master", actions: []))
    }

    @Test func highlightTweakDefaultsToTrue() {
        #expect([PushAction.notify, .highlight].highlights)
        #expect(![PushAction.notify, .setTweak("highlight", value: .bool(false))].highlights)
        #expect(![PushAction.notify, .sound("default")].highlights)
        #expect(![PushAction]().notifies)
    }

    @Test func dotsInKeysAreEscapedInPaths() throws {
        let flat = try event(#"{"type":"t","content":{"m.mentions":{"room":true},"a\\b":1}}"#)
        #expect(flat.properties["content.m\\.mentions.room"] == .bool(true))
        #expect(flat.properties["content.a\\\\b"] == .int(1))
        #expect(flat.hasMentions)
    }
}
