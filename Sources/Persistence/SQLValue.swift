/// A value bound to a `?` placeholder or read from a result column, the same on both
/// backends. Store code builds these; the SQLite and PostgreSQL connections convert them.
///
/// Booleans have no case of their own: they travel as `.int(0/1)` (SQLite has no boolean
/// type; PostgreSQL `BOOLEAN` columns accept `'0'`/`'1'` and come back as `.int`).
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])

    /// `.int(1)` or `.int(0)`.
    public static func bool(_ value: Bool) -> SQLValue { .int(value ? 1 : 0) }

    /// `.null` for `nil`, else `.text`.
    public static func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }

    /// `.null` for `nil`, else `.int`.
    public static func int(_ value: Int64?) -> SQLValue { value.map { .int($0) } ?? .null }

    /// `.null` for `nil`, else `.blob`.
    public static func blob(_ value: [UInt8]?) -> SQLValue { value.map { .blob($0) } ?? .null }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
}

extension SQLValue: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral,
    ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral
{
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .int(value ? 1 : 0) }
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension SQLValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .null: return "NULL"
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .text(let v): return "'\(v)'"
        case .blob(let v): return "<\(v.count) bytes>"
        }
    }
}
