import Foundation
import Synchronization

/// Why a client-server API call failed: no HTTP response, an error status, or a body that is
/// not the JSON the specification promises. `label` names the operation for the tallies.
struct CallFailure: Error, CustomStringConvertible {
    enum Kind {
        case transport(TransportFailure)
        case status(Int, errcode: String?, message: String?)
        case badBody(String)
    }
    var endpoint: String  // "POST /_matrix/client/v3/register"
    var label: String     // "register"
    var kind: Kind

    /// The server answered "no such endpoint": 404/405 with M_UNRECOGNIZED, or a 404 with no
    /// Matrix error body at all.
    var isUnrecognized: Bool {
        if case .status(let s, let errcode, _) = kind {
            return (s == 404 || s == 405) && (errcode == "M_UNRECOGNIZED" || errcode == nil)
        }
        return false
    }

    var statusCode: Int? {
        if case .status(let s, _, _) = kind { return s }
        return nil
    }

    var errcode: String? {
        if case .status(_, let e, _) = kind { return e }
        return nil
    }

    /// Key for error tallies: "send 429 M_LIMIT_EXCEEDED", "sync refused".
    var tallyKey: String {
        switch kind {
        case .transport(let t): "\(label) \(t.key)"
        case .status(let s, let e, _): "\(label) \(s)\(e.map { " " + $0 } ?? "")"
        case .badBody: "\(label) malformed-body"
        }
    }

    var description: String {
        switch kind {
        case .transport(let t): "\(endpoint) → \(t)"
        case .status(let s, let e, let m):
            "\(endpoint) → \(s)\(e.map { " " + $0 } ?? "")\(m.map { ": " + $0 } ?? "")"
                + (isUnrecognized ? " — server does not serve \(label) yet" : "")
        case .badBody(let why): "\(endpoint) → malformed body: \(why)"
        }
    }
}

/// Thin client-server API calls over one `ClientConnection`. Bodies go out as JSON bytes;
/// responses are parsed with JSONSerialization (fine at these rates: the hot loop only scans
/// sync timelines for the harness's own events).
struct MatrixAPI: Sendable {
    let http: HTTPClient
    static let v3 = "/_matrix/client/v3"

    /// One call. Returns the decoded JSON object, or why not.
    func call(_ conn: ClientConnection, _ method: String, _ path: String, query: String? = nil,
              token: String?, body: [String: Any]? = nil, label: String,
              timeout: Double = 60) async -> Result<[String: Any], CallFailure> {
        let bodyBytes = body.map { (try? JSONSerialization.data(withJSONObject: $0)).map { [UInt8]($0) } ?? [] }
        let fullPath = query.map { "\(path)?\($0)" } ?? path
        let endpoint = "\(method) \(path)"
        let bytes = http.requestBytes(method: method, path: fullPath, token: token, body: bodyBytes)
        let outcome = await conn.execute(bytes, isHead: method == "HEAD", timeout: timeout)
        switch outcome {
        case .failure(let t):
            return .failure(CallFailure(endpoint: endpoint, label: label, kind: .transport(t)))
        case .success(let response):
            let json = response.body.isEmpty ? nil
                : (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
            if response.status / 100 != 2 {
                return .failure(CallFailure(endpoint: endpoint, label: label,
                                            kind: .status(response.status, errcode: json?["errcode"] as? String,
                                                          message: json?["error"] as? String)))
            }
            guard let json else {
                let preview = String(decoding: response.body.prefix(80), as: UTF8.self)
                return .failure(CallFailure(endpoint: endpoint, label: label, kind: .badBody("not a JSON object: \(preview.debugDescription)")))
            }
            return .success(json)
        }
    }

    /// The raw response (for sync, whose body the caller scans itself).
    func raw(_ conn: ClientConnection, _ method: String, _ pathAndQuery: String, token: String?,
             body: [UInt8]? = nil, timeout: Double) async -> Result<HTTPResponse, TransportFailure> {
        let bytes = http.requestBytes(method: method, path: pathAndQuery, token: token, body: body)
        return await conn.execute(bytes, timeout: timeout)
    }
}

/// Counts failures by kind ("sync 502", "send timeout") over a run. Shared by every task.
final class Tally: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func add(_ key: String, _ n: Int = 1) {
        counts.withLock { $0[key, default: 0] += n }
    }

    func add(_ failure: CallFailure) { add(failure.tallyKey) }

    var snapshot: [String: Int] { counts.withLock { $0 } }
    var total: Int { counts.withLock { $0.values.reduce(0, +) } }
}

/// One registered user of the run: the account, and the sync position reached so far.
struct BenchUser: Sendable {
    var index: Int
    var userID: String
    var token: String
    var nextBatch: String?
}

/// A room created for the run and the user indices that joined it.
struct BenchRoom: Sendable {
    var roomID: String
    var members: [Int]
}
