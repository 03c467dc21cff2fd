import Matrix
import Transport

/// What a handler gets: the request, its path parameters (percent-decoded) and query.
/// A class: every async frame of a handler that still needs its context after a suspension
/// holds it, a reference instead of the request's head, headers and body.
final class RequestContext: Sendable {
    let request: HTTPRequest
    let parameters: [String: String]
    let app: MyelinApp

    init(request: HTTPRequest, parameters: [String: String], app: MyelinApp) {
        self.request = request
        self.parameters = parameters
        self.app = app
    }

    /// A path parameter by name; routing guarantees it exists.
    func parameter(_ name: String) -> String { parameters[name] ?? "" }

    /// The query parameters, percent-decoded; a repeated key keeps its last value. Parsed
    /// by a byte scan (sync's inline filters make long queries).
    var query: [String: String] {
        guard let q = request.head.query else { return [:] }
        var result: [String: String] = [:]
        let utf8 = q.utf8
        var start = utf8.startIndex
        while start < utf8.endIndex {
            let end = utf8[start...].firstIndex(of: UInt8(ascii: "&")) ?? utf8.endIndex
            if start < end {
                let pair = q[start..<end]
                let pairUTF8 = pair.utf8
                if let equals = pairUTF8.firstIndex(of: UInt8(ascii: "=")) {
                    let rawKey = pair[pair.startIndex..<equals]
                    let rawValue = pair[pairUTF8.index(after: equals)...]
                    let key = PercentDecoding.decode(rawKey, plusAsSpace: true) ?? String(rawKey)
                    result[key] = PercentDecoding.decode(rawValue, plusAsSpace: true) ?? String(rawValue)
                } else {
                    result[PercentDecoding.decode(pair, plusAsSpace: true) ?? String(pair)] = ""
                }
            }
            if end == utf8.endIndex { break }
            start = utf8.index(after: end)
        }
        return result
    }

    /// Query parameters as sent (still percent-encoded), by one scan over contiguous bytes;
    /// names not present are nil. Sync keys its filter cache on the raw filter text.
    func rawQueryValues(_ names: [StaticString]) -> [String?] {
        guard let q = request.head.query else { return Array(repeating: nil, count: names.count) }
        var text = String(q)
        return text.withUTF8 { bytes -> [String?] in
            var out = [String?](repeating: nil, count: names.count)
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != UInt8(ascii: "&") { end += 1 }
                var equals = start
                while equals < end && bytes[equals] != UInt8(ascii: "=") { equals += 1 }
                if equals < end {
                    let key = UnsafeBufferPointer(rebasing: bytes[start..<equals])
                    for (index, name) in names.enumerated() {
                        let wanted = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
                        if key.elementsEqual(wanted) {
                            out[index] = String(decoding: UnsafeBufferPointer(rebasing: bytes[(equals + 1)..<end]), as: UTF8.self)
                        }
                    }
                }
                start = end + 1
            }
            return out
        }
    }

    /// The body as a JSON object: `M_NOT_JSON` when it does not parse, `M_BAD_JSON` when it
    /// is not an object.
    func jsonObject() async throws -> [String: JSON] {
        try Self.jsonObject(from: try await request.body.collect())
    }

    static func jsonObject(from bytes: [UInt8]) throws -> [String: JSON] {
        guard !bytes.isEmpty else { throw MatrixError(.notJSON, "Request body is empty; expected a JSON object") }
        let value = try JSON.parse(bytes)
        // U+0000 is valid JSON but no text column of PostgreSQL can hold it, and a statement
        // that fails inside a group commit fails its neighbours' writes too: refused here,
        // once for every endpoint (no Matrix client sends it).
        if containsEscapedNUL(bytes) { throw MatrixError(.badJSON, "Strings must not contain U+0000") }
        guard case .object(let object) = value else { throw MatrixError(.badJSON, "Request body must be a JSON object") }
        return object
    }
}

extension RequestContext {
    /// True when a JSON text contains the escape `\u0000` (a raw NUL byte is not valid JSON
    /// at all). A backslash preceded by an odd number of backslashes is itself escaped.
    static func containsEscapedNUL(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { b in
            var i = 0
            let n = b.count
            while i + 5 < n {
                if b[i] == UInt8(ascii: "\\") {
                    if b[i + 1] == UInt8(ascii: "u") && b[i + 2] == 0x30 && b[i + 3] == 0x30 && b[i + 4] == 0x30 && b[i + 5] == 0x30 {
                        return true
                    }
                    i += 2  // skip the escaped character (an escaped backslash included)
                } else {
                    i += 1
                }
            }
            return false
        }
    }
}

typealias Handler = @Sendable (RequestContext) async throws -> HTTPResponse

/// Routes requests by method and path through a trie of path segments. Segments in braces
/// (`{roomId}`) capture one percent-decoded segment; a trailing `{*path}` captures the rest.
/// A path that matches with another method answers 405; no match answers 404 `M_UNRECOGNIZED`.
final class Router: Sendable {
    final class Node: @unchecked Sendable {  // built before serving, then only read
        /// Literal children, compared byte by byte: nodes have few children, and a scan
        /// beats hashing each segment.
        var literals: [(key: [UInt8], node: Node)] = []

        func literal(_ segment: Substring) -> Node? {
            let bytes = segment.utf8
            for entry in literals where entry.key.count == bytes.count && entry.key.elementsEqual(bytes) {
                return entry.node
            }
            return nil
        }

        func literalOrInsert(_ key: String) -> Node {
            if let existing = literal(Substring(key)) { return existing }
            let node = Node()
            literals.append((Array(key.utf8), node))
            return node
        }
        var parameter: (name: String, node: Node)?
        var rest: String?
        var restHandlers: [HTTPMethod: Handler] = [:]
        var handlers: [HTTPMethod: Handler] = [:]
    }

    enum Match {
        case found(Handler, [String: String])
        case wrongMethod(allowed: [HTTPMethod])
        case notFound
    }

    let root: Node
    /// Every registration, in order: (method, pattern as registered). Read by tests and
    /// tools that enumerate the API (the admin routes' authorization test); never on the
    /// request path.
    let routes: [RouteBuilder.Route]

    init(_ build: (inout RouteBuilder) -> Void) {
        var builder = RouteBuilder()
        build(&builder)
        root = builder.root
        routes = builder.routes
    }

    func match(method: HTTPMethod, path: Substring) -> Match {
        var node = root
        var parameters: [String: String] = [:]
        let utf8 = path.utf8
        let slash = UInt8(ascii: "/")
        // Segments are found by a byte scan: `path` is ASCII up to percent-escapes.
        var start = utf8.startIndex
        if start < utf8.endIndex && utf8[start] == slash { start = utf8.index(after: start) }
        var atEnd = start == utf8.endIndex  // "/" alone is the root
        while !atEnd {
            let end = utf8[start...].firstIndex(of: slash) ?? utf8.endIndex
            let segment = path[start..<end]
            if let next = node.literal(segment) {
                node = next
            } else if let (name, next) = node.parameter {
                guard let decoded = PercentDecoding.decode(segment) else { return .notFound }
                parameters[name] = decoded
                node = next
            } else if let rest = node.rest {
                let remainder = path[start...]
                parameters[rest] = PercentDecoding.decode(remainder) ?? String(remainder)
                return select(node.restHandlers, method: method, parameters: parameters)
            } else {
                return .notFound
            }
            if end == utf8.endIndex { atEnd = true } else { start = utf8.index(after: end) }
        }
        return select(node.handlers, method: method, parameters: parameters)
    }

    private func select(_ handlers: [HTTPMethod: Handler], method: HTTPMethod, parameters: [String: String]) -> Match {
        if handlers.isEmpty { return .notFound }
        if let handler = handlers[method] { return .found(handler, parameters) }
        if method == .head, let handler = handlers[.get] { return .found(handler, parameters) }
        return .wrongMethod(allowed: Array(handlers.keys))
    }
}

/// Registers routes; `client("/rooms/{roomId}/join")` registers every client-server version
/// prefix (`r0`, `v3`) of a path at once so they reach one handler.
struct RouteBuilder {
    /// One registration: a method and its path pattern (`{name}` segments capture).
    struct Route: Sendable, Hashable {
        let method: HTTPMethod
        let pattern: String
    }

    let root = Router.Node()
    private(set) var routes: [Route] = []

    mutating func add(_ method: HTTPMethod, _ pattern: String, _ handler: @escaping Handler) {
        routes.append(Route(method: method, pattern: pattern))
        var node = root
        for segment in pattern.split(separator: "/") {
            if segment.hasPrefix("{*") && segment.hasSuffix("}") {
                node.rest = String(segment.dropFirst(2).dropLast())
                node.restHandlers[method] = handler
                return
            } else if segment.hasPrefix("{") && segment.hasSuffix("}") {
                let name = String(segment.dropFirst().dropLast())
                if node.parameter == nil { node.parameter = (name, Router.Node()) }
                precondition(node.parameter!.name == name, "conflicting parameter names at \(pattern)")
                node = node.parameter!.node
            } else {
                node = node.literalOrInsert(String(segment))
            }
        }
        precondition(node.handlers[method] == nil, "route registered twice: \(method) \(pattern)")
        node.handlers[method] = handler
    }

    mutating func get(_ pattern: String, _ handler: @escaping Handler) { add(.get, pattern, handler) }
    mutating func post(_ pattern: String, _ handler: @escaping Handler) { add(.post, pattern, handler) }
    mutating func put(_ pattern: String, _ handler: @escaping Handler) { add(.put, pattern, handler) }
    mutating func delete(_ pattern: String, _ handler: @escaping Handler) { add(.delete, pattern, handler) }

    /// A client-server endpoint under `/_matrix/client/{r0,v3}`.
    mutating func client(_ method: HTTPMethod, _ path: String, versions: [String] = ["r0", "v3"], _ handler: @escaping Handler) {
        for version in versions { add(method, "/_matrix/client/\(version)\(path)", handler) }
    }
}

/// Percent-decoding of path segments and query components; invalid escapes or UTF-8, or
/// `%00`, → nil.
enum PercentDecoding {
    static func decode(_ text: Substring, plusAsSpace: Bool = false) -> String? {
        let utf8 = text.utf8
        if !utf8.contains(UInt8(ascii: "%")) && !(plusAsSpace && utf8.contains(UInt8(ascii: "+"))) { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var i = utf8.startIndex
        while i < utf8.endIndex {
            let b = utf8[i]
            if b == UInt8(ascii: "%") {
                let h = utf8.index(after: i)
                guard h < utf8.endIndex else { return nil }
                let l = utf8.index(after: h)
                guard l < utf8.endIndex, let hi = hex(utf8[h]), let lo = hex(utf8[l]) else { return nil }
                // NUL is refused like an invalid escape: no identifier or key may hold it, and
                // PostgreSQL's text columns cannot.
                guard hi | lo != 0 else { return nil }
                bytes.append(hi << 4 | lo)
                i = utf8.index(after: l)
            } else {
                bytes.append(plusAsSpace && b == UInt8(ascii: "+") ? 0x20 : b)
                i = utf8.index(after: i)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
