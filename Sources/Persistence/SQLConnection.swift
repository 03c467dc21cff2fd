/// Which SQL dialect a connection speaks. Store code branches on it only where the two
/// dialects truly differ (upserts are written in the common `ON CONFLICT` form instead).
public enum SQLDialect: String, Sendable, Hashable, CustomStringConvertible {
    case sqlite
    case postgres

    public var description: String { rawValue }
}

/// One database connection, lent to a `Database.read` body on the connection's own thread.
///
/// Statements use `?` placeholders on both backends (translated to `$1...$n` for
/// PostgreSQL). Every call blocks the calling thread, which is always the connection's
/// dedicated thread, never the cooperative pool. Do not keep the connection past the body.
public protocol SQLConnection: AnyObject {
    var dialect: SQLDialect { get }

    /// Runs one statement and returns every row it produced.
    func query(_ sql: String, _ bindings: [SQLValue]) throws -> [SQLRow]

    /// Runs one statement and returns the number of rows it inserted, updated or deleted.
    @discardableResult
    func execute(_ sql: String, _ bindings: [SQLValue]) throws -> Int

    /// Runs several `;`-separated statements without bindings (schema scripts).
    func executeScript(_ sql: String) throws
}

/// A connection inside the transaction of a `Database.write` body: the body's statements
/// commit together when it returns and roll back when it throws.
public protocol SQLTransaction: SQLConnection {}

extension SQLConnection {
    public func query(_ sql: String, _ bindings: SQLValue...) throws -> [SQLRow] {
        try query(sql, bindings)
    }

    @discardableResult
    public func execute(_ sql: String, _ bindings: SQLValue...) throws -> Int {
        try execute(sql, bindings)
    }

    /// The first row, or `nil` when there is none.
    public func queryFirst(_ sql: String, _ bindings: [SQLValue]) throws -> SQLRow? {
        try query(sql, bindings).first
    }

    public func queryFirst(_ sql: String, _ bindings: SQLValue...) throws -> SQLRow? {
        try query(sql, bindings).first
    }
}
