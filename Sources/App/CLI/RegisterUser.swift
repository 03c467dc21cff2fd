import ArgumentParser
import Matrix

#if canImport(Glibc)
import Glibc
#endif

/// `myelin register-user`: creates an account on a running server through its shared-secret
/// registration (`GET/POST /_synapse/admin/v1/register`, `SharedSecretRegistration`), as
/// Synapse's `register_new_matrix_user` does: the secret comes from the configuration file
/// (`registration.shared_secret`), the server's address from its first plain-HTTP listener (or
/// `--url`). A one-shot command: its blocking socket calls run on the command's own thread,
/// never inside the server.
struct RegisterUser: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register-user",
        abstract: "Register a user on a running Myelin server with the shared registration secret.")

    @Option(name: [.short, .customLong("config")], help: "The server's YAML configuration file (reads registration.shared_secret and the listener).")
    var config: String?

    @Option(name: .long, help: "The server's base URL (http://HOST:PORT), instead of the configured listener.")
    var url: String?

    @Option(name: .long, help: "The shared secret, instead of the configuration file's.")
    var sharedSecret: String?

    @Option(name: [.short, .customLong("user")], help: "The local part of the new user's ID (asked when not given).")
    var user: String?

    @Option(name: [.short, .customLong("password")], help: "The password (asked when not given; read from standard input when it is not a terminal).")
    var password: String?

    @Option(name: .long, help: "Read the password from the first line of FILE.")
    var passwordFile: String?

    @Flag(name: [.short, .customLong("admin")], help: "Make the user a server admin.")
    var admin = false

    @Flag(name: .customLong("no-admin"), help: "Do not make the user a server admin (asked when neither flag is given).")
    var noAdmin = false

    func run() throws {
        do {
            try register()
        } catch let failure as Failure {
            FileError.print("myelin register-user: \(failure.message)")
            throw ExitCode(1)
        }
    }

    struct Failure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private func register() throws {
        guard !(admin && noAdmin) else { throw Failure("--admin and --no-admin contradict each other") }
        var configuration = Configuration()
        if let config {
            do {
                configuration = try Serve.resolve(configFile: config, listen: nil, dataDir: nil)
            } catch let error as ConfigurationError {
                throw Failure("configuration error: \(error)")
            }
        }
        guard let secret = sharedSecret ?? configuration.registration.sharedSecret, !secret.isEmpty else {
            throw Failure(config == nil
                ? "no shared secret: give -c/--config with registration.shared_secret set (or --shared-secret)"
                : "registration.shared_secret is not set in \(config!): shared-secret registration is off on this server")
        }
        let endpoint = try Self.endpoint(url: url, listeners: configuration.listeners)
        let interactive = isatty(0) == 1
        let username = try user ?? Self.prompt("New user localpart: ", interactive: interactive)
        guard !username.isEmpty else { throw Failure("the user name must not be empty") }
        let password = try readPassword(interactive: interactive)
        var makeAdmin = admin
        if !admin && !noAdmin && interactive {
            let answer = try Self.prompt("Make admin [no]: ", interactive: true).lowercased()
            makeAdmin = answer.hasPrefix("y")
        }

        let nonceReply = try endpoint.request("GET", "/_synapse/admin/v1/register", body: nil)
        guard nonceReply.status == 200, let nonce = nonceReply.json?["nonce"]?.stringValue else {
            throw Failure("the server refused to give a nonce (\(nonceReply.status)): \(nonceReply.errorText)")
        }
        let message = Array(nonce.utf8) + [0] + Array(username.utf8) + [0] + Array(password.utf8) + [0]
            + Array((makeAdmin ? "admin" : "notadmin").utf8)
        let body: JSON = ["nonce": .string(nonce), "username": .string(username), "password": .string(password),
                          "admin": .bool(makeAdmin), "mac": .string(HMACSHA1.hex(key: Array(secret.utf8), message: message))]
        let reply = try endpoint.request("POST", "/_synapse/admin/v1/register", body: body.encodedString)
        guard reply.status == 200, let userID = reply.json?["user_id"]?.stringValue else {
            if reply.json?["errcode"]?.stringValue == "M_USER_IN_USE" {
                throw Failure("the user \(username) already exists")
            }
            if reply.json?["error"]?.stringValue == "HMAC incorrect" {
                throw Failure("the server refused the MAC: the shared secret differs from the server's")
            }
            throw Failure("registration failed (\(reply.status)): \(reply.errorText)")
        }
        print("Success! Registered \(userID)\(makeAdmin ? " as a server admin" : "").")
    }

    private func readPassword(interactive: Bool) throws -> String {
        if let password { return password }
        if let passwordFile {
            guard let text = FileError.read(passwordFile) else { throw Failure("cannot read \(passwordFile)") }
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard !line.isEmpty else { throw Failure("\(passwordFile) holds no password") }
            return line
        }
        guard interactive else {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw Failure("no password: give -p, --password-file, or one line on standard input")
            }
            return line
        }
        guard let first = getpass("Password: ").map({ String(cString: $0) }), !first.isEmpty else {
            throw Failure("the password must not be empty")
        }
        guard let again = getpass("Confirm password: ").map({ String(cString: $0) }), again == first else {
            throw Failure("the passwords do not match")
        }
        return first
    }

    private static func prompt(_ text: String, interactive: Bool) throws -> String {
        guard interactive else { throw Failure("missing -u/--user (standard input is not a terminal)") }
        print(text, terminator: "")
        fflush(nil)  // every stream: `stdout` itself is not concurrency-safe to name
        guard let line = readLine(strippingNewline: true) else { throw Failure("no answer") }
        return line.trimmingSpaces
    }

    /// `--url`, or the first listener without TLS (a wildcard address is reached on loopback).
    static func endpoint(url: String?, listeners: [Configuration.Listener]) throws -> PlainHTTPEndpoint {
        if let url {
            guard url.hasPrefix("http://") else {
                throw Failure("--url must be http://HOST:PORT (this command speaks plain HTTP to a local listener)")
            }
            var rest = url.dropFirst("http://".count)
            while rest.hasSuffix("/") { rest = rest.dropLast() }
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                  (1...65535).contains(port) else {
                return PlainHTTPEndpoint(host: rest.isEmpty ? "127.0.0.1" : String(rest), port: 80)
            }
            var host = String(rest[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return PlainHTTPEndpoint(host: host, port: port)
        }
        guard let listener = listeners.first(where: { $0.tls == nil }) else {
            throw Failure("every configured listener uses TLS: give --url http://HOST:PORT of a plain listener")
        }
        let host = listener.host == "0.0.0.0" || listener.host.isEmpty ? "127.0.0.1" : listener.host == "::" ? "::1" : listener.host
        return PlainHTTPEndpoint(host: host, port: listener.port)
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}

/// A blocking HTTP/1.1 exchange with one server, one connection per request (`Connection:
/// close`), for the command line only.
struct PlainHTTPEndpoint {
    let host: String
    let port: Int

    struct Reply {
        let status: Int
        let body: [UInt8]
        var json: JSON? { try? JSON.parse(body) }
        var errorText: String {
            if let error = json?["error"]?.stringValue { return error }
            return String(decoding: body.prefix(200), as: UTF8.self)
        }
    }

    var display: String { host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)" }

    func request(_ method: String, _ path: String, body: String?) throws -> Reply {
        let fd = try connect()
        defer { close(fd) }
        let payload = Array((body ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\nUser-Agent: myelin-register-user\r\n"
        if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        let bytes = Array((head + "\r\n").utf8) + payload
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw RegisterUser.Failure("lost the connection to \(display)") }
            sent += n
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while response.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        return try Self.parse(response, from: display)
    }

    /// Status and body of a response read to the end (Content-Length or chunked).
    static func parse(_ response: [UInt8], from display: String) throws -> Reply {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = response.firstRange(of: separator) else {
            throw RegisterUser.Failure("\(display) did not answer with HTTP")
        }
        let head = String(decoding: response[..<end.lowerBound], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw RegisterUser.Failure("\(display) did not answer with HTTP")
        }
        var body = Array(response[end.upperBound...])
        let chunked = lines.dropFirst().contains { $0.lowercased().hasPrefix("transfer-encoding:") && $0.lowercased().contains("chunked") }
        if chunked {
            var out: [UInt8] = []
            var rest = body[...]
            while let lineEnd = rest.firstRange(of: [13, 10]),
                  let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self)
                                    .split(separator: ";").first ?? "", radix: 16), size > 0,
                  rest.distance(from: lineEnd.upperBound, to: rest.endIndex) >= size {
                let start = lineEnd.upperBound
                let stop = rest.index(start, offsetBy: size)
                out += rest[start..<stop]
                rest = rest[stop...].dropFirst(2)
            }
            body = out
        }
        return Reply(status: status, body: body)
    }

    private func connect() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw RegisterUser.Failure("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        var lastError: Int32 = 0
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0 {
                if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
                lastError = errno
                close(fd)
            }
            entry = info.pointee.ai_next
        }
        if lastError == ECONNREFUSED {
            throw RegisterUser.Failure("cannot connect to \(display): connection refused. Is the server running?")
        }
        throw RegisterUser.Failure("cannot connect to \(display): \(String(cString: strerror(lastError)))")
    }
}
