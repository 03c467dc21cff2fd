import Glibc

/// A blocking TCP client for tests: writes raw bytes and reads raw responses, with a receive
/// timeout so that a broken server fails the test instead of hanging it. Two minutes: the
/// whole suite runs its servers in parallel on two cores, and a request queued behind
/// dozens of Argon2 hashes and file syncs has taken over 30 s there.
public final class RawClient: @unchecked Sendable {  // used by one thread at a time
    public let fd: Int32

    public let port: Int
    let timeoutSeconds: Int

    /// The local address connections are made from (`127.0.0.2`: all of 127/8 is loopback on
    /// Linux, so a test can be a second client address); nil: the kernel's choice.
    let source: String?

    public init(port: Int, timeoutSeconds: Int = 120, source: String? = nil) throws {
        self.port = port
        self.timeoutSeconds = timeoutSeconds
        self.source = source
        fd = try Self.connect(port: port, timeoutSeconds: timeoutSeconds, source: source)
        connectedAs = Self.endpoints(fd)
    }

    private static func connect(port: Int, timeoutSeconds: Int, source: String? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        // EMFILE here (the process out of descriptors) would otherwise surface as connect's EBADF.
        guard fd >= 0 else { throw ClientError.socket(errno) }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let rc = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc != 0 { Glibc.close(fd); throw ClientError.connect(errno) }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { Glibc.close(fd); throw ClientError.connect(errno) }
        return fd
    }

    /// Before a request, as HTTP clients do with a pooled connection: if the server closed
    /// this one while it was unused (a connection that sends nothing is closed at the header
    /// timeout, an idle one at the idle timeout), a new one takes its place, under the same
    /// descriptor.
    func reconnectIfClosedByServer() throws {
        guard buffer.isEmpty else { return }
        var probe: UInt8 = 0
        let n = recv(fd, &probe, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        guard n == 0 || (n < 0 && errno == ECONNRESET) else { return }
        let fresh = try Self.connect(port: port, timeoutSeconds: timeoutSeconds, source: source)
        dup2(fresh, fd)
        Glibc.close(fresh)
        connectedAs = Self.endpoints(fd)
    }

    /// The socket's local and peer ports when it connected, to tell a failure of this
    /// connection from a descriptor that something else closed and reused.
    public private(set) var connectedAs = ""

    static func endpoints(_ fd: Int32) -> String {
        func port(_ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> Int {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let rc = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) } }
            return rc == 0 ? Int(UInt16(bigEndian: address.sin_port)) : -Int(errno)
        }
        return "local \(port { getsockname($0, $1, $2) }) peer \(port { getpeername($0, $1, $2) })"
    }

    deinit { Glibc.close(fd) }

    /// `closed`: the server closed the connection (EOF); `failed`: the socket failed with that
    /// errno (ECONNRESET, EAGAIN at the receive timeout, EBADF if a descriptor was closed
    /// under it).
    public enum ClientError: Error { case socket(Int32), connect(Int32), closed, failed(Int32), timeout, malformed(String) }

    /// Layers between the test and the socket (a TLS client): what `send` is given becomes
    /// what goes to the socket, and what `fill` receives becomes what it buffers; nil from
    /// `receiveFilter` means the layer failed (as EOF).
    public var sendFilter: (([UInt8]) -> [UInt8])?
    public var receiveFilter: (([UInt8]) -> [UInt8]?)?

    public func send(_ text: String) { send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) {
        sendRaw(sendFilter?(bytes) ?? bytes)
    }

    /// Sends bytes to the socket as they are.
    public func sendRaw(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    public var buffer: [UInt8] = []

    /// The errno of the last failed read (0 after EOF).
    public private(set) var lastReadError: Int32 = 0

    /// The error for a read that returned no bytes.
    var endOfInput: ClientError { lastReadError == 0 ? .closed : .failed(lastReadError) }

    /// Reads more bytes; false on EOF or timeout.
    public func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = Self.receive(fd, &chunk)
        if n <= 0 { lastReadError = n < 0 ? errno : 0; return false }
        if let receiveFilter {
            guard let bytes = receiveFilter(Array(chunk[0..<n])) else { return false }
            buffer.append(contentsOf: bytes)
        } else {
            buffer.append(contentsOf: chunk[0..<n])
        }
        return true
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    /// Reads one response (Content-Length or chunked body; none for HEAD).
    public func readResponse(head: Bool = false) throws -> Response {
        while true {
            if let end = find([13, 10, 13, 10]) {
                let headText = String(decoding: buffer[0..<end], as: UTF8.self)
                var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw ClientError.malformed(headText) }
                let headers = lines.compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: " "))
                }
                var response = Response(status: status, headers: headers, body: [])
                buffer.removeFirst(end + 4)
                if status == 100 { continue }
                if head || status == 204 || status == 304 { return response }
                if let length = response.header("Content-Length").flatMap(Int.init) {
                    while buffer.count < length { guard fill() else { throw endOfInput } }
                    response.body = Array(buffer[0..<length])
                    buffer.removeFirst(length)
                } else if response.header("Transfer-Encoding") == "chunked" {
                    while true {
                        var lineEnd = find([13, 10])
                        while lineEnd == nil { guard fill() else { throw endOfInput }; lineEnd = find([13, 10]) }
                        let size = Int(String(decoding: buffer[0..<lineEnd!], as: UTF8.self), radix: 16) ?? 0
                        buffer.removeFirst(lineEnd! + 2)
                        while buffer.count < size + 2 { guard fill() else { throw endOfInput } }
                        response.body.append(contentsOf: buffer[0..<size])
                        buffer.removeFirst(size + 2)
                        if size == 0 { break }
                    }
                }
                return response
            }
            guard fill() else { throw endOfInput }
        }
    }

    public func read(head: Bool = false) async throws -> Response { try await blocking { try self.readResponse(head: head) } }
    public func closed() async -> Bool { (try? await blocking { self.waitForClose() }) ?? false }
    public func fillAsync() async -> Bool { (try? await blocking { self.fill() }) ?? false }
    public func sendAsync(_ bytes: [UInt8]) async { _ = try? await blocking { self.send(bytes) } }

    /// True when the server closed the connection (EOF) within the timeout.
    public func waitForClose() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Self.receive(fd, &chunk)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    /// `recv`, again when a signal interrupted it. A socket with a receive timeout is never
    /// restarted by the kernel (signal(7)), so the SIGCHLD of a child process that another
    /// test spawned would otherwise read as the server closing the connection.
    public static func receive(_ fd: Int32, _ chunk: inout [UInt8]) -> Int {
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        outer: for i in 0...(buffer.count - pattern.count) {
            for j in 0..<pattern.count where buffer[i + j] != pattern[j] { continue outer }
            return i
        }
        return nil
    }
}

extension String {
    public func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

/// Runs blocking socket code on a thread of its own, never on the cooperative pool (whose
/// few threads the server's handlers need).
/// Carries a body to a new thread and its result back.
public final class ThreadBox<T: Sendable>: @unchecked Sendable {  // written by one thread, then read after resume
    let body: @Sendable () throws -> T
    var continuation: CheckedContinuation<Result<T, any Error>, Never>?
    init(_ body: @escaping @Sendable () throws -> T) { self.body = body }
    func run() { continuation!.resume(returning: Result { try body() }) }
}

public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let box = ThreadBox(body)
    let result = await withCheckedContinuation { continuation in
        box.continuation = continuation
        let runner: () -> Void = { box.run() }
        let raw = Unmanaged.passRetained(RunnerBox(runner)).toOpaque()
        var thread = pthread_t()
        pthread_create(&thread, nil, { raw in
            Unmanaged<RunnerBox>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, raw)
        pthread_detach(thread)
    }
    return try result.get()
}

final class RunnerBox {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

extension RawClient {
    /// Sends one request and reads its response.
    public func request(_ method: String, _ target: String, body: String? = nil,
                        headers: [String: String] = [:]) async throws -> Response {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { text += "\r\n" }
        if sendFilter == nil { try reconnectIfClosedByServer() }
        send(text)
        do {
            return try await read(head: method == "HEAD")
        } catch let error as ClientError {
            throw RequestFailure(request: "\(method) \(target)", error: error,
                                 socket: "fd \(fd) connected \(connectedAs), now \(Self.endpoints(fd))")
        }
    }

    /// A request that got no answer: which one, and how the socket ended.
    public struct RequestFailure: Error, CustomStringConvertible {
        public let request: String
        public let error: ClientError
        public let socket: String
        public var description: String { "\(request): \(error) (\(socket))" }
    }
}
