import Matrix

/// Sync filters uploaded by clients (spec: "Filtering"; schema: `user_filters` in
/// `Schema.clientData`). Obtained from `Database.filters`; called by the filter handlers and sync.
public struct FilterStore: Sendable {
    public let database: Database

    public init(database: Database) { self.database = database }

    /// Stores a filter and returns its id (per user: 0, 1, 2... as Synapse numbers them).
    public func addFilter(userID: UserID, json: String) async throws -> Int64 {
        let userID = userID.rawValue
        return try await database.write { db in
            let next = try db.queryFirst("SELECT MAX(filter_id) FROM user_filters WHERE user_id = ?", .text(userID))?
                .optionalInt(0).map { $0 + 1 } ?? 0
            try db.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                           .text(userID), .int(next), .text(json))
            return next
        }
    }

    public func filter(userID: UserID, filterID: Int64) async throws -> String? {
        let userID = userID.rawValue
        return try await database.read { db in
            try db.queryFirst("SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
                              .text(userID), .int(filterID))?.text(0)
        }
    }
}

extension Database {
    /// Sync filters.
    public var filters: FilterStore { FilterStore(database: self) }
}
