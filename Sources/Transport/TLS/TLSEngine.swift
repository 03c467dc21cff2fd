import COpenSSL
import Glibc

/// A TLS failure: the context could not be built (a file missing or unreadable, a key that
/// does not match its certificate), or a connection's handshake or records failed (the peer's
/// certificate did not verify, a protocol version below the minimum, a corrupt record).
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }

    /// The message with OpenSSL's error queue (of this thread), which it empties.
    static func openSSL(_ what: String) -> TLSError {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return TLSError(reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))")
    }
}

/// A TLS protocol version, for the bounds of a context.
public enum TLSVersion: Sendable {
    case tls1_0, tls1_1, tls1_2, tls1_3

    var openSSL: Int32 {
        switch self {
        case .tls1_0: return TLS1_VERSION
        case .tls1_1: return TLS1_1_VERSION
        case .tls1_2: return TLS1_2_VERSION
        case .tls1_3: return TLS1_3_VERSION
        }
    }
}

/// How a client checks the server's certificate.
public enum TLSVerification: Sendable, Equatable {
    /// No check at all (the certificate is not verified, nor its name).
    case none
    /// The chain must lead to a root of the system store or of one of `extraCAFiles` (PEM),
    /// and the certificate must name the host the engine was created for.
    case verify(extraCAFiles: [String])
}

/// An OpenSSL `SSL_CTX`: the configuration every connection of a listener (server) or of an
/// outbound client shares: versions (TLS 1.2 minimum), ALPN `http/1.1`, no session
/// resumption unless asked, and the certificate and key (server) or trust roots (client).
///
/// Built once by whoever owns the listener or the client (the HTTP server, the federation
/// client) and immutable after: replacing a certificate means building a new context, used
/// for new connections while the old one lives as long as the connections that use it.
public final class TLSContext: @unchecked Sendable {  // never mutated after init; OpenSSL locks its reference counts
    let context: OpaquePointer
    /// True for a server (listener) context.
    public let isServer: Bool
    public let verification: TLSVerification

    private init(server: Bool, verification: TLSVerification) throws(TLSError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.openSSL("SSL_CTX_new failed")
        }
        self.context = context
        self.isServer = server
        self.verification = verification
    }

    deinit { SSL_CTX_free(context) }

    /// A server context: `certificateChainFile` holds the leaf certificate first, then its
    /// intermediates (PEM); `privateKeyFile` the key (PEM). Every SNI name is accepted.
    public static func server(certificateChainFile: String, privateKeyFile: String,
                              minimumVersion: TLSVersion = .tls1_2,
                              sessionTickets: Bool = false) throws(TLSError) -> TLSContext {
        let tls = try TLSContext(server: true, verification: .none)
        try tls.configureCommon(minimumVersion: minimumVersion, maximumVersion: nil, sessionTickets: sessionTickets)
        guard SSL_CTX_use_certificate_chain_file(tls.context, certificateChainFile) == 1 else {
            throw TLSError.openSSL("cannot load the certificate chain \(certificateChainFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(tls.context, privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError.openSSL("cannot load the private key \(privateKeyFile)")
        }
        guard SSL_CTX_check_private_key(tls.context) == 1 else {
            throw TLSError.openSSL("the private key \(privateKeyFile) does not match the certificate \(certificateChainFile)")
        }
        myelin_ssl_ctx_server_callbacks(tls.context)
        return tls
    }

    /// A client context. `maximumVersion` caps the versions offered (tests of a server's
    /// minimum use it); nil offers every version from `minimumVersion` up.
    public static func client(verification: TLSVerification,
                              minimumVersion: TLSVersion = .tls1_2, maximumVersion: TLSVersion? = nil,
                              sessionTickets: Bool = false) throws(TLSError) -> TLSContext {
        let tls = try TLSContext(server: false, verification: verification)
        try tls.configureCommon(minimumVersion: minimumVersion, maximumVersion: maximumVersion, sessionTickets: sessionTickets)
        guard myelin_ssl_ctx_client_alpn(tls.context) == 0 else { throw TLSError.openSSL("cannot set ALPN") }
        switch verification {
        case .none:
            SSL_CTX_set_verify(tls.context, SSL_VERIFY_NONE, nil)
        case .verify(let extraCAFiles):
            SSL_CTX_set_verify(tls.context, SSL_VERIFY_PEER, nil)
            guard SSL_CTX_set_default_verify_paths(tls.context) == 1 else {
                throw TLSError.openSSL("cannot load the system certificate store")
            }
            for file in extraCAFiles {
                guard SSL_CTX_load_verify_locations(tls.context, file, nil) == 1 else {
                    throw TLSError.openSSL("cannot load the CA file \(file)")
                }
            }
        }
        return tls
    }

    private func configureCommon(minimumVersion: TLSVersion, maximumVersion: TLSVersion?,
                                 sessionTickets: Bool) throws(TLSError) {
        guard myelin_ssl_ctx_set_min_proto(context, minimumVersion.openSSL) == 1 else {
            throw TLSError.openSSL("cannot set the minimum TLS version")
        }
        if let maximumVersion, myelin_ssl_ctx_set_max_proto(context, maximumVersion.openSSL) != 1 {
            throw TLSError.openSSL("cannot set the maximum TLS version")
        }
        if minimumVersion.openSSL < TLS1_2_VERSION {
            // OpenSSL 3's default security level refuses the SHA-1 signatures of TLS 1.0/1.1;
            // only a test asking for an old version (to see it refused) gets here.
            SSL_CTX_set_security_level(context, 0)
        }
        myelin_ssl_ctx_set_options(context)
        if !sessionTickets { myelin_ssl_ctx_no_resumption(context) }
    }
}

/// One TLS connection's protocol state, on memory buffers: the owner moves ciphertext between
/// the socket and the engine (`receive`, `takeCiphertext`) and plaintext between the engine
/// and its protocol (`read`, `write`). It never touches a socket and never blocks, so it can
/// run on an event loop; it is owned by one thread (the connection's loop).
///
/// Server mode: the HTTP server's TLS listeners make one per accepted connection.
/// Client mode: an outbound client (federation) makes one per connection, with the host name
/// it connects to, used for SNI and for the certificate check.
public final class TLSEngine {
    private let ssl: OpaquePointer
    /// Ciphertext from the peer (the engine reads it).
    private let input: OpaquePointer
    /// Ciphertext for the peer (the engine writes it).
    private let output: OpaquePointer
    /// The context, kept alive as long as the connection.
    public let context: TLSContext
    /// Plaintext written before the handshake finished, sent when it does.
    private var early: [UInt8] = []
    public private(set) var isHandshakeComplete = false
    /// The peer's close_notify arrived.
    public private(set) var receivedCloseNotify = false

    /// A server engine for `context` (a server context), or a client engine that will name
    /// `host` (a DNS name or an IP address literal) in SNI and check the certificate for it.
    /// A client engine without `host` sends no SNI and checks only the chain (if the context
    /// verifies).
    public init(context: TLSContext, host: String? = nil) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else { throw TLSError.openSSL("SSL_new failed") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError.openSSL("BIO_new failed")
        }
        SSL_set_bio(ssl, input, output)  // the SSL owns both from here
        self.ssl = ssl
        self.input = input
        self.output = output
        self.context = context
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let host { try configureClient(host: host) }
        }
    }

    deinit { SSL_free(ssl) }

    private func configureClient(host: String) throws(TLSError) {
        let isIP = Self.isIPLiteral(host)
        // RFC 6066, 3: literal IP addresses are not sent in SNI.
        if !isIP && myelin_ssl_set_sni(ssl, host) != 1 { throw TLSError.openSSL("cannot set SNI \(host)") }
        guard case .verify = context.verification else { return }
        if isIP {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                throw TLSError.openSSL("cannot check the IP address \(host)")
            }
        } else {
            SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            guard SSL_set1_host(ssl, host) == 1 else { throw TLSError.openSSL("cannot check the host \(host)") }
        }
    }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    // MARK: Ciphertext

    /// Ciphertext from the socket, to be decrypted by `read`.
    public func receive(_ ciphertext: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < ciphertext.count {
            let chunk = Int32(clamping: ciphertext.count - offset)
            let n = BIO_write(input, ciphertext.baseAddress! + offset, chunk)
            if n <= 0 { return }  // allocation failure: the record layer will fail and say so
            offset += Int(n)
        }
    }

    /// Ciphertext waiting for the socket (handshake messages, records, alerts).
    public var pendingCiphertext: Int { myelin_bio_pending(output) }

    /// Takes the ciphertext waiting for the socket, appending it to `bytes`.
    public func takeCiphertext(appendingTo bytes: inout [UInt8]) {
        let count = pendingCiphertext
        guard count > 0 else { return }
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        bytes.withUnsafeMutableBytes { raw in
            _ = BIO_read(output, raw.baseAddress! + start, Int32(count))
        }
    }

    /// Takes the ciphertext waiting for the socket.
    public func takeCiphertext() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(pendingCiphertext)
        takeCiphertext(appendingTo: &bytes)
        return bytes
    }

    // MARK: Plaintext

    /// What one `read` produced.
    public enum ReadResult: Equatable, Sendable {
        /// Plaintext bytes at the start of the buffer.
        case bytes(Int)
        /// Nothing more until more ciphertext arrives (the handshake may have progressed:
        /// look at `pendingCiphertext`).
        case wantsInput
        /// The peer closed TLS (close_notify): no more plaintext will come.
        case closed
    }

    /// Advances the handshake and decrypts what `receive` was given into `buffer`. Call it
    /// until it returns something other than `.bytes`. Throws when the handshake or a record
    /// fails; the alert for the peer is then in `pendingCiphertext`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSError) -> ReadResult {
        if receivedCloseNotify { return .closed }
        ERR_clear_error()
        if !isHandshakeComplete {
            guard try advanceHandshake() else { return .wantsInput }
        }
        let n = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if n > 0 { return .bytes(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantsInput
        case SSL_ERROR_ZERO_RETURN:
            receivedCloseNotify = true
            return .closed
        default:
            throw TLSError.openSSL("TLS read failed")
        }
    }

    /// Runs the handshake as far as the input allows; true once it is complete.
    @discardableResult
    public func handshake() throws(TLSError) -> Bool {
        if isHandshakeComplete { return true }
        ERR_clear_error()
        return try advanceHandshake()
    }

    @discardableResult
    private func advanceHandshake() throws(TLSError) -> Bool {
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            isHandshakeComplete = true
            if !early.isEmpty {
                let bytes = early
                early = []
                try write(bytes)
            }
            return true
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return false
        default:
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                let reason = String(cString: X509_verify_cert_error_string(verify))
                _ = TLSError.openSSL("")  // empties the queue
                throw TLSError("TLS handshake failed: certificate verification: \(reason)")
            }
            throw TLSError.openSSL("TLS handshake failed")
        }
    }

    /// Encrypts `plaintext` into records for the socket (`takeCiphertext`). Before the
    /// handshake is complete, the bytes wait and leave once it is (and a client's first
    /// write starts the handshake: its ClientHello is then in `takeCiphertext`).
    public func write(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) {
        guard plaintext.count > 0 else { return }
        guard isHandshakeComplete else {
            early.append(contentsOf: plaintext)
            ERR_clear_error()
            try advanceHandshake()
            return
        }
        ERR_clear_error()
        var offset = 0
        while offset < plaintext.count {
            // Memory BIOs take everything: a write fails only if the connection did.
            let n = SSL_write(ssl, plaintext.baseAddress! + offset, Int32(clamping: plaintext.count - offset))
            if n <= 0 { throw TLSError.openSSL("TLS write failed") }
            offset += Int(n)
        }
    }

    /// `write(_:)` for an array.
    public func write(_ bytes: [UInt8]) throws(TLSError) {
        var failed: TLSError?
        bytes.withUnsafeBytes { raw in
            do throws(TLSError) { try write(raw) } catch { failed = error }
        }
        if let failed { throw failed }
    }

    /// Queues close_notify for the peer (RFC 8446, 6.1); the caller sends `takeCiphertext()`
    /// and then closes the socket without waiting for the peer's own close_notify.
    public func shutdown() {
        guard isHandshakeComplete else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    // MARK: What was negotiated

    /// The protocol ALPN selected, if any (`http/1.1`).
    public var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The server name the client sent in SNI (server mode).
    public var requestedServerName: String? {
        guard let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return nil }
        return String(cString: name)
    }

    /// The negotiated version, as OpenSSL names it ("TLSv1.3").
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }
}
