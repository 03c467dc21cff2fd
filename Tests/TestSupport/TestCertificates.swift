import Glibc

/// A throwaway certificate authority in a temporary directory, made with the `openssl`
/// command line, and the leaf certificates it issues for test servers (TLS listeners,
/// federation peers). Every test that needs TLS makes one; `remove()` deletes the directory.
///
/// Keys are P-256 (fast to make); certificates are valid from an hour ago for two days.
public final class TestCertificates: @unchecked Sendable {  // immutable after init, except the serial, used by one test at a time
    /// A leaf certificate and its key (PEM files).
    public struct Leaf: Sendable {
        /// The leaf certificate alone (issued by the CA directly: no intermediate).
        public let certificateFile: String
        public let privateKeyFile: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public let directory: String
    /// The CA's certificate (PEM): the trust root a client under test is given.
    public let caCertificateFile: String
    public let caKeyFile: String
    private let openssl: String
    private var serial = 0

    /// Makes a new CA (its subject names `commonName`) in a fresh temporary directory.
    public init(commonName: String = "Myelin Test CA") throws {
        let candidates: [String] = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/bin/openssl"]
        guard let path = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw Failure(description: "the openssl command line is not installed")
        }
        openssl = path
        var template = Array("/tmp/myelin-tls-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp failed: \(errno)") }
        directory = String(cString: made)
        caCertificateFile = directory + "/ca.pem"
        caKeyFile = directory + "/ca.key"
        let config = directory + "/ca.cnf"
        try Self.write(config, """
            [req]
            distinguished_name = dn
            x509_extensions = ca
            prompt = no
            [dn]
            CN = \(commonName)
            [ca]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign, cRLSign
            subjectKeyIdentifier = hash

            """)
        try run(["req", "-x509", "-config", config, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", caKeyFile, "-out", caCertificateFile, "-days", "2"])
    }

    /// Issues a certificate for `dnsNames` and `ipAddresses` (subjectAltName), usable by a
    /// server and a client. `name` names its files in `directory`.
    public func issue(_ name: String, dnsNames: [String] = [], ipAddresses: [String] = []) throws -> Leaf {
        precondition(!dnsNames.isEmpty || !ipAddresses.isEmpty, "a certificate needs a name")
        serial += 1
        let base = directory + "/" + name
        let names = dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }
        try Self.write(base + ".cnf", """
            [req]
            distinguished_name = dn
            prompt = no
            [dn]
            CN = \(dnsNames.first ?? ipAddresses[0])
            [leaf]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature, keyEncipherment
            extendedKeyUsage = serverAuth, clientAuth
            subjectAltName = \(names.joined(separator: ", "))

            """)
        let leaf = Leaf(certificateFile: base + ".pem", privateKeyFile: base + ".key")
        try run(["req", "-new", "-config", base + ".cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", leaf.privateKeyFile, "-out", base + ".csr"])
        try run(["x509", "-req", "-in", base + ".csr", "-CA", caCertificateFile, "-CAkey", caKeyFile,
                 "-set_serial", String(1000 * Int(getpid() % 100_000) + serial), "-days", "2",
                 "-extfile", base + ".cnf", "-extensions", "leaf", "-out", leaf.certificateFile])
        return leaf
    }

    /// Deletes the directory and everything in it.
    public func remove() {
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name != "." && name != ".." { unlink(directory + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(directory)
    }

    private func run(_ arguments: [String]) throws {
        let child = try ChildProcess(path: openssl, arguments: arguments)
        while case .bytes = child.read(timeoutMs: 30_000) {}  // drain its standard output
        let end = child.wait()
        guard end == .exited(0) else {
            throw Failure(description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(end)")
        }
    }

    private static func write(_ path: String, _ text: String) throws {
        guard let file = fopen(path, "w") else { throw Failure(description: "cannot write \(path): \(errno)") }
        defer { fclose(file) }
        guard fputs(text, file) >= 0 else { throw Failure(description: "cannot write \(path)") }
    }
}
