@testable import App
import Matrix
import Testing

/// The default push rules that unread counts apply: mentions, display names, `@room`, notices.
@Suite("Unread count rules")
struct UnreadRulesTests {
    func outcome(_ content: String, user: String = "@bob:localhost", displayname: String? = "bob smith",
                 type: String = "m.room.message") throws -> UnreadCounts.Outcome {
        let matcher = UnreadCounts.Matcher(user: try UserID(parsing: user), displayname: displayname, shared: nil)
        return matcher.evaluate(type: type, sender: "@alice:localhost", bytes: Array("{\"type\":\"\(type)\",\"sender\":\"@alice:localhost\",\"content\":\(content)}".utf8),
                                eventPosition: 1)
    }

    @Test func bodyMatchesByWord() throws {
        #expect(try outcome(#"{"msgtype":"m.text","body":"Hey Bob, look"}"#) == .highlight)
        #expect(try outcome(#"{"msgtype":"m.text","body":"bobcat sighted"}"#) == .notify)
        #expect(try outcome(#"{"msgtype":"m.text","body":"ask BOB SMITH"}"#, user: "@b:localhost") == .highlight)
        #expect(try outcome(#"{"msgtype":"m.text","body":"bob smithers"}"#, user: "@b:localhost") == .notify)
    }

    @Test func roomMentionsNoticesAndIntentionalMentions() throws {
        #expect(try outcome(#"{"msgtype":"m.text","body":"hello @room"}"#) == .roomMention)
        #expect(try outcome(#"{"msgtype":"m.notice","body":"bob"}"#) == .none)
        #expect(try outcome(#"{"msgtype":"m.text","body":"bob","m.mentions":{}}"#) == .notify)
        #expect(try outcome(#"{"msgtype":"m.text","body":"x","m.mentions":{"user_ids":["@bob:localhost"]}}"#) == .highlight)
        #expect(try outcome(#"{"msgtype":"m.text","body":"x","m.mentions":{"room":true}}"#) == .roomMention)
        #expect(try outcome(#"{"ciphertext":"..."}"#, type: "m.room.encrypted") == .notify)
    }
}
