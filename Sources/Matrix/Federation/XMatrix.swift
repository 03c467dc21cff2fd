/// The parameters of an `Authorization: X-Matrix ...` header (server-server API, "Request
/// Authentication"): who sent the request, to whom, with which key, and the signature.
/// The inbound check (`requireServer` in the App) parses it; the federation client formats it.
public struct XMatrixAuthorization: Sendable, Equatable {
    /// The sending server (`origin`).
    public var origin: ServerName
    /// The receiving server (`destination`, added in v1.3); older servers omit it.
    public var destination: ServerName?
    /// The signing key's ID, algorithm included (`ed25519:abc`).
    public var keyID: String
    /// The unpadded base64 signature of the request JSON (`sig`).
    public var signature: String

    /// Longest header accepted: four parameters of bounded length fit in far less.
    static let maxHeaderBytes = 4_096
    /// Bounds of a key ID (the spec's grammar has no limit; 255 is what event fields allow).
    static let maxKeyIDBytes = 255

    public init(origin: ServerName, destination: ServerName?, keyID: String, signature: String) {
        self.origin = origin
        self.destination = destination
        self.keyID = keyID
        self.signature = signature
    }

    /// Parses a header value per RFC 9110 §11.4 as the spec summarises it: the scheme
    /// `X-Matrix` (any case), one or more spaces, then `name=value` pairs separated by commas
    /// with optional spaces or tabs around them; names in any case, values a token or a
    /// quoted string with backslash escapes. Unquoted values may contain colons (and, as
    /// Synapse accepts, any other visible character but a comma or quote). Unknown
    /// parameters are ignored; `origin`, `key` and `sig` are required. Any defect throws
    /// 401 `M_UNAUTHORIZED`, the answer the spec gives to an unauthenticated request, but an
    /// origin that is not a server name: 400 `M_UNAUTHORIZED`.
    public init(parsing headerValue: String) throws(MatrixError) {
        let bytes = Array(headerValue.utf8)
        guard bytes.count <= Self.maxHeaderBytes else { throw Self.refusal("Authorization header too long") }
        let scheme = Array("x-matrix".utf8)
        guard bytes.count > scheme.count,
              zip(bytes.prefix(scheme.count), scheme).allSatisfy({ Self.lower($0) == $1 }),
              Self.isSpace(bytes[scheme.count]) else {
            throw Self.refusal("Authorization scheme is not X-Matrix")
        }
        let params = try Self.parameters(bytes[scheme.count...])
        guard let originText = params["origin"], let key = params["key"], let sig = params["sig"] else {
            throw Self.refusal("X-Matrix header lacks origin, key or sig")
        }
        // A malformed origin (a non-numeric port, say) is a bad request, 400 `M_UNAUTHORIZED`,
        // as Synapse answers ("Malformed Authorization header"; SyTest 02server-names).
        guard let origin = try? ServerName(parsing: originText) else {
            throw MatrixError(.unauthorized, "X-Matrix origin is not a server name", status: 400)
        }
        var destination: ServerName? = nil
        if let d = params["destination"] {
            guard let parsed = try? ServerName(parsing: d) else { throw Self.refusal("X-Matrix destination is not a server name") }
            destination = parsed
        }
        guard Self.isKeyID(key) else { throw Self.refusal("X-Matrix key is not a key ID") }
        guard !sig.isEmpty, sig.utf8.count <= 1_024 else { throw Self.refusal("X-Matrix sig is malformed") }
        self.init(origin: origin, destination: destination, keyID: key, signature: sig)
    }

    /// The header value as the spec asks senders to write it: one space after the scheme,
    /// lower-case names, quoted values, no whitespace around commas.
    public var headerValue: String {
        var text = "X-Matrix origin=\(Self.quoted(origin.rawValue))"
        if let destination { text += ",destination=\(Self.quoted(destination.rawValue))" }
        text += ",key=\(Self.quoted(keyID)),sig=\(Self.quoted(signature))"
        return text
    }

    /// A key ID: `algorithm:version`, both non-empty, of printable ASCII without
    /// separators, bounded.
    static func isKeyID(_ key: String) -> Bool {
        let u = key.utf8
        guard !u.isEmpty, u.count <= maxKeyIDBytes, let colon = u.firstIndex(of: UInt8(ascii: ":")) else { return false }
        guard colon != u.startIndex, u.index(after: colon) != u.endIndex else { return false }
        return u.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: ",") }
    }

    /// The `name=value` pairs after the scheme, names lower-cased. A repeated name is refused
    /// (a request that says two things about itself is not authentic).
    static func parameters(_ bytes: ArraySlice<UInt8>) throws(MatrixError) -> [String: String] {
        var result: [String: String] = [:]
        var i = bytes.startIndex
        let end = bytes.endIndex
        func skipSpace() { while i < end && isSpace(bytes[i]) { i += 1 } }
        skipSpace()
        while i < end {
            let nameStart = i
            while i < end && isTokenByte(bytes[i]) { i += 1 }
            guard i > nameStart, i < end, bytes[i] == UInt8(ascii: "=") else { throw refusal("Malformed X-Matrix parameter") }
            let name = String(decoding: bytes[nameStart..<i].map(lower), as: UTF8.self)
            i += 1
            var value: [UInt8] = []
            if i < end && bytes[i] == UInt8(ascii: "\"") {
                i += 1
                var closed = false
                while i < end {
                    let b = bytes[i]
                    if b == UInt8(ascii: "\\") {
                        guard i + 1 < end else { break }
                        value.append(bytes[i + 1])
                        i += 2
                    } else if b == UInt8(ascii: "\"") {
                        closed = true
                        i += 1
                        break
                    } else {
                        value.append(b)
                        i += 1
                    }
                }
                guard closed else { throw refusal("Unterminated quoted X-Matrix value") }
            } else {
                while i < end && isUnquotedValueByte(bytes[i]) { value.append(bytes[i]); i += 1 }
            }
            guard result.updateValue(String(decoding: value, as: UTF8.self), forKey: name) == nil else {
                throw refusal("Repeated X-Matrix parameter \(name.prefix(32))")
            }
            skipSpace()
            if i == end { break }
            guard bytes[i] == UInt8(ascii: ",") else { throw refusal("Malformed X-Matrix parameter list") }
            i += 1
            skipSpace()
        }
        return result
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ b: UInt8) -> Bool {
        if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) { return true }
        return "!#$%&'*+-.^_`|~".utf8.contains(b)
    }

    /// Bytes of an unquoted value: visible ASCII but comma, quote and backslash (colons,
    /// slashes and `=` included, for older senders and unquoted base64).
    static func isUnquotedValueByte(_ b: UInt8) -> Bool {
        b > 0x20 && b < 0x7F && b != UInt8(ascii: ",") && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\")
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
    static func lower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

    static func quoted(_ value: String) -> String {
        var out = "\""
        for c in value.unicodeScalars {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.unicodeScalars.append(c)
        }
        return out + "\""
    }

    static func refusal(_ message: String) -> MatrixError { MatrixError(.unauthorized, message) }
}

/// Signing and checking the JSON object that stands for a federation request (server-server
/// API, "Request Authentication", step 1): `{method, uri, origin, destination, content}`,
/// signed with the JSON signing algorithm. The federation client signs outbound requests;
/// `requireServer` checks inbound ones.
public enum FederationRequestSignature {
    /// The object signed for a request. `uri` is the request target as sent (path and query,
    /// percent-encoded, starting with `/_matrix/`); `content` is the parsed body, absent for
    /// requests without one.
    public static func requestJSON(method: String, uri: String, origin: String, destination: String,
                                   content: JSON?) -> JSON {
        var object: [String: JSON] = [
            "method": .string(method),
            "uri": .string(uri),
            "origin": .string(origin),
            "destination": .string(destination),
        ]
        if let content { object["content"] = content }
        return .object(object)
    }

    /// The `X-Matrix` authorization for a request from `origin` to `destination`, signed by
    /// `key`. Canonical encoding is lenient (`strict: false`): a transaction may carry events
    /// of room versions 1–5 whose integers are out of the canonical range. Throws
    /// `M_INVALID_PARAM` when a server name is invalid, `M_BAD_JSON` when the content holds
    /// a non-finite number.
    public static func authorization(method: String, uri: String, origin: String, destination: String,
                                     content: JSON?, key: SigningKey) throws(MatrixError) -> XMatrixAuthorization {
        let originName = try ServerName(parsing: origin)
        let destinationName = try ServerName(parsing: destination)
        let json = requestJSON(method: method, uri: uri, origin: origin, destination: destination, content: content)
        let message = try json.canonicalEncoded(strict: false)
        let signature = Base64.encode(key.signature(for: message))
        return XMatrixAuthorization(origin: originName, destination: destinationName, keyID: key.keyID, signature: signature)
    }

    /// True when `auth.signature` is `auth.origin`'s signature, by `key`, of the request JSON
    /// with `destination` (the receiver's own name: the spec lets older senders omit the
    /// header's `destination`, and the signed object names the receiver either way; a header
    /// `destination` that differs is the caller's 401 to give).
    public static func verify(_ auth: XMatrixAuthorization, method: String, uri: String,
                              destination: String, content: JSON?, key: VerifyKey) -> Bool {
        guard let signature = Base64.decode(auth.signature) else { return false }
        let json = requestJSON(method: method, uri: uri, origin: auth.origin.rawValue, destination: destination, content: content)
        guard let message = try? json.canonicalEncoded(strict: false) else { return false }
        return key.verify(signature: signature, message: message)
    }
}
