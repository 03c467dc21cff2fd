import Matrix
import Transport

/// Account locking and suspension (spec: client-server API, "Account moderation"), as the
/// request path sees them: `Accounts.authenticate` refuses a locked user's requests (401
/// `M_USER_LOCKED` with `soft_logout`, logout aside) and a suspended user's actions (403
/// `M_USER_SUSPENDED`) before any handler runs. The flags are set by the admin API
/// (`AdminUsers+Moderation.swift`) and read with the user when a session activates.
enum AccountModeration {
    static var locked: MatrixError {
        MatrixError("M_USER_LOCKED", "This account has been locked", status: 401, extra: ["soft_logout": true])
    }

    static var suspended: MatrixError {
        MatrixError("M_USER_SUSPENDED", "You cannot perform this action while suspended.", status: 403)
    }

    /// The client-server path after `/_matrix/client/<version>/`, as segments; nil for
    /// another API.
    static func clientSegments(_ path: Substring) -> [Substring]? {
        let segments = path.split(separator: "/")
        guard segments.count > 2, segments[0] == "_matrix", segments[1] == "client" else { return nil }
        return Array(segments.dropFirst(3))
    }

    /// `POST /logout` and `/logout/all`, which a locked user may still call (spec).
    static func isLogout(_ path: Substring) -> Bool {
        guard let rest = clientSegments(path) else { return false }
        return rest == ["logout"] || rest == ["logout", "all"]
    }

    /// Whether a suspended user is refused this request: the specification's recommended set
    /// (joining, knocking, inviting, sending messages, changing the profile) and what would
    /// bypass it (creating, upgrading a room, state events, kicks and bans, aliases; redacting
    /// another's event is refused by the redaction handler, which knows the sender). Reading,
    /// leaving, devices, keys, key backup, receipts, typing, account data, own redactions, logout
    /// and deactivation stay allowed.
    static func suspensionForbids(_ method: HTTPMethod, _ path: Substring) -> Bool {
        guard method == .post || method == .put, let rest = clientSegments(path), let first = rest.first else {
            return false
        }
        switch first {
        case "createRoom", "join", "knock": return method == .post
        case "profile": return method == .put
        case "directory": return method == .put && rest.count > 1 && rest[1] == "room"
        case "rooms":
            guard rest.count > 2 else { return false }
            switch rest[2] {
            case "join", "invite", "kick", "ban", "unban", "upgrade": return method == .post
            case "state": return method == .put
            case "send": return !(rest.count > 3 && rest[3] == "m.room.redaction")
            default: return false
            }
        default: return false
        }
    }
}
