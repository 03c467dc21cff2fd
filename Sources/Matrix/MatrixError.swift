/// A Matrix error: the `errcode`, a human message and the HTTP status it is served with.
/// Thrown from anywhere; the App renders it as `{"errcode": ..., "error": ...}`.
public struct MatrixError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, ExpressibleByStringLiteral {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }

        public static let forbidden: Code = "M_FORBIDDEN"
        public static let unknownToken: Code = "M_UNKNOWN_TOKEN"
        public static let missingToken: Code = "M_MISSING_TOKEN"
        public static let userDeactivated: Code = "M_USER_DEACTIVATED"
        public static let badJSON: Code = "M_BAD_JSON"
        public static let notJSON: Code = "M_NOT_JSON"
        public static let notFound: Code = "M_NOT_FOUND"
        public static let limitExceeded: Code = "M_LIMIT_EXCEEDED"
        public static let unrecognized: Code = "M_UNRECOGNIZED"
        public static let unknown: Code = "M_UNKNOWN"
        public static let unauthorized: Code = "M_UNAUTHORIZED"
        public static let userInUse: Code = "M_USER_IN_USE"
        public static let invalidUsername: Code = "M_INVALID_USERNAME"
        public static let invalidParam: Code = "M_INVALID_PARAM"
        public static let missingParam: Code = "M_MISSING_PARAM"
        public static let tooLarge: Code = "M_TOO_LARGE"
        public static let unsupportedRoomVersion: Code = "M_UNSUPPORTED_ROOM_VERSION"
        public static let roomInUse: Code = "M_ROOM_IN_USE"
        public static let badState: Code = "M_BAD_STATE"
        public static let guestAccessForbidden: Code = "M_GUEST_ACCESS_FORBIDDEN"
    }

    public var code: Code
    public var message: String
    /// HTTP status this error is served with.
    public var status: Int
    /// Extra top-level fields of the error body (e.g. `retry_after_ms`, `soft_logout`).
    public var extra: [String: JSON]
    /// The body is `extra` alone, without `errcode` and `error`: the first challenge of
    /// user-interactive authentication is such a 401 (spec: an `errcode` appears only after
    /// a stage failed, and clients such as mautrix read one as a hard error).
    public var bodyIsExtraOnly = false

    public init(_ code: Code, _ message: String, status: Int? = nil, extra: [String: JSON] = [:]) {
        self.code = code
        self.message = message
        self.status = status ?? MatrixError.defaultStatus(for: code)
        self.extra = extra
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The error body, `{"errcode": ..., "error": ..., ...extra}`.
    public var body: JSON {
        if bodyIsExtraOnly { return .object(extra) }
        var object = extra
        object["errcode"] = .string(code.rawValue)
        object["error"] = .string(message)
        return .object(object)
    }

    static func defaultStatus(for code: Code) -> Int {
        switch code {
        case .forbidden, .userDeactivated, .guestAccessForbidden: return 403
        case .unknownToken, .missingToken, .unauthorized: return 401
        case .notFound, .unrecognized: return 404
        case .limitExceeded: return 429
        case .tooLarge: return 413
        case .unknown: return 500
        default: return 400
        }
    }
}
