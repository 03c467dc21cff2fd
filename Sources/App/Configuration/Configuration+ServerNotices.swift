extension Configuration {
    /// The `server_notices` section (Synapse's): who sends server notices and how their room
    /// is named. Each user gets one server-notices room, created by the system user on the
    /// first notice (docs/admin.md, "Rooms").
    struct ServerNotices: Sendable, Equatable {
        var enabled = true
        /// The local part of the system user that sends notices (`@notices:server`).
        var systemMXIDLocalpart = "notices"
        var systemMXIDDisplayName: String? = "Server Notices"
        var roomName = "Server Notices"
        /// Optional: the system user's avatar, the room's avatar and topic (`mxc://` URIs for
        /// the avatars), as Synapse's keys.
        var systemMXIDAvatarURL: String? = nil
        var roomAvatarURL: String? = nil
        var roomTopic: String? = nil
        /// Join the user to the notices room instead of only inviting them (Synapse's
        /// `auto_join`, off).
        var autoJoin = false
    }
}

extension ConfigurationLoader {
    /// The `server_notices` section.
    static func readServerNotices(_ top: Section, _ configuration: inout Configuration) throws {
        try top.section("server_notices") { s in
            try s.bool("enabled") { configuration.serverNotices.enabled = $0 }
            try s.string("system_mxid_localpart") { text in
                guard !text.isEmpty, text.utf8.count <= 64,
                      text.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || "._=-/".utf8.contains($0) }) else {
                    throw ConfigurationError(path: s.keyPath("system_mxid_localpart"), message: "not a valid user localpart")
                }
                configuration.serverNotices.systemMXIDLocalpart = text
            }
            try s.string("system_mxid_display_name") { configuration.serverNotices.systemMXIDDisplayName = $0.isEmpty ? nil : $0 }
            try s.string("room_name") { configuration.serverNotices.roomName = $0 }
            try s.bool("auto_join") { configuration.serverNotices.autoJoin = $0 }
            try s.string("system_mxid_avatar_url") { configuration.serverNotices.systemMXIDAvatarURL = $0.isEmpty ? nil : $0 }
            try s.string("room_avatar_url") { configuration.serverNotices.roomAvatarURL = $0.isEmpty ? nil : $0 }
            try s.string("room_topic") { configuration.serverNotices.roomTopic = $0.isEmpty ? nil : $0 }
        }
    }
}
