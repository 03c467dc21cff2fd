import Matrix

/// Sends one request to another homeserver and returns its answer: the seam between what
/// federation needs (the key ring, destination actors, joins, queries) and how requests
/// travel. The App's federation client implements it (discovery, TLS, HTTP client, X-Matrix
/// signing of every request); tests implement it in process.
public protocol FederationRequesting: Sendable {
    /// Sends `method path` to `destination` with `body` as JSON, signed with `X-Matrix`.
    /// `path` starts with `/_matrix/` and includes the percent-encoded query; it is what the
    /// request line carries and what the signature covers. Returns every HTTP answer (errors
    /// included, with their JSON if any); throws `FederationRequestError` when no answer came.
    func request(_ destination: ServerName, method: String, path: String, body: JSON?) async throws -> FederationReply
}

/// The answer of a remote server: its HTTP status and its body when that was JSON.
public struct FederationReply: Sendable {
    public var status: Int
    public var json: JSON?

    public init(status: Int, json: JSON?) {
        self.status = status
        self.json = json
    }
}

/// Why a federation request got no answer.
public struct FederationRequestError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Discovery, DNS or the connection failed.
        case unreachable
        /// No complete answer in time.
        case timeout
        /// Refused locally: the destination is blacklisted or not whitelisted.
        case refused
        /// The answer exceeded the response size limit.
        case tooLarge
        /// The answer was not HTTP, or not the JSON it had to be.
        case invalidResponse
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String = "") {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind): \(message)" }
}
