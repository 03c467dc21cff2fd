import ArgumentParser
import Logging
import Transport

#if canImport(Glibc)
import Glibc
#endif

/// `myelin`: the daemon's command line. With no subcommand it serves with defaults.
@main
struct MyelinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myelin",
        abstract: "Myelin, a Matrix homeserver.",
        version: MyelinVersion.string,
        subcommands: [Serve.self, GenerateConfig.self, RegisterUser.self],
        defaultSubcommand: Serve.self)
}

/// `myelin serve [--config FILE] [--listen HOST:PORT] [--data-dir DIR]`
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the homeserver.")

    @Option(name: .long, help: "The YAML configuration file (default: none, every default applies).")
    var config: String?

    @Option(name: .long, help: "Listen on HOST:PORT instead of the configured listeners.")
    var listen: String?

    @Option(name: .long, help: "Keep data (database, signing key, media) in DIR.")
    var dataDir: String?

    func run() async throws {
        let configuration: Configuration
        do {
            configuration = try Self.resolve(configFile: config, listen: listen, dataDir: dataDir)
        } catch let error as ConfigurationError {
            FileError.print("myelin: configuration error: \(error)")
            throw ExitCode(2)
        }
        let logger = Self.bootstrapLogging(level: configuration.logging.level)
        let server: MyelinServer
        do {
            server = try await MyelinServer(configuration: configuration, logger: logger)
            try await server.start()
        } catch {
            FileError.print("myelin: cannot start: \(error)")
            throw ExitCode(1)
        }
        await server.waitUntilStopped()
    }

    static func resolve(configFile: String?, listen: String?, dataDir: String?) throws -> Configuration {
        var configuration = Configuration()
        if let configFile {
            guard let text = FileError.read(configFile) else {
                throw ConfigurationError(path: "", message: "cannot read \(configFile)")
            }
            configuration = try ConfigurationLoader.load(yaml: text)
        }
        if let listen {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                  (0...65535).contains(port) else {
                throw ConfigurationError(path: "--listen", message: "expected HOST:PORT, not '\(listen)'")
            }
            var host = String(listen[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            configuration.listeners = [Configuration.Listener(host: host.isEmpty ? "127.0.0.1" : host, port: port)]
        }
        if let dataDir { configuration.dataDirectory = dataDir }
        return configuration
    }

    static func bootstrapLogging(level: String) -> Logger {
        let parsed = Logger.Level(rawValue: level) ?? .info
        // Every logger of the process also writes to `LogRing.process`, which the admin
        // `logs` endpoint reads (Admin/LogRing.swift).
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = parsed
            return RingLogHandler(inner: handler, ring: LogRing.process, ringLevel: parsed, label: label)
        }
        var logger = Logger(label: "myelin")
        logger.logLevel = parsed
        return logger
    }
}

/// `myelin generate-config --server-name NAME`
struct GenerateConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-config",
        abstract: "Print a commented configuration file with every key and its default.")

    @Option(name: .long, help: "The server name (the part after ':' in user IDs).")
    var serverName: String = "localhost"

    func run() throws {
        do {
            _ = try ServerNameCheck.validate(serverName, path: "--server-name")
        } catch {
            FileError.print("myelin: \(error)")
            throw ExitCode(2)
        }
        print(ConfigurationTemplate.render(serverName: serverName), terminator: "")
    }
}

/// Small file helpers without Foundation.
enum FileError {
    static func print(_ message: String) {
        let line = message + "\n"
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
