import Actors
import Matrix
import Synchronization

/// The outbound requests of the room handlers (joins, invites, leaves, missing events): the
/// `FederationRequesting` the App connects (the real client, or a test's in-process one),
/// with the answer checked and turned into JSON or a Matrix error. Owned by `MyelinApp`.
final class FederationLink: Sendable {
    private let requester = Mutex<(any FederationRequesting)?>(nil)

    func connect(_ requester: any FederationRequesting) {
        self.requester.withLock { $0 = requester }
    }

    /// Whether outbound requests can be made at all (federation enabled and connected).
    var isConnected: Bool { requester.withLock { $0 != nil } }

    /// Sends a request and returns the JSON object of a 2xx answer. A remote error is
    /// re-raised with its `errcode` when it is one we know (the status kept), else `M_UNKNOWN` 502.
    func call(_ destination: ServerName, _ method: String, _ path: String, _ body: JSON? = .none) async throws -> [String: JSON] {
        try Self.checked(try await reply(destination, method, path, body), from: destination)
    }

    /// Sends a request and returns the remote's answer as it came (any status).
    func reply(_ destination: ServerName, _ method: String, _ path: String, _ body: JSON? = .none) async throws -> FederationReply {
        guard let requester = requester.withLock({ $0 }) else {
            // Federation off (`federation.enabled: false`): as Synapse answers a server outside
            // its federation whitelist.
            throw MatrixError(.forbidden, "Federation is disabled on this server")
        }
        // `JSON` is nil-literal expressible: a bodiless request must not send `null`.
        let content: JSON? = body == .null ? .none : body
        return try await requester.request(destination, method: method, path: path, body: content)
    }

    /// The JSON object of a 2xx answer, else the remote's error as `call` raises it.
    static func checked(_ reply: FederationReply, from destination: ServerName) throws -> [String: JSON] {
        if (200..<300).contains(reply.status), let object = reply.json?.objectValue { return object }
        let message = String((reply.json?["error"]?.stringValue ?? "no error message").prefix(200))
        switch reply.status {
        case 403: throw MatrixError(.forbidden, "\(destination): \(message)")
        case 404: throw MatrixError(.notFound, "\(destination): \(message)")
        case 400..<500 where reply.status != 401 && isErrcode(reply.json?["errcode"]?.stringValue):
            // A refusal passed through to the client with its code, as Synapse does
            // (`make_join` failures, `M_INCOMPATIBLE_ROOM_VERSION` with its `room_version`).
            var extra: [String: JSON] = [:]
            if let version = reply.json?["room_version"]?.stringValue, version.utf8.count <= 64 {
                extra["room_version"] = .string(version)
            }
            throw MatrixError(MatrixError.Code(rawValue: reply.json!["errcode"]!.stringValue!), "\(destination): \(message)",
                              status: reply.status, extra: extra)
        default: throw MatrixError(.unknown, "\(destination) answered \(reply.status): \(message)", status: 502)
        }
    }

    /// A remote `errcode` worth passing on: `M_` then capitals, digits and underscores, short.
    static func isErrcode(_ text: String?) -> Bool {
        guard let text, text.hasPrefix("M_"), text.utf8.count <= 64 else { return false }
        return text.utf8.allSatisfy { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "_") }
    }

    /// One path segment percent-encoded (RFC 3986: everything but unreserved characters).
    static func segment(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}

extension MyelinApp {
    /// Connects the outbound side of federation: the key ring fetches keys through it and
    /// the room handlers send joins, invites and leaves through it.
    func connectFederation(_ requester: any FederationRequesting) {
        keyRing.use(requester)
        federationLink.connect(requester)
    }

    /// This server's name as configured (validated by the loader).
    var localServer: ServerName { keyRing.serverName }
}
