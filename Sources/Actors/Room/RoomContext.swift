import Matrix
import Persistence

/// What every room actor shares: the store, the room-events stream, the server's name and
/// signing key, the recent-events ring size, and the services a room actor updates itself
/// after each commit (no callback into the App): the timeline service (its ring and
/// newest position), the membership service (memberships per user) and the notifier
/// fan-out (wake-ups). Built once by the App and handed to `Rooms`.
public struct RoomContext: Sendable {
    public var database: Database
    /// The global ordering of room events (`events.stream_ordering`).
    public var events: StreamTracker
    public var serverName: ServerName
    public var signingKey: SigningKey
    /// Events each room keeps in memory with their bytes (`actors.room_recent_events`).
    public var recentEventsLimit: Int
    /// Receives each actor's ring once a batch is durable and *before* its positions become
    /// visible, so a reader of the visible position never finds the ring behind it.
    public var timelines: TimelineService
    /// Receives each durable batch's membership changes, before its positions are visible.
    public var memberships: MembershipService
    /// Woken after a batch's positions became visible (nil: nobody long-polls, as in tests).
    public var fanout: NotifierFanout?
    /// Told of each published batch, to wake the destinations of the room's remote servers
    /// (nil: no federation, as in tests).
    public var federation: FederationDestinations? = nil
    /// Told of each published batch with the room's state after it, to evaluate push rules
    /// for the local members (nil: no push, as in tests). Must return at once: the work
    /// happens off the room actor.
    public var push: (any PushPipelineHook)? = nil

    public init(database: Database, events: StreamTracker, serverName: ServerName, signingKey: SigningKey,
                recentEventsLimit: Int, timelines: TimelineService = TimelineService(),
                memberships: MembershipService? = nil, fanout: NotifierFanout? = nil) {
        self.database = database
        self.events = events
        self.serverName = serverName
        self.signingKey = signingKey
        self.recentEventsLimit = recentEventsLimit
        self.timelines = timelines
        self.memberships = memberships ?? MembershipService(database: database)
        self.fanout = fanout
    }

    /// Seeds the room-events stream from the store.
    public static func loadEventStream(_ database: Database) async throws -> StreamTracker {
        try await StreamTracker.load(name: "events", from: database, maxPositionSQL: RoomEventStore.maxStreamOrderingSQL)
    }
}

/// Receives each batch a room published (the App's push pipeline). Called on the room
/// actor: it only enqueues.
public protocol PushPipelineHook: Sendable {
    func published(_ roomID: RoomID, events: [PersistedEvent], state: AuthState, members: PushMembers)
}

/// A room's joined members as push rules see them: the local ones (each with the display
/// name of their member event) and how many are joined in all (`room_member_count`). Kept by
/// the room actor until a member event, so a message costs no scan of the state and no
/// parsing of its members' ids.
public struct PushMembers: Sendable {
    public struct Member: Sendable {
        public var user: UserID
        public var displayName: String?

        public init(user: UserID, displayName: String?) {
            self.user = user
            self.displayName = displayName
        }
    }

    public var local: [Member]
    public var joined: Int

    /// The members of `state` (of the server `localServer`).
    public init(_ state: AuthState, localServer: ServerName) {
        var local: [Member] = []
        var joined = 0
        for (key, pdu) in state where key.type == EventType.roomMember && pdu.membership == MembershipState.join.rawValue {
            joined += 1
            guard let user = try? UserID(parsing: key.stateKey), user.serverName == localServer else { continue }
            local.append(Member(user: user, displayName: pdu.content["displayname"]?.stringValue))
        }
        self.local = local
        self.joined = joined
    }
}

/// Events a room persisted, as published to the notifier: positions and who is concerned.
public struct PublishedEvents: Sendable {
    public var roomID: RoomID
    public var events: [PersistedEvent]
    /// Members joined or invited after the batch, plus users whose membership it changed.
    public var interestedUsers: Set<UserID>
    /// The room-events stream's visible position after the batch.
    public var visiblePosition: Int64
}

/// An event as acknowledged to its sender: committed, with its position and bytes.
public struct PersistedEvent: Sendable, Equatable {
    public var eventID: EventID
    public var streamOrdering: Int64
    public var depth: Int64
    public var type: String
    public var stateKey: String?
    /// The event's serialized JSON as stored (federation form).
    public var bytes: [UInt8]
    public var sender: String = ""
    /// The client form served by sync and `/messages` (redacted form once redacted).
    public var clientBytes: [UInt8] = []
    /// The sending device's transaction, for `unsigned.transaction_id`.
    public var txn: TransactionRef? = nil
    /// The client form with `unsigned.transaction_id`, served to the sending device only
    /// (computed once with the event; nil once redacted).
    public var clientBytesForSender: [UInt8]? = nil
    /// For a state event, the event it replaced (`unsigned.replaces_state`).
    public var replacesState: String? = nil

    /// `clientBytes` with `unsigned.transaction_id` added.
    public static func withTransactionID(_ clientBytes: [UInt8], _ txnID: String) -> [UInt8]? {
        guard var object = (try? JSON.parse(clientBytes))?.objectValue else { return nil }
        var unsigned = object["unsigned"]?.objectValue ?? [:]
        unsigned["transaction_id"] = .string(txnID)
        object["unsigned"] = .object(unsigned)
        return JSON.object(object).encoded()
    }
}

/// A client's transaction id for a send (`PUT .../send/{type}/{txnId}`), scoped to the device.
public struct TransactionRef: Sendable, Hashable {
    public var userID: String
    public var deviceID: String
    /// The request path without the transaction id (`send/{roomId}/{type}`,
    /// `redact/{roomId}/{eventId}`): the same id on another path is another transaction.
    public var scope: String
    public var txnID: String
    public init(userID: String, deviceID: String, scope: String, txnID: String) {
        self.userID = userID; self.deviceID = deviceID; self.scope = scope; self.txnID = txnID
    }
}

/// A room's current shape, for comparisons and diagnostics: the state's event ids by key,
/// the forward extremities, and the depth the next event will have.
public struct RoomSnapshot: Sendable, Equatable {
    public var roomVersion: String
    public var state: [StateKey: EventID]
    public var extremities: [EventID]
    public var nextDepth: Int64
    public var lastStreamOrdering: Int64
}

/// The content of one event to send, before the room fills in the protocol fields.
public struct EventDraft: Sendable {
    public var type: String
    public var sender: UserID
    public var stateKey: String?
    public var content: [String: JSON]
    public var redacts: EventID?
    /// Makes the send idempotent: a second draft with the same transaction yields the
    /// first one's event (also across restarts, through `event_txns`).
    public var txn: TransactionRef?

    public init(type: String, sender: UserID, stateKey: String? = nil, content: [String: JSON], redacts: EventID? = nil,
                txn: TransactionRef? = nil) {
        self.type = type
        self.sender = sender
        self.stateKey = stateKey
        self.content = content
        self.redacts = redacts
        self.txn = txn
    }
}

/// A room actor stopped (deactivated or failed) before handling the request; the caller
/// asks the registry again. `Rooms.send` does so.
public struct RoomActorUnavailable: Error, Sendable {}

extension PersistedEvent {
    /// The newest events of `ring` (oldest first, every event after `floor`) with positions
    /// in `(after, upTo]` that pass `include`: at most `limit`, and whether older matching
    /// ones exist in that range; nil when the ring cannot tell (it starts after `after` and
    /// holds fewer than `limit` matches). Used by the room actor and by readers of its published ring.
    public static func newest(in ring: [PersistedEvent], floor: Int64, after: Int64, upTo: Int64, limit: Int,
                              include: (PersistedEvent) -> Bool) -> (events: [PersistedEvent], limited: Bool)? {
        var picked: [PersistedEvent] = []
        for event in ring.reversed() where event.streamOrdering <= upTo {
            if event.streamOrdering <= after { break }
            guard include(event) else { continue }
            if picked.count == limit { return (picked.reversed(), true) }
            picked.append(event)
        }
        if after >= floor { return (picked.reversed(), false) }
        return nil
    }
}
