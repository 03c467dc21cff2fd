import Testing
@testable import Matrix

/// A user's stored `m.push_rules` read back as a rule set: merged with the server defaults,
/// in Synapse's order, malformed parts skipped.
@Suite("Push rule sets from JSON")
struct PushRuleSetJSONTests {
    let bob = try! UserID(parsing: "@bob:example.org")

    func parse(_ text: String) throws -> [String: JSON] {
        try #require(try JSON.parse(Array(text.utf8)).objectValue)
    }

    func ids(_ set: PushRuleSet, _ kind: PushRule.Kind? = nil) -> [String] {
        set.rules.filter { kind == nil || $0.kind == kind }.map(\.ruleID)
    }

    @Test func nothingStoredIsTheServerDefaults() {
        #expect(PushRuleSet(json: [:], user: bob) == .serverDefault(for: bob))
    }

    @Test func theDefaultsRoundTripThroughTheirClientForm() throws {
        let defaults = PushRuleSet.serverDefault(for: bob)
        #expect(PushRuleSet(json: defaults.clientJSON, user: bob) == defaults)
        let override = try #require(defaults.clientJSON["override"]?.arrayValue)
        #expect(override.first?["rule_id"] == ".m.rule.master" && override.first?["default"] == true)
        let invite = try #require(override.first { $0["rule_id"] == ".m.rule.invite_for_me" })
        #expect(invite["conditions"]?[2] == ["kind": "event_match", "key": "state_key", "pattern": "@bob:example.org"])
        #expect(defaults.clientJSON["content"]?[0]?["pattern"] == "bob")
    }

    /// The specification's predefined rules, in its order, then Synapse's (legacy mentions,
    /// Jitsi, MSC3930 polls) where Synapse puts them.
    @Test func predefinedRulesAreTheSpecificationsInOrder() {
        let defaults = PushRuleSet.serverDefault(for: bob)
        #expect(ids(defaults, .override) == [
            ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
            ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
            ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits",
            ".org.matrix.msc3930.rule.poll_response",
        ])
        #expect(ids(defaults, .content) == [".m.rule.contains_user_name"])
        #expect(ids(defaults, .underride) == [
            ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
            ".m.rule.encrypted", ".im.vector.jitsi", ".org.matrix.msc3930.rule.poll_start_one_to_one",
            ".org.matrix.msc3930.rule.poll_start", ".org.matrix.msc3930.rule.poll_end_one_to_one",
            ".org.matrix.msc3930.rule.poll_end",
        ])
        // Every default is a default, and only the master rule starts disabled.
        #expect(defaults.rules.allSatisfy { $0.isDefault && $0.ruleID.hasPrefix(".") })
        #expect(defaults.rules.filter { !$0.enabled }.map(\.ruleID) == [".m.rule.master"])
    }

    @Test func userRulesComeBeforeTheDefaultsOfTheirKind() throws {
        let stored = try parse(#"""
        {"override":[
            {"rule_id":".m.rule.suppress_notices","default":true,"enabled":false,"actions":["notify"]},
            {"rule_id":"mine","default":false,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"x.y"}],
             "actions":["notify"]},
            {"rule_id":".m.rule.master","default":true,"enabled":true,"actions":[]}],
         "content":[{"rule_id":"cake","pattern":"cake*lie","actions":["notify",{"set_tweak":"highlight"}]}],
         "room":[{"rule_id":"!quiet:example.org","actions":["dont_notify"]}],
         "sender":[{"rule_id":"@loud:example.org","enabled":false,"actions":["notify",{"set_tweak":"sound","value":"ping"}]}],
         "underride":[{"rule_id":"late","conditions":[],"actions":["coalesce","notify"]}]}
        """#)
        let set = PushRuleSet(json: stored, user: bob)
        let all = ids(set)
        #expect(all.prefix(3) == [".m.rule.master", "mine", ".m.rule.suppress_notices"])
        #expect(all.firstIndex(of: "cake")! < all.firstIndex(of: ".m.rule.contains_user_name")!)
        #expect(all.firstIndex(of: ".m.rule.contains_user_name")! < all.firstIndex(of: "!quiet:example.org")!)
        #expect(all.firstIndex(of: "!quiet:example.org")! < all.firstIndex(of: "@loud:example.org")!)
        #expect(all.firstIndex(of: "@loud:example.org")! < all.firstIndex(of: "late")!)
        #expect(all.firstIndex(of: "late")! < all.firstIndex(of: ".m.rule.call")!)
        let byID = Dictionary(uniqueKeysWithValues: set.rules.map { ($0.ruleID, $0) })
        // Defaults take only `enabled` and `actions` from the stored copy.
        #expect(byID[".m.rule.master"]?.enabled == true)
        #expect(byID[".m.rule.suppress_notices"]?.enabled == false)
        #expect(byID[".m.rule.suppress_notices"]?.actions == [.notify])
        #expect(byID[".m.rule.suppress_notices"]?.conditions == PushRuleSet.serverDefault(for: bob).rules[1].conditions)
        // Historical actions are dropped: `dont_notify` is an empty list.
        #expect(byID["!quiet:example.org"]?.actions == [])
        #expect(byID["late"]?.actions == [.notify])
        #expect(byID["@loud:example.org"]?.enabled == false)
        #expect(byID["@loud:example.org"]?.actions == [.notify, .sound("ping")])
        #expect(byID["!quiet:example.org"]?.conditions == [.eventMatch(key: "room_id", pattern: PushGlob("!quiet:example.org", literal: true))])
        #expect(byID["cake"]?.conditions == [.eventMatch(key: "content.body", pattern: PushGlob("cake*lie"))])
        // Round trip through the client form.
        #expect(PushRuleSet(json: set.clientJSON, user: bob) == set)
    }

    @Test func malformedRulesAreSkippedNotTrusted() throws {
        let stored = try parse(#"""
        {"override":[
            7, "x", null,
            {"default":false,"conditions":[],"actions":["notify"]},
            {"rule_id":"","conditions":[],"actions":["notify"]},
            {"rule_id":"noconditions","actions":["notify"]},
            {"rule_id":"noactions","conditions":[]},
            {"rule_id":"badactions","conditions":[],"actions":"notify"},
            {"rule_id":".m.rule.nonexistent","conditions":[],"actions":["notify"]},
            {"rule_id":".m.rule.call","actions":[]},
            {"rule_id":"twice","conditions":[{"kind":"event_match","key":"type","pattern":"a"}],"actions":["notify"]},
            {"rule_id":"twice","conditions":[],"actions":["notify"]}],
         "content":[{"rule_id":"nopattern","actions":["notify"]},{"rule_id":"badpattern","pattern":5,"actions":[]}],
         "room":"not a list",
         "postcontent":[{"rule_id":"x","actions":["notify"]}]}
        """#)
        let set = PushRuleSet(json: stored, user: bob)
        let defaults = PushRuleSet.serverDefault(for: bob)
        #expect(ids(set) == [".m.rule.master", "twice"] + ids(defaults).dropFirst())
        // `.m.rule.call` is an underride rule: a stored copy under override changes nothing.
        #expect(set.rules.first { $0.ruleID == ".m.rule.call" }?.actions == [.notify, .sound("ring")])
        #expect(set.rules[1].conditions == [.eventMatch(key: "type", pattern: PushGlob("a"))])
    }

    @Test func unreadableConditionsAreKeptAndNeverMatch() throws {
        let stored = try parse(#"""
        {"override":[{"rule_id":"future","actions":["notify"],"conditions":[
            {"kind":"org.example.future","key":"x","extra":[1,2]},
            {"kind":"event_match","key":"type"},
            {"kind":"event_property_is","key":"content.x","value":{"compound":true}},
            {"kind":"event_property_is","key":"content.x","value":9007199254740992},
            {"kind":"room_member_count","is":2},
            {"kind":"sender_notification_permission"},
            "not an object"]}]}
        """#)
        let set = PushRuleSet(json: stored, user: bob)
        let rule = try #require(set.rules.first { $0.ruleID == "future" })
        #expect(rule.conditions.count == 7)
        for condition in rule.conditions {
            guard case .unrecognised = condition else { Issue.record("read: \(condition)"); continue }
        }
        // Clients read them back as written.
        let written = try #require(stored["override"]?[0]?["conditions"])
        #expect(rule.clientJSON["conditions"] == written)
        // The rule never matches; the defaults decide.
        let event = PushEvent(try JSON.parse(Array(#"{"type":"m.room.message","sender":"@a:x","content":{"body":"hi","x":1}}"#.utf8)))
        #expect(PushEvaluator.evaluate(set, event, PushContext(displayName: nil, memberCount: 5))
            == .matched(ruleID: ".m.rule.message", actions: [.notify]))
    }

    @Test func everyConditionKindIsRead() throws {
        let stored = try parse(#"""
        {"underride":[{"rule_id":"all","actions":["notify"],"conditions":[
            {"kind":"event_match","key":"content.body","pattern":"ex*ple"},
            {"kind":"event_property_is","key":"content.m\\.federate","value":true},
            {"kind":"event_property_contains","key":"content.alt_aliases","value":"#a:x"},
            {"kind":"contains_display_name"},
            {"kind":"room_member_count","is":">=3"},
            {"kind":"sender_notification_permission","key":"room"}]}]}
        """#)
        let rule = try #require(PushRuleSet(json: stored, user: bob).rules.first { $0.ruleID == "all" })
        #expect(rule.conditions == [
            .eventMatch(key: "content.body", pattern: PushGlob("ex*ple")),
            .eventPropertyIs(key: "content.m\\.federate", value: .bool(true)),
            .eventPropertyContains(key: "content.alt_aliases", value: "#a:x"),
            .containsDisplayName,
            .roomMemberCount(is: ">=3"),
            .senderNotificationPermission(key: "room"),
        ])
    }

    @Test func aUserRoomRuleMutesTheRoom() throws {
        let stored = try parse(#"{"room":[{"rule_id":"!muted:example.org","actions":[]}]}"#)
        let set = PushRuleSet(json: stored, user: bob)
        func outcome(_ room: String) throws -> PushEvaluator.Outcome {
            let json = #"{"type":"m.room.message","sender":"@a:example.org","room_id":"\#(room)","content":{"msgtype":"m.text","body":"hi"}}"#
            return PushEvaluator.evaluate(set, PushEvent(try JSON.parse(Array(json.utf8))), PushContext(displayName: nil, memberCount: 5))
        }
        #expect(try outcome("!muted:example.org") == .matched(ruleID: "!muted:example.org", actions: []))
        #expect(try outcome("!other:example.org") == .matched(ruleID: ".m.rule.message", actions: [.notify]))
        // A mention overrides the room rule (override rules come first).
        let mention = #"{"type":"m.room.message","sender":"@a:example.org","room_id":"!muted:example.org","content":{"body":"x","m.mentions":{"user_ids":["@bob:example.org"]}}}"#
        #expect(PushEvaluator.evaluate(set, PushEvent(try JSON.parse(Array(mention.utf8))), PushContext(displayName: nil, memberCount: 5))
            .actions.highlights)
    }

    /// Appendix "Dot-separated property paths": `\.` and `\\` escape; any other backslash is literal.
    @Test func propertyPathsFollowTheAppendixEscapes() throws {
        func rule(_ key: String) throws -> PushRuleSet {
            let condition: JSON = ["kind": "event_property_is", "key": .string(key), "value": true]
            return PushRuleSet(json: ["override": [["rule_id": "r", "conditions": [condition], "actions": []]]], user: bob)
        }
        func matches(_ key: String, _ content: String) throws -> Bool {
            let event = PushEvent(try JSON.parse(Array(#"{"type":"t","sender":"@a:x","content":\#(content)}"#.utf8)))
            return PushEvaluator.evaluate(try rule(key), event, PushContext(displayName: nil, memberCount: 5))
                == .matched(ruleID: "r", actions: [])
        }
        // The appendix's examples: `m.relates_to` and `m\foo` in `content`.
        #expect(try matches(#"content.m\.relates_to"#, #"{"m.relates_to":true}"#))
        #expect(try !matches(#"content.m\.relates_to"#, #"{"m":{"relates_to":true}}"#))
        #expect(try matches(#"content.m.relates_to"#, #"{"m":{"relates_to":true}}"#))
        #expect(try matches(#"content.m\\foo"#, #"{"m\\foo":true}"#))
        // Another escape is a literal backslash: `\x` names `\x`.
        #expect(try matches(#"content.a\xb"#, #"{"a\\xb":true}"#))
        #expect(PushCondition.canonicalPath(#"content.a\xb"#) == #"content.a\\xb"#)
        #expect(PushCondition.canonicalPath(#"content.m\.x\\y"#) == #"content.m\.x\\y"#)
        #expect(PushCondition.canonicalPath(#"trailing\"#) == #"trailing\\"#)
        #expect(PushCondition.canonicalPath("plain.path") == "plain.path")
    }

    @Test func overlongPatternsAreNotRead() {
        let long = String(repeating: "*a", count: PushCondition.maxPatternBytes)
        guard case .unrecognised = PushCondition(json: ["kind": "event_match", "key": "content.body", "pattern": .string(long)]) else {
            Issue.record("an overlong pattern was read")
            return
        }
    }

    @Test func globsWholeAndByWord() {
        func whole(_ pattern: String, _ value: String) -> Bool { PushGlob(pattern).matches(lowercased: value.lowercased()) }
        func word(_ pattern: String, _ body: String) -> Bool {
            PushGlob(pattern).matchesWord(in: Array(body.lowercased().unicodeScalars))
        }
        #expect(whole("*", "") && whole("*", "anything") && whole("**a**", "a") && whole("a*b*c", "aXbYc"))
        #expect(!whole("a*b*c", "aXbY") && !whole("?", "") && whole("??", "ab") && !whole("??", "abc"))
        #expect(whole("m.room.*", "m.room.message") && !whole("m.room.*", "m.roo"))
        // By word: boundaries on both sides, a glob may span words, the scan restarts after a miss.
        #expect(word("deploy*3", "we deploy build 3 tonight") && !word("deploy*3", "we deploy build 34 tonight"))
        #expect(word("deploy*3", "redeploy 3, deploy 3") && !word("deploy*3", "redeploy 3"))
        #expect(word("*ing", "nothing doing") && word("?at", "the cat") && !word("?at", "the at"))
        #expect(word("a*", "a") && !word("a?", "a") && word("", "") == false)
        // Patterns past 62 scalars take the array automaton; same answers.
        let long = String(repeating: "ab", count: 40)
        #expect(word(long + "*z", "x " + long + " y z") && !word(long + "*z", "x " + long + " y"))
        #expect(whole(String(repeating: "?", count: 70), String(repeating: "q", count: 70)))
        #expect(!whole(String(repeating: "?", count: 70), String(repeating: "q", count: 69)))
        // A hostile glob stays linear (this would not finish if it backtracked).
        let hostile = String(repeating: "*a", count: 30) + "b"
        #expect(!word(hostile, String(repeating: "a", count: 20_000)))
    }

    @Test func memberCountsAreBoundedDecimals() {
        #expect(PushEvaluator.memberCount(5, satisfies: "<6") && !PushEvaluator.memberCount(6, satisfies: "<6"))
        #expect(!PushEvaluator.memberCount(5, satisfies: "99999999999999999999"))
        #expect(!PushEvaluator.memberCount(5, satisfies: "5 ") && !PushEvaluator.memberCount(5, satisfies: "+5"))
        #expect(!PushEvaluator.memberCount(5, satisfies: "==") && !PushEvaluator.memberCount(5, satisfies: "=5"))
    }
}
