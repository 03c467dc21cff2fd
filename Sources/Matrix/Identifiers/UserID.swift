/// A Matrix user ID, `@localpart:domain` (appendix "User Identifiers").
///
/// `init(parsing:)` accepts the historical grammar that remote servers may still send (any
/// localpart without `:` or NUL, even empty); `isCompliant` says whether it also meets the
/// current grammar. New local users are checked with `validateLocalpart(_:)`.
public struct UserID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String
    public let localpart: Substring
    public let serverName: ServerName

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        let (local, server) = try Sigiled.split(s, sigil: UInt8(ascii: "@"), what: "user ID")
        guard local.unicodeScalars.allSatisfy({ !(0xD800...0xDFFF).contains($0.value) }) else {
            throw MatrixError(.invalidParam, "Invalid user ID")
        }
        self.rawValue = s
        self.localpart = local
        self.serverName = server
    }

    /// A user ID for a local user, with the localpart checked against the strict grammar.
    public init(localpart: String, serverName: ServerName) throws(MatrixError) {
        try UserID.validateLocalpart(localpart)
        try self.init(parsing: "@\(localpart):\(serverName.rawValue)")
    }

    public var description: String { rawValue }
    public static func < (a: UserID, b: UserID) -> Bool { a.rawValue < b.rawValue }

    /// Byte-wise: historical localparts may hold any non-surrogate code point, and two IDs
    /// that are canonically equivalent but byte-distinct are two users (Swift's `String`
    /// equality would make them one).
    public static func == (a: UserID, b: UserID) -> Bool { ExactText.equal(a.rawValue, b.rawValue) }
    public func hash(into hasher: inout Hasher) { ExactText.hash(rawValue, into: &hasher) }

    /// The localpart grammar for new users: `a-z 0-9 . _ = - / +`, not empty; the whole ID at most
    /// 255 bytes is checked on construction. Throws `M_INVALID_USERNAME`.
    public static func validateLocalpart(_ localpart: String) throws(MatrixError) {
        guard !localpart.isEmpty, localpart.utf8.allSatisfy(isStrictLocalpartByte) else {
            throw MatrixError(.invalidUsername, "User ID localparts may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'")
        }
    }

    static func isStrictLocalpartByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
            || b == UInt8(ascii: "=") || b == UInt8(ascii: "_") || b == UInt8(ascii: "/") || b == UInt8(ascii: "+")
    }

    /// True if the localpart meets the current grammar.
    public var isStrictlyValid: Bool { !localpart.isEmpty && localpart.utf8.allSatisfy(UserID.isStrictLocalpartByte) }

    /// True if the localpart is non-empty and within U+0021–U+007E (the spec's "compliant" IDs).
    public var isCompliant: Bool { !localpart.isEmpty && localpart.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E } }
}
