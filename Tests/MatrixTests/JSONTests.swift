import Testing
@testable import Matrix

func canonical(_ text: String) throws -> String {
    String(decoding: try JSON.parse(text).canonicalEncoded(), as: UTF8.self)
}

// Appendix "Canonical JSON", Examples: every pair, byte for byte.
@Test(arguments: [
    ("{}", "{}"),
    ("{\n    \"one\": 1,\n    \"two\": \"Two\"\n}", #"{"one":1,"two":"Two"}"#),
    ("{\n    \"b\": \"2\",\n    \"a\": \"1\"\n}", #"{"a":"1","b":"2"}"#),
    (#"{"b":"2","a":"1"}"#, #"{"a":"1","b":"2"}"#),
    ("""
    {
        "auth": {
            "success": true,
            "mxid": "@john.doe:example.com",
            "profile": {
                "display_name": "John Doe",
                "three_pids": [
                    {
                        "medium": "email",
                        "address": "john.doe@example.org"
                    },
                    {
                        "medium": "msisdn",
                        "address": "123456789"
                    }
                ]
            }
        }
    }
    """, #"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#),
    ("{\n    \"a\": \"日本語\"\n}", #"{"a":"日本語"}"#),
    ("{\n    \"本\": 2,\n    \"日\": 1\n}", #"{"日":1,"本":2}"#),
    ("{\n    \"a\": \"\\u65E5\"\n}", #"{"a":"日"}"#),
    ("{\n    \"a\": null\n}", #"{"a":null}"#),
    ("{\n    \"a\": -0,\n    \"b\": 1e10\n}", #"{"a":0,"b":10000000000}"#),
])
func canonicalJSONAppendixExamples(input: String, expected: String) throws {
    #expect(try canonical(input) == expected)
}

@Test func canonicalEscapesFollowTheGrammar() throws {
    // \b \t \n \f \r \" \\ get short escapes, other controls \u00xx lowercase, "/" and DEL raw.
    let input = #"["\u0008\u0009\u000a\u000c\u000d\"\\\/\u0001\u001f\u007f\u00e9"]"#
    #expect(try canonical(input) == "[\"\\b\\t\\n\\f\\r\\\"\\\\/\\u0001\\u001f\u{7f}é\"]")
}

@Test func canonicalKeysSortByCodePointNotByUnicodeCollation() throws {
    // U+FF21 (3 UTF-8 bytes) sorts after U+00E9 (2 bytes) and after "z"; "Z" before "a".
    #expect(try canonical(#"{"Ａ":1,"é":2,"z":3,"Z":4,"a":5,"😀":6}"#) == #"{"Z":4,"a":5,"z":3,"é":2,"Ａ":1,"😀":6}"#)
}

@Test func canonicalRejectsFloatsAndOutOfRangeIntegers() throws {
    #expect(throws: MatrixError.self) { try canonical("[1.5]") }
    #expect(throws: MatrixError.self) { try canonical("[9007199254740992]") }
    #expect(throws: MatrixError.self) { try canonical("[-9007199254740992]") }
    #expect(try canonical("[9007199254740991,-9007199254740991]") == "[9007199254740991,-9007199254740991]")
    // Lenient mode for room versions 1-5.
    let big = try JSON.parse("[9007199254740993]").canonicalEncoded(strict: false)
    #expect(String(decoding: big, as: UTF8.self) == "[9007199254740993]")
}

@Test func parsesScalarsExactly() throws {
    #expect(try JSON.parse("9223372036854775807") == .int(Int64.max))
    #expect(try JSON.parse("-9223372036854775808") == .int(Int64.min))
    #expect(try JSON.parse("9223372036854775808") == .double(9223372036854775808))
    #expect(try JSON.parse(" -12 ") == .int(-12))
    #expect(try JSON.parse("1.25e2") == .double(125))
    #expect(try JSON.parse("true") == .bool(true))
    #expect(try JSON.parse("null") == .null)
    #expect(try JSON.parse(#""\ud83d\ude00""#) == .string("😀"))
    #expect(try JSON.parse(#""a\u0000b""#) == .string("a\u{0}b"))
}

@Test(arguments: [
    "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "-", "1.", ".5", "1e", "+1",
    "tru", "nul", "[1 2]", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
    "\"a\nb\"", "1 2", "{\"a\":1,\"a\":2}", "[1]]", "NaN", "Infinity", "1e999", "\u{FEFF}{}",
])
func rejectsMalformedJSON(_ input: String) {
    #expect(errorCode { _ = try JSON.parse(input) } == .notJSON)
}

@Test func rejectsInvalidUTF8() throws {
    #expect(errorCode { _ = try JSON.parse([0x22, 0xC3, 0x28, 0x22] as [UInt8]) } == .notJSON)
    #expect(errorCode { _ = try JSON.parse([0x22, 0xED, 0xA0, 0x80, 0x22] as [UInt8]) } == .notJSON) // CESU surrogate
    #expect(try JSON.parse([0x22, 0xC3, 0xA9, 0x22] as [UInt8]) == .string("é"))
}

@Test func depthLimitIsEnforced() throws {
    let ok = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
    #expect(throws: Never.self) { _ = try JSON.parse(ok) }
    let deep = String(repeating: "[", count: 257) + String(repeating: "]", count: 257)
    #expect(errorCode { _ = try JSON.parse(deep) } == .notJSON)
    let veryDeep = String(repeating: "{\"a\":", count: 100_000)
    #expect(errorCode { _ = try JSON.parse(veryDeep) } == .notJSON)
}

@Test func compactEncodingRoundTrips() throws {
    let text = #"{"a":[1,-2,true,false,null,"x\"y",{"b":{}}],"c":1.5,"d":""}"#
    let value = try JSON.parse(text)
    #expect(value.encodedString == text)
    #expect(try JSON.parse(value.encoded()) == value)
    #expect(value["a"]?[0]?.intValue == 1)
    #expect(value["a"]?[5]?.stringValue == "x\"y")
    #expect(value["c"]?.doubleValue == 1.5)
    #expect(value["missing"] == nil)
    var m = value
    m["e"] = "new"
    #expect(m["e"]?.stringValue == "new")
}

/// The error code thrown by `body`, or nil if it did not throw a MatrixError.
func errorCode(_ body: () throws -> Void) -> MatrixError.Code? {
    do { try body() } catch let e as MatrixError { return e.code } catch { return nil }
    return nil
}

@Test func unicodeEdgeCases() throws {
    // Highest scalar, surrogate pair boundaries, NUL and DEL in keys; all survive canonical encoding.
    let text = #"{"\u0000k":"\udbff\udfff","\u007f":"\ud800\udc00","é":"\uffff"}"#
    let v = try JSON.parse(text)
    #expect(v["\u{0}k"]?.stringValue == "\u{10FFFF}")
    #expect(v["\u{7f}"]?.stringValue == "\u{10000}")
    #expect(v["é"]?.stringValue == "\u{FFFF}")
    let canonical = String(decoding: try v.canonicalEncoded(), as: UTF8.self)
    #expect(canonical == "{\"\\u0000k\":\"\u{10FFFF}\",\"\u{7f}\":\"\u{10000}\",\"é\":\"\u{FFFF}\"}")
    #expect(try JSON.parse(canonical) == v)
    // Raw (unescaped) 4-byte UTF-8 and overlong / out-of-range encodings.
    #expect(try JSON.parse([0x22, 0xF0, 0x9F, 0x98, 0x80, 0x22] as [UInt8]) == .string("😀"))
    #expect(errorCode { _ = try JSON.parse([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22] as [UInt8]) } == .notJSON)
    #expect(errorCode { _ = try JSON.parse([0x22, 0xC0, 0xAF, 0x22] as [UInt8]) } == .notJSON)
    // Escapes mixed with raw UTF-8 in one string.
    #expect(try JSON.parse(#""日\n本\u8a9e""#) == .string("日\n本語"))
}

@Test func parsesFromSlicesAndLongDocuments() throws {
    let bytes = Array("xx[1,2,3]yy".utf8)
    #expect(try JSON.parse(bytes[2..<9]) == [1, 2, 3])
    var big: [JSON] = []
    for i in 0..<10_000 { big.append(["i": .int(Int64(i)), "s": .string(String(repeating: "a", count: i % 50))]) }
    let doc = JSON.array(big)
    #expect(try JSON.parse(doc.encoded()) == doc)
    #expect(try JSON.parse(try doc.canonicalEncoded()) == doc)
}

@Test func duplicateKeysRejectedUnlessAskedForLastWins() throws {
    #expect(errorCode { _ = try JSON.parse(#"{"a":1,"a":2}"#) } == .notJSON)
    #expect(try JSON.parse(#"{"a":1,"b":{"a":3},"a":2}"#, options: JSONParseOptions(duplicateKeysLastWins: true))
            == ["a": 2, "b": ["a": 3]])
}
