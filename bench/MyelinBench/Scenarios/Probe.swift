import ArgumentParser
import Foundation

/// `probe`: asks the server for each endpoint the scenarios use and says which it serves
/// (compare.sh runs it first so that a server still being written fails clearly).
struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report which of the client-server endpoints the scenarios need the server serves.")

    @Option(help: "Server base URL, plain HTTP.")
    var url: String

    func run() async throws {
        _ = raiseFileLimit()
        let (host, port) = try parseServerURL(url)
        let http = HTTPClient(address: try SocketAddress.resolve(host: host, port: port), loops: 1)
        defer { http.stop() }
        let api = MatrixAPI(http: http)
        let conn = http.makeConnection()
        let v3 = MatrixAPI.v3
        // Unauthenticated probes: a served endpoint answers 401/400/200, an unserved one 404/405.
        let probes: [(String, String, String, [String: Any]?)] = [
            ("GET", "/_matrix/client/versions", "versions", nil),
            ("POST", "\(v3)/register", "registration", [:]),
            ("POST", "\(v3)/createRoom", "room creation", [:]),
            ("POST", "\(v3)/join/%21probe%3Abench", "joining rooms", [:]),
            ("GET", "\(v3)/sync", "sync", nil),
            ("PUT", "\(v3)/rooms/%21probe%3Abench/send/m.room.message/probe", "sending messages", [:]),
            ("POST", "\(v3)/rooms/%21probe%3Abench/receipt/m.read/%24probe", "read receipts", [:]),
            ("PUT", "\(v3)/rooms/%21probe%3Abench/typing/%40probe%3Abench", "typing", [:]),
            ("GET", "\(v3)/rooms/%21probe%3Abench/messages", "/messages", nil),
        ]
        var missing: [String] = []
        for (method, path, label, body) in probes {
            let r = await api.call(conn, method, path, token: String?.none, body: body, label: label, timeout: 10)
            switch r {
            case .success:
                printOut("served      \(method) \(path)")
            case .failure(let f):
                if case .transport = f.kind {
                    printOut("UNREACHABLE \(f)")
                    throw ExitCode(2)
                }
                if f.isUnrecognized {
                    printOut("NOT SERVED  \(f)")
                    missing.append(label)
                } else {
                    printOut("served      \(method) \(path) (→ \(f.statusCode ?? 0)\(f.errcode.map { " " + $0 } ?? ""), as expected without a token)")
                }
            }
        }
        if !missing.isEmpty {
            printOut("server does not serve yet: \(missing.joined(separator: ", "))")
            throw ExitCode(3)
        }
    }
}
