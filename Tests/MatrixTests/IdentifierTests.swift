import Testing
@testable import Matrix

@Test(arguments: ["matrix.org", "matrix.org:8888", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]",
                  "[1234:5678::abcd]:5678", "localhost", "a-b.c", "[::1]", "[::]", "[1:2:3:4:5:6:7:8]",
                  "[::ffff:1.2.3.4]", "EXAMPLE.org"])
func validServerNames(_ s: String) throws {
    #expect(try ServerName(parsing: s).rawValue == s)
}

@Test(arguments: ["", "matrix.org:", "matrix.org:123456", "matrix.org:70000", "mat rix.org", "m_x.org", "1.2.3.256",
                  "1.2.3", "[1234:5678::abcd", "[12345::]", "[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[g::1]",
                  "host:port", ":80", "ex\u{e9}.org", String(repeating: "a", count: 256)])
func invalidServerNames(_ s: String) {
    #expect(errorCode { _ = try ServerName(parsing: s) } == .invalidParam)
}

@Test func serverNamePortAndHost() throws {
    let s = try ServerName(parsing: "[::1]:8448")
    #expect(s.host == "[::1]")
    #expect(s.port == 8448)
    #expect(try ServerName(parsing: "example.org").port == nil)
}

@Test func userIDsStrictAndHistorical() throws {
    let u = try UserID(parsing: "@alice:example.org:8448")
    #expect(u.localpart == "alice")
    #expect(u.serverName.port == 8448)
    #expect(u.isStrictlyValid)
    // Historical grammar: accepted, but not compliant/strict.
    let h = try UserID(parsing: "@Alice Smith:example.org")
    #expect(!h.isStrictlyValid)
    #expect(!h.isCompliant)
    #expect(try UserID(parsing: "@:example.org").isCompliant == false)
    #expect(try UserID(parsing: "@Bob!:example.org").isCompliant)
    #expect(errorCode { _ = try UserID(parsing: "alice:example.org") } == .invalidParam)
    #expect(errorCode { _ = try UserID(parsing: "@alice") } == .invalidParam)
    #expect(errorCode { _ = try UserID(parsing: "@alice:bad_host") } == .invalidParam)
    #expect(errorCode { _ = try UserID(parsing: "@a\u{0}b:example.org") } == .invalidParam)
    #expect(errorCode { _ = try UserID(parsing: "@" + String(repeating: "a", count: 250) + ":example.org") } == .invalidParam)
    // New local users: strict grammar, M_INVALID_USERNAME.
    #expect(try UserID(localpart: "alice.b-c_d=e/f+g", serverName: ServerName(parsing: "example.org")).rawValue
            == "@alice.b-c_d=e/f+g:example.org")
    #expect(errorCode { _ = try UserID(localpart: "Alice", serverName: ServerName(parsing: "example.org")) } == .invalidUsername)
    #expect(errorCode { _ = try UserID(localpart: "", serverName: ServerName(parsing: "example.org")) } == .invalidUsername)
    #expect(errorCode { _ = try UserID(localpart: "a:b", serverName: ServerName(parsing: "example.org")) } == .invalidUsername)
}

@Test func roomIDsBothFormats() throws {
    let old = try RoomID(parsing: "!abc:example.org")
    #expect(old.serverName?.rawValue == "example.org")
    #expect(!old.isHashBased)
    let hash = "!" + String(repeating: "A", count: 42) + "_"
    let v12 = try RoomID(parsing: hash)
    #expect(v12.isHashBased)
    #expect(v12.createEventID?.rawValue == "$" + hash.dropFirst())
    #expect(errorCode { _ = try RoomID(parsing: "!short") } == .invalidParam)
    #expect(errorCode { _ = try RoomID(parsing: "#abc:example.org") } == .invalidParam)
    #expect(errorCode { _ = try RoomID(parsing: "!:example.org") } == .invalidParam)
}

@Test func eventIDFormatsPerRoomVersion() throws {
    let v1 = try EventID(parsing: "$abc:example.org")
    let v3 = try EventID(parsing: "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk")
    let v4 = try EventID(parsing: "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg")
    #expect(v1.isValid(for: .v1) && !v1.isValid(for: .v4))
    #expect(v3.isValid(for: .v3) && !v3.isValid(for: .v4))
    #expect(v4.isValid(for: .v4) && v4.isValid(for: .v12) && !v4.isValid(for: .v3))
    #expect(errorCode { _ = try EventID(parsing: "abc") } == .invalidParam)
    #expect(errorCode { _ = try EventID(parsing: "$") } == .invalidParam)
}

@Test func aliasesDevicesAndMXC() throws {
    let a = try RoomAlias(parsing: "#room:example.org")
    #expect(a.localpart == "room")
    #expect(errorCode { _ = try RoomAlias(parsing: "#:example.org") } == .invalidParam)
    #expect(errorCode { _ = try RoomAlias(parsing: "room:example.org") } == .invalidParam)
    #expect(try DeviceID(parsing: "ABCDEF").rawValue == "ABCDEF")
    #expect(errorCode { _ = try DeviceID(parsing: "") } == .invalidParam)
    #expect(DeviceID.generate().rawValue.count == 10)
    let m = try MXCURI(parsing: "mxc://example.org:8448/AbC_-1")
    #expect(m.serverName.rawValue == "example.org:8448" && m.mediaID == "AbC_-1")
    #expect(m.description == "mxc://example.org:8448/AbC_-1")
    #expect(errorCode { _ = try MXCURI(parsing: "mxc://example.org/a/b") } == .invalidParam)
    #expect(errorCode { _ = try MXCURI(parsing: "http://example.org/a") } == .invalidParam)
}

@Test func roomVersionTable() throws {
    #expect(RoomVersion.all.map(\.id) == (1...12).map(String.init))
    #expect(RoomVersion.v1.stateResolution == .v1 && RoomVersion.v2.stateResolution == .v2)
    #expect(RoomVersion.v12.stateResolution == .v2_1)
    #expect(RoomVersion.v2.eventIDFormat == .opaqueWithDomain && RoomVersion.v3.eventIDFormat == .referenceHashBase64)
    #expect(RoomVersion.v4.eventIDFormat == .referenceHashURLSafe)
    #expect(RoomVersion.v5.specialCaseAliasesAuth && !RoomVersion.v6.specialCaseAliasesAuth)
    #expect(!RoomVersion.v9.integerPowerLevels && RoomVersion.v10.integerPowerLevels)
    #expect(RoomVersion.v10.createHasCreator && !RoomVersion.v11.createHasCreator)
    #expect(!RoomVersion.v11.privilegedCreators && RoomVersion.v12.privilegedCreators && RoomVersion.v12.hashBasedRoomIDs)
    #expect(!RoomVersion.v6.supportedJoinRules.contains("knock") && RoomVersion.v7.supportedJoinRules.contains("knock"))
    #expect(RoomVersion.v8.supportedJoinRules.contains("restricted") && !RoomVersion.v9.supportedJoinRules.contains("knock_restricted"))
    #expect(RoomVersion.v10.supportedJoinRules.contains("knock_restricted"))
    #expect(RoomVersion.recommendedDefault.id == "12")
    #expect(errorCode { _ = try RoomVersion.named("13") } == .unsupportedRoomVersion)
    #expect(RoomVersion.capabilities()["available"]?["1"]?.stringValue == "stable")
}
