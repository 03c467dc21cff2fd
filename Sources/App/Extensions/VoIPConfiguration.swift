extension Configuration {
    /// The `voip:` section: the TURN servers handed to clients by `voip/turnServer`
    /// (docs/extensions.md, "VoIP"). The keys inside are Synapse's top-level names, so a
    /// Synapse block moves over indented under `voip:`.
    struct VoIP: Sendable, Equatable {
        /// `turn:` / `turns:` URIs clients use; empty means no TURN service (404 `M_NOT_FOUND`).
        var turnUris: [String] = []
        /// coturn's `static-auth-secret` (`use-auth-secret`): credentials are made per user,
        /// `username = "<expiry unix seconds>:<user id>"`, `password = base64(HMAC-SHA1(secret,
        /// username))`. Redacted by the admin `config` endpoint (its key names a secret).
        var turnSharedSecret: String? = nil
        /// Fixed credentials instead of the shared secret (Synapse's `turn_username`,
        /// `turn_password`); the shared secret wins when both are set.
        var turnUsername: String? = nil
        var turnPassword: String? = nil
        /// How long handed-out credentials stay valid (Synapse's `turn_user_lifetime`, 1h).
        var turnUserLifetimeMs = 3_600_000
        /// Guests (and the seed's unauthenticated `voip/turnServer/guest`) get credentials too.
        var turnAllowGuests = true
        /// `stun:` URIs listed by the seed's `voip/config`.
        var stunUris: [String] = []

        var isConfigured: Bool { !turnUris.isEmpty && (turnSharedSecret != nil || (turnUsername != nil && turnPassword != nil)) }
    }
}

extension ConfigurationLoader {
    /// The `voip` section.
    static func readVoIP(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("voip") { v in
            func uris(_ key: String, schemes: [String]) throws -> [String]? {
                var found: [String]?
                try v.sequence(key) { items in
                    found = try items.map { item in
                        let text = try item.scalarString()
                        guard schemes.contains(where: { text.hasPrefix($0 + ":") }), text.utf8.count <= 512 else {
                            throw ConfigurationError(path: item.path, message: "expected a \(schemes.joined(separator: "/")): URI")
                        }
                        return text
                    }
                }
                return found
            }
            if let list = try uris("turn_uris", schemes: ["turn", "turns"]) { configuration.voip.turnUris = list }
            if let list = try uris("stun_uris", schemes: ["stun", "stuns"]) { configuration.voip.stunUris = list }
            try v.string("turn_shared_secret") { configuration.voip.turnSharedSecret = $0.isEmpty ? nil : $0 }
            try v.string("turn_username") { configuration.voip.turnUsername = $0.isEmpty ? nil : $0 }
            try v.string("turn_password") { configuration.voip.turnPassword = $0.isEmpty ? nil : $0 }
            try v.string("turn_user_lifetime") { text in
                guard let ms = duration(text), ms >= 1_000, ms <= 365 * 86_400_000 else {
                    throw ConfigurationError(path: v.keyPath("turn_user_lifetime"),
                                             message: "expected a duration between 1s and 365d (milliseconds, or 30s, 10m, 1h, 2d, 1w)")
                }
                configuration.voip.turnUserLifetimeMs = ms
            }
            try v.bool("turn_allow_guests") { configuration.voip.turnAllowGuests = $0 }
        }
    }

    /// Synapse's durations: a bare integer is milliseconds; a suffix s, m, h, d, w or y scales it.
    static func duration(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000]
        guard let last = text.last, text.utf8.count <= 16 else { return nil }
        if let unit = units[last] {
            guard let n = Int(text.dropLast()), n >= 0 else { return nil }
            let (product, overflow) = n.multipliedReportingOverflow(by: unit)
            return overflow ? nil : product
        }
        guard let n = Int(text), n >= 0 else { return nil }
        return n
    }
}

extension ConfigurationTemplate {
    static func voip(_ d: Configuration) -> String {
        let v = d.voip
        return """

        # TURN for calls: GET /_matrix/client/v3/voip/turnServer (and the seed's voip/config and
        # voip/turnServer/guest) hand these out; with no turn_uris they answer 404 M_NOT_FOUND.
        # Synapse's key names. With coturn's use-auth-secret, set turn_shared_secret to its
        # static-auth-secret: each user gets "<expiry>:<user id>" and an HMAC-SHA1 password.
        voip:
          # e.g. ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]
          turn_uris: []
          turn_shared_secret: ~
          # fixed credentials instead of the shared secret
          turn_username: ~
          turn_password: ~
          # how long credentials stay valid: milliseconds, or 30s, 10m, 1h, 2d
          turn_user_lifetime: \(v.turnUserLifetimeMs)
          # guests get credentials too, and so does the unauthenticated voip/turnServer/guest
          turn_allow_guests: \(v.turnAllowGuests)
          # listed by voip/config, e.g. ["stun:stun.example.org:3478"]
          stun_uris: []

        """
    }
}
