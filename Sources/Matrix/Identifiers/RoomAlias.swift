/// A room alias, `#localpart:domain` (appendix "Room Aliases"), at most 255 bytes. Resolved by
/// the directory handlers.
public struct RoomAlias: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public let localpart: Substring
    public let serverName: ServerName

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        let (local, server) = try Sigiled.split(s, sigil: UInt8(ascii: "#"), what: "room alias")
        guard !local.isEmpty else { throw MatrixError(.invalidParam, "Invalid room alias: empty localpart") }
        self.rawValue = s
        self.localpart = local
        self.serverName = server
    }

    public var description: String { rawValue }
}
