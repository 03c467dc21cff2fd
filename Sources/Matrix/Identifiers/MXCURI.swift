/// A content URI, `mxc://<server-name>/<media-id>` (client-server API "Matrix Content URIs").
/// The media ID is `[A-Za-z0-9_-]+`. Produced by uploads, parsed by the media handlers.
public struct MXCURI: Sendable, Hashable, CustomStringConvertible {
    public let serverName: ServerName
    public let mediaID: String

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        guard s.hasPrefix("mxc://") else { throw MatrixError(.invalidParam, "Not an mxc:// URI") }
        let rest = s.dropFirst(6)
        guard let slash = rest.firstIndex(of: "/") else { throw MatrixError(.invalidParam, "Invalid mxc:// URI") }
        let server = try ServerName(parsing: rest[..<slash])
        let media = rest[rest.index(after: slash)...]
        try self.init(serverName: server, mediaID: String(media))
    }

    public init(serverName: ServerName, mediaID: String) throws(MatrixError) {
        guard !mediaID.isEmpty, mediaID.utf8.count <= 255, mediaID.utf8.allSatisfy({ b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
        }) else { throw MatrixError(.invalidParam, "Invalid media ID") }
        self.serverName = serverName
        self.mediaID = mediaID
    }

    public var description: String { "mxc://\(serverName.rawValue)/\(mediaID)" }
}
