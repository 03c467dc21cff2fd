/// An error raised by the storage layer: a failed statement, a lost connection, a value of
/// the wrong type, a closed pool. Carries enough context (backend, SQLSTATE or SQLite code,
/// the statement) to be logged; the App renders it as `M_UNKNOWN` without the detail.
///
/// Thrown by every `Database`, `SQLConnection` and store method; never a crash.
public struct DatabaseError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, coarsely, so callers can branch without parsing messages.
    public enum Kind: Sendable, Hashable {
        /// Could not connect, or the connection was lost.
        case connection
        /// The statement failed (syntax, missing table, type mismatch...).
        case statement
        /// A UNIQUE or PRIMARY KEY constraint was violated.
        case uniqueViolation
        /// Another constraint (NOT NULL, FOREIGN KEY, CHECK) was violated.
        case constraintViolation
        /// A result column could not be read as the requested type.
        case decoding
        /// The database was closed, or is closing.
        case closed
        /// Too many callers are already waiting for a connection.
        case poolExhausted
        /// A migration failed or the schema is newer than this build knows.
        case migration
    }

    public var kind: Kind
    public var message: String
    /// `sqlite` or `postgres`.
    public var backend: SQLDialect?
    /// SQLSTATE (PostgreSQL) or the extended result code (SQLite), when there is one.
    public var code: String?
    /// The statement that failed, when there is one.
    public var sql: String?

    public init(_ kind: Kind, _ message: String, backend: SQLDialect? = nil, code: String? = nil, sql: String? = nil) {
        self.kind = kind
        self.message = message
        self.backend = backend
        self.code = code
        self.sql = sql
    }

    public var description: String {
        var text = "DatabaseError.\(kind)"
        if let backend { text += " [\(backend)" + (code.map { " \($0)" } ?? "") + "]" }
        text += ": \(message)"
        if let sql { text += " -- in: \(sql.count > 300 ? String(sql.prefix(300)) + "..." : sql)" }
        return text
    }
}
