/// One row of a query result, fully copied out of the C library: it can cross threads and
/// outlive the statement. Store code reads columns by index or by name with a typed getter
/// that throws `DatabaseError.Kind.decoding` on a mismatch.
public struct SQLRow: Sendable {
    /// Column names, shared by every row of one result.
    public let columns: [String]
    public let values: [SQLValue]

    public init(columns: [String], values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    public subscript(_ index: Int) -> SQLValue { values[index] }

    public subscript(_ name: String) -> SQLValue? {
        columns.firstIndex(of: name).map { values[$0] }
    }

    private func value(_ index: Int) throws -> SQLValue {
        guard values.indices.contains(index) else {
            throw DatabaseError(.decoding, "no column \(index) in a row of \(values.count) columns")
        }
        return values[index]
    }

    private func index(_ name: String) throws -> Int {
        guard let index = columns.firstIndex(of: name) else {
            throw DatabaseError(.decoding, "no column named \(name) in \(columns)")
        }
        return index
    }

    private func mismatch(_ index: Int, _ wanted: String, _ got: SQLValue) -> DatabaseError {
        let name = columns.indices.contains(index) ? columns[index] : String(index)
        return DatabaseError(.decoding, "column \(name): expected \(wanted), found \(got)")
    }

    // MARK: by index

    public func optionalInt(_ index: Int) throws -> Int64? {
        switch try value(index) {
        case .null: return nil
        case .int(let v): return v
        // PostgreSQL aggregates such as SUM(bigint) come back as NUMERIC text.
        case .text(let s): if let v = Int64(s) { return v }
        case .double(let d): if let v = Int64(exactly: d) { return v }
        default: break
        }
        throw mismatch(index, "integer", values[index])
    }

    public func int(_ index: Int) throws -> Int64 {
        guard let v = try optionalInt(index) else { throw mismatch(index, "integer", .null) }
        return v
    }

    public func optionalDouble(_ index: Int) throws -> Double? {
        switch try value(index) {
        case .null: return nil
        case .double(let v): return v
        case .int(let v): return Double(v)
        case .text(let s): if let v = Double(s) { return v }
        default: break
        }
        throw mismatch(index, "double", values[index])
    }

    public func double(_ index: Int) throws -> Double {
        guard let v = try optionalDouble(index) else { throw mismatch(index, "double", .null) }
        return v
    }

    public func optionalText(_ index: Int) throws -> String? {
        switch try value(index) {
        case .null: return nil
        case .text(let v): return v
        default: throw mismatch(index, "text", values[index])
        }
    }

    public func text(_ index: Int) throws -> String {
        guard let v = try optionalText(index) else { throw mismatch(index, "text", .null) }
        return v
    }

    public func optionalBlob(_ index: Int) throws -> [UInt8]? {
        switch try value(index) {
        case .null: return nil
        case .blob(let v): return v
        case .text(let s): return Array(s.utf8)
        default: throw mismatch(index, "blob", values[index])
        }
    }

    public func blob(_ index: Int) throws -> [UInt8] {
        guard let v = try optionalBlob(index) else { throw mismatch(index, "blob", .null) }
        return v
    }

    public func optionalBool(_ index: Int) throws -> Bool? {
        try optionalInt(index).map { $0 != 0 }
    }

    public func bool(_ index: Int) throws -> Bool {
        guard let v = try optionalBool(index) else { throw mismatch(index, "boolean", .null) }
        return v
    }

    // MARK: by name

    public func int(_ name: String) throws -> Int64 { try int(index(name)) }
    public func optionalInt(_ name: String) throws -> Int64? { try optionalInt(index(name)) }
    public func double(_ name: String) throws -> Double { try double(index(name)) }
    public func optionalDouble(_ name: String) throws -> Double? { try optionalDouble(index(name)) }
    public func text(_ name: String) throws -> String { try text(index(name)) }
    public func optionalText(_ name: String) throws -> String? { try optionalText(index(name)) }
    public func blob(_ name: String) throws -> [UInt8] { try blob(index(name)) }
    public func optionalBlob(_ name: String) throws -> [UInt8]? { try optionalBlob(index(name)) }
    public func bool(_ name: String) throws -> Bool { try bool(index(name)) }
    public func optionalBool(_ name: String) throws -> Bool? { try optionalBool(index(name)) }
}
