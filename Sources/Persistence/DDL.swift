/// Schema SQL written once for both dialects. The few places where SQLite and PostgreSQL
/// differ are interpolated as `DDL.Term`s and rendered by `render(for:)`; everything else is
/// the same text on both. `Schema` writes its migrations with it, so no table is described
/// twice.
///
///     let users: DDL = """
///         CREATE TABLE users (
///             created_ts \(.bigint) NOT NULL,
///             is_guest \(.bool) NOT NULL DEFAULT \(.false)
///         );
///         """
///
/// The rendering of each term is fixed: released migrations render to the very text they
/// were first released with (`SchemaRenderingTests` compares their digests).
public struct DDL: Sendable, Equatable, ExpressibleByStringInterpolation {
    /// A type or literal that is spelled differently in the two dialects.
    public enum Term: Sendable, Equatable {
        /// A 64-bit integer: `INTEGER` on SQLite (always 64 bits there), `BIGINT` on PostgreSQL.
        case bigint
        /// A flag: 0/1 `INTEGER` on SQLite, `BOOLEAN` on PostgreSQL (both bound as `SQLValue.bool`).
        case bool
        /// The false literal of a flag's default: `0` on SQLite, `FALSE` on PostgreSQL.
        case `false`
        /// Bytes: `BLOB` on SQLite, `BYTEA` on PostgreSQL.
        case bytes
        /// A generated 64-bit key, written before `PRIMARY KEY`: `INTEGER` on SQLite (a rowid
        /// alias), `BIGSERIAL` on PostgreSQL.
        case serial

        public func render(for dialect: SQLDialect) -> String {
            switch (self, dialect) {
            case (.bigint, .sqlite), (.bool, .sqlite), (.serial, .sqlite): return "INTEGER"
            case (.bigint, .postgres): return "BIGINT"
            case (.bool, .postgres): return "BOOLEAN"
            case (.false, .sqlite): return "0"
            case (.false, .postgres): return "FALSE"
            case (.bytes, .sqlite): return "BLOB"
            case (.bytes, .postgres): return "BYTEA"
            case (.serial, .postgres): return "BIGSERIAL"
            }
        }
    }

    enum Piece: Sendable, Equatable {
        case text(String)
        case term(Term)
    }

    private(set) var pieces: [Piece]

    public init(stringLiteral value: String) {
        pieces = [.text(value)]
    }

    public init(stringInterpolation: StringInterpolation) {
        pieces = stringInterpolation.pieces
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var pieces: [Piece] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            pieces.reserveCapacity(2 * interpolationCount + 1)
        }

        public mutating func appendLiteral(_ literal: String) {
            if !literal.isEmpty { pieces.append(.text(literal)) }
        }

        public mutating func appendInterpolation(_ term: Term) {
            pieces.append(.term(term))
        }
    }

    /// The SQL text for `dialect`.
    public func render(for dialect: SQLDialect) -> String {
        var sql = ""
        for piece in pieces {
            switch piece {
            case .text(let text): sql += text
            case .term(let term): sql += term.render(for: dialect)
            }
        }
        return sql
    }

    /// The two texts one after the other.
    public static func + (lhs: DDL, rhs: DDL) -> DDL {
        var joined = lhs
        joined.pieces += rhs.pieces
        return joined
    }
}
