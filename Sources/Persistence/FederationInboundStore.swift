import Matrix

/// What inbound federation keeps beside the rooms (schema: `Schema.federationRooms`): the
/// answer given to each `/send` transaction, so that a replay by its origin is answered the
/// same and applies nothing, and invites of local users to rooms this server is not in.
/// Used by the App's federation handlers and by `/sync` (invites).
public struct FederationInboundStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// The answer recorded for `(origin, txnID)`, if that transaction was processed.
    public func transactionResponse(origin: String, txnID: String) async throws -> [UInt8]? {
        try await database.read { db in
            try db.queryFirst("SELECT response_json FROM federation_inbound_txns WHERE origin = ? AND txn_id = ?",
                              .text(origin), .text(txnID))?.blob(0)
        }
    }

    /// Records the answer to a processed transaction (a concurrent duplicate keeps the first).
    public func recordTransaction(origin: String, txnID: String, response: [UInt8], now: Int64) async throws {
        try await database.write { db in
            if try db.queryFirst("SELECT 1 FROM federation_inbound_txns WHERE origin = ? AND txn_id = ?",
                                 .text(origin), .text(txnID)) != nil { return }
            try db.execute("INSERT INTO federation_inbound_txns (origin, txn_id, response_json, received_ts) VALUES (?, ?, ?, ?)",
                           .text(origin), .text(txnID), .blob(response), .int(now))
        }
    }

    /// An invite of a local user to a room of another server.
    public struct Invite: Sendable, Equatable {
        public var roomID: String
        public var userID: String
        public var eventID: String
        public var roomVersion: String
        public var eventJSON: [UInt8]
        /// The `invite_room_state` (stripped state events) as a JSON array.
        public var strippedStateJSON: [UInt8]
        public init(roomID: String, userID: String, eventID: String, roomVersion: String, eventJSON: [UInt8],
                    strippedStateJSON: [UInt8]) {
            self.roomID = roomID; self.userID = userID; self.eventID = eventID; self.roomVersion = roomVersion
            self.eventJSON = eventJSON; self.strippedStateJSON = strippedStateJSON
        }
    }

    /// Stores (or replaces) an invite, with the membership row that makes `/sync` show it,
    /// in one transaction.
    public static func storeInvite(_ db: any SQLTransaction, _ invite: Invite, position: Int64) throws {
        try db.execute("DELETE FROM federation_invites WHERE room_id = ? AND user_id = ?", .text(invite.roomID), .text(invite.userID))
        try db.execute("""
            INSERT INTO federation_invites (room_id, user_id, event_id, room_version, event_json, stripped_state_json)
            VALUES (?, ?, ?, ?, ?, ?)
            """, .text(invite.roomID), .text(invite.userID), .text(invite.eventID), .text(invite.roomVersion),
            .blob(invite.eventJSON), .blob(invite.strippedStateJSON))
        try MembershipStore.setMembership(db, MembershipStore.Membership(
            roomID: invite.roomID, userID: invite.userID, membership: MembershipState.invite.rawValue,
            eventID: invite.eventID, streamOrdering: position))
    }

    /// The stored invite of `userID` to `roomID`, if any.
    public func invite(roomID: String, userID: String) async throws -> Invite? {
        try await database.read { db in
            guard let row = try db.queryFirst("""
                SELECT event_id, room_version, event_json, stripped_state_json FROM federation_invites
                WHERE room_id = ? AND user_id = ?
                """, .text(roomID), .text(userID)) else { return nil }
            return Invite(roomID: roomID, userID: userID, eventID: try row.text(0), roomVersion: try row.text(1),
                          eventJSON: try row.blob(2), strippedStateJSON: try row.blob(3))
        }
    }
}
