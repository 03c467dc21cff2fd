import Matrix

/// The effective configuration as JSON for `GET /_synapse/admin/v1/config`, with every
/// secret redacted. The whole `Configuration` is walked by reflection (so a section added
/// later is shown without an edit here), keys in the YAML file's snake_case.
///
/// Redaction fails closed: a string under a key that names a secret (`secret`, `password`,
/// `token`, `macaroon`, `credential`, `api_key`, `private_key`, `signing_key`...) is
/// replaced by `"<redacted>"` (an unset one stays null, so operators see whether it is
/// set); connection strings (`conninfo`, `dsn`, `database_url`) keep their shape with the
/// password removed; and then any string anywhere that contains one of the redacted values
/// is redacted as well (a secret copied into another field does not leak through it).
enum AdminServerConfig {
    static let redacted = "<redacted>"
    static let secretMarkers = ["secret", "password", "passwd", "token", "macaroon", "credential", "api_key",
                                "apikey", "private_key", "signing_key", "turn_key", "push_key", "auth_key"]
    static let connectionMarkers = ["conninfo", "dsn", "database_url", "connection_string"]

    static func render(_ configuration: Configuration) -> JSON {
        var secrets: [String] = []
        let first = walk(configuration, key: nil, secrets: &secrets)
        let known = secrets.filter { $0.utf8.count >= 4 }
        return known.isEmpty ? first : scrub(first, known)
    }

    static func isSecretKey(_ key: String) -> Bool {
        let lower = key.lowercased()
        if lower.hasSuffix("_path") || lower.hasSuffix("_file") || lower.hasSuffix("_ms") || lower.hasSuffix("_seconds") {
            return false
        }
        return secretMarkers.contains { lower.contains($0) }
    }

    static func isConnectionKey(_ key: String) -> Bool {
        let lower = key.lowercased()
        return connectionMarkers.contains { lower.contains($0) }
    }

    /// `camelCase` → `snake_case`.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for c in name {
            if c.isUppercase {
                if !out.isEmpty { out += "_" }
                out += c.lowercased()
            } else {
                out.append(c)
            }
        }
        return out
    }

    private static func walk(_ value: Any, key: String?, secrets: inout [String]) -> JSON {
        let secretKey = key.map(isSecretKey) ?? false
        let connectionKey = key.map(isConnectionKey) ?? false
        switch value {
        case let string as String:
            if secretKey {
                if !string.isEmpty { secrets.append(string) }
                return string.isEmpty ? .string("") : .string(redacted)
            }
            if connectionKey {
                let (clean, found) = ConnectionString.redactingPasswords(string)
                secrets.append(contentsOf: found)
                return .string(clean)
            }
            return .string(string)
        case let bool as Bool: return .bool(bool)
        case let int as Int: return .int(Int64(int))
        case let int as Int32: return .int(Int64(int))
        case let int as Int64: return .int(int)
        case let int as UInt64: return int <= UInt64(Int64.max) ? .int(Int64(int)) : .string(String(int))
        case let int as UInt16: return .int(Int64(int))
        case let int as UInt32: return .int(Int64(int))
        case let double as Double: return .double(double)
        case let duration as Duration:
            let c = duration.components
            return .int(c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000)
        default: break
        }
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .optional:
            guard let child = mirror.children.first else { return .null }
            return walk(child.value, key: key, secrets: &secrets)
        case .collection, .set:
            return .array(mirror.children.map { walk($0.value, key: key, secrets: &secrets) })
        case .dictionary:
            var object: [String: JSON] = [:]
            for child in mirror.children {
                let pair = Mirror(reflecting: child.value).children.map(\.value)
                guard pair.count == 2 else { continue }
                let name = "\(pair[0])"
                object[name] = walk(pair[1], key: name, secrets: &secrets)
            }
            return .object(object)
        case .struct, .class:
            var object: [String: JSON] = [:]
            for child in mirror.children {
                guard let label = child.label else { continue }
                let name = snakeCase(label.hasPrefix("_") ? String(label.dropFirst()) : label)
                object[name] = walk(child.value, key: name, secrets: &secrets)
            }
            return .object(object)
        case .enum:
            if mirror.children.isEmpty { return .string("\(value)") }
            // An enum with a payload: a one-key object, the payload walked under the case.
            var object: [String: JSON] = [:]
            for child in mirror.children {
                let name = child.label ?? "value"
                object[name] = walk(child.value, key: key, secrets: &secrets)
            }
            return .object(object)
        case .tuple:
            return .array(mirror.children.map { walk($0.value, key: key, secrets: &secrets) })
        default:
            // Anything else is shown by its description, but only outside secret keys.
            return secretKey ? .string(redacted) : .string("\(value)")
        }
    }

    private static func scrub(_ json: JSON, _ secrets: [String]) -> JSON {
        switch json {
        case .string(let s): return secrets.contains(where: { s.contains($0) }) ? .string(redacted) : json
        case .array(let items): return .array(items.map { scrub($0, secrets) })
        case .object(let object): return .object(object.mapValues { scrub($0, secrets) })
        default: return json
        }
    }
}

/// Passwords in database connection strings: libpq's `key=value` form (`password=x`,
/// `password='x y'`) and URIs (`postgresql://user:x@host/db?password=x`).
enum ConnectionString {
    /// The string with every password replaced, and the passwords found.
    static func redactingPasswords(_ text: String) -> (String, [String]) {
        var found: [String] = []
        var out = text
        // URI user info: scheme://user:password@host
        if let schemeEnd = out.firstRange(of: "://") {
            let rest = out[schemeEnd.upperBound...]
            let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                let password = String(authority[authority.index(after: colon)..<at])
                if !password.isEmpty {
                    found.append(password)
                    out.replaceSubrange(authority.index(after: colon)..<at, with: AdminServerConfig.redacted)
                }
            }
        }
        // key=value pairs (libpq keywords and URI query parameters) whose key names a password.
        var result = ""
        var index = out.startIndex
        while index < out.endIndex {
            guard let equals = out[index...].firstIndex(of: "=") else {
                result += out[index...]
                break
            }
            // The key: letters, digits and underscores right before `=`.
            var keyStart = equals
            while keyStart > index {
                let before = out.index(before: keyStart)
                let c = out[before]
                guard c.isLetter || c.isNumber || c == "_" else { break }
                keyStart = before
            }
            let key = out[keyStart..<equals].lowercased()
            result += out[index...equals]
            var valueStart = out.index(after: equals)
            guard key.contains("password") || key.contains("passwd") else {
                index = valueStart
                continue
            }
            var valueEnd: String.Index
            if valueStart < out.endIndex && out[valueStart] == "'" {
                valueStart = out.index(after: valueStart)
                valueEnd = valueStart
                while valueEnd < out.endIndex && out[valueEnd] != "'" {
                    if out[valueEnd] == "\\" && out.index(after: valueEnd) < out.endIndex { valueEnd = out.index(after: valueEnd) }
                    valueEnd = out.index(after: valueEnd)
                }
                found.append(String(out[valueStart..<valueEnd]))
                result += "'" + AdminServerConfig.redacted + "'"
                index = valueEnd < out.endIndex ? out.index(after: valueEnd) : valueEnd
            } else {
                valueEnd = out[valueStart...].firstIndex(where: { $0 == " " || $0 == "&" || $0 == "\t" }) ?? out.endIndex
                let value = String(out[valueStart..<valueEnd])
                if !value.isEmpty { found.append(value) }
                result += AdminServerConfig.redacted
                index = valueEnd
            }
        }
        return (result, found.filter { !$0.isEmpty && $0 != AdminServerConfig.redacted })
    }
}
