import Actors
import Persistence
import Matrix

/// One notification waiting for a pusher: what the push gateway API's `notification` object
/// says about the event (push gateway API, `POST /_matrix/push/v1/notify`), fixed when the
/// pipeline evaluated it; the counts and the device are added at send time.
struct PendingPush: Sendable {
    var eventID: String
    var roomID: String
    var streamOrdering: Int64
    var type: String
    var sender: String
    var senderDisplayName: String?
    var roomName: String?
    var roomAlias: String?
    var content: JSON?
    /// For a member event: its membership, and whether the recipient is its target.
    var membership: String?
    var userIsTarget: Bool?
    /// The `set_tweak` actions as the device's `tweaks`.
    var tweaks: [String: JSON]
    /// Synapse's rule: `high` for encrypted events and for those that highlight or sound.
    var highPriority: Bool
    var queuedAt: Int64

    /// The member event's target, for `userIsTarget`.
    private var memberTarget: String?

    /// What the event says, the same for every recipient: read from the event and the room's
    /// state once per event (`addressed(to:actions:)` adds each recipient's part).
    init(event: PersistedEvent, json: JSON, roomID: RoomID, state: AuthState, includeContent: Bool, queuedAt: Int64) {
        eventID = event.eventID.rawValue
        self.roomID = roomID.rawValue
        streamOrdering = event.streamOrdering
        type = event.type
        sender = event.sender
        senderDisplayName = state[.member(event.sender)]?.content["displayname"]?.stringValue
        roomName = state[StateKey(EventType.roomName, "")]?.content["name"]?.stringValue
        roomAlias = state[StateKey(EventType.roomCanonicalAlias, "")]?.content["alias"]?.stringValue
        content = includeContent ? json["content"] : nil
        if event.type == EventType.roomMember, let key = event.stateKey {
            membership = json["content"]?["membership"]?.stringValue
            memberTarget = key
        }
        tweaks = [:]
        highPriority = false
        self.queuedAt = queuedAt
    }

    /// This notification for `recipient`, whose rules decided `actions`.
    func addressed(to recipient: UserID, actions: [PushAction]) -> PendingPush {
        var push = self
        if let memberTarget { push.userIsTarget = memberTarget == recipient.rawValue }
        for case .setTweak(let name, let value) in actions { push.tweaks[name] = value ?? .bool(true) }
        push.highPriority = type == EventType.roomEncrypted || actions.highlights || push.tweaks["sound"] != nil
        return push
    }

    /// The request body for `pusher` with the user's badge count (`counts.unread`).
    func body(for pusher: HTTPPusher, unread: Int) -> JSON {
        var device: [String: JSON] = ["app_id": .string(pusher.appID), "pushkey": .string(pusher.pushkey),
                                      "pushkey_ts": .int(pusher.pushkeyTs / 1000), "data": .object(pusher.dataMinusURL)]
        if !tweaks.isEmpty { device["tweaks"] = .object(tweaks) }
        var notification: [String: JSON] = [
            "event_id": .string(eventID), "room_id": .string(roomID),
            "counts": ["unread": .int(Int64(unread))], "prio": .string(highPriority ? "high" : "low"),
            "devices": [.object(device)],
        ]
        if !pusher.eventIDOnly {
            notification["type"] = .string(type)
            notification["sender"] = .string(sender)
            if let senderDisplayName { notification["sender_display_name"] = .string(senderDisplayName) }
            if let roomName { notification["room_name"] = .string(roomName) }
            if let roomAlias { notification["room_alias"] = .string(roomAlias) }
            if let content { notification["content"] = content }
            if let membership { notification["membership"] = .string(membership) }
            if let userIsTarget { notification["user_is_target"] = .bool(userIsTarget) }
        }
        return ["notification": .object(notification)]
    }
}

/// An HTTP pusher as its delivery needs it (from its stored client JSON).
struct HTTPPusher: Sendable, Hashable {
    var user: UserID
    var appID: String
    var pushkey: String
    /// When the pusher was set, in milliseconds (the device's `pushkey_ts` is in seconds).
    var pushkeyTs: Int64
    var url: String
    /// `data` without `url`, sent with each notification (as Synapse does).
    var dataMinusURL: [String: JSON]
    /// `data.format` is `event_id_only`: only ids, counts and devices are sent.
    var eventIDOnly: Bool

    var key: PusherKey { PusherKey(user: user, appID: appID, pushkey: pushkey) }

    /// From a stored pusher; nil for kinds other than `http` or without a URL.
    init?(_ stored: PusherStore.Stored) {
        guard let user = try? UserID(parsing: stored.userID), let json = try? JSON.parse(Array(stored.json.utf8)),
              json["kind"]?.stringValue == "http", var data = json["data"]?.objectValue,
              let url = data["url"]?.stringValue else { return nil }
        self.user = user
        appID = stored.appID
        pushkey = stored.pushkey
        pushkeyTs = stored.createdTS
        self.url = url
        data["url"] = nil
        eventIDOnly = data["format"]?.stringValue == "event_id_only"
        dataMinusURL = data
    }
}

/// A pusher's identity: its user, app id and push key.
struct PusherKey: Sendable, Hashable {
    var user: UserID
    var appID: String
    var pushkey: String
}
