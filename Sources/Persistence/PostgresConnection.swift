#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPostgres

/// One libpq connection (`PGconn*`), used with libpq's blocking API.
///
/// Created, used and closed on exactly one `ConnectionThread`: libpq connections are not
/// thread-safe, and the blocking calls (`PQconnectdb`, `PQexecParams`) are why the thread
/// exists. See `Database` for why threads rather than libpq's non-blocking API on libuv.
final class PostgresConnection: SQLTransaction {
    let dialect = SQLDialect.postgres
    private var handle: OpaquePointer?
    private var translated: [String: String] = [:]

    init(conninfo: String) throws {
        let conn = PQconnectdb(conninfo)
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let message = conn.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            PQfinish(conn)
            throw DatabaseError(.connection, "cannot connect: \(Self.trim(message))", backend: .postgres)
        }
        handle = conn
        // NOTICEs (e.g. "relation already exists, skipping") would otherwise go to stderr.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        if PQsetClientEncoding(conn, "UTF8") != 0 {
            close()
            throw DatabaseError(.connection, "cannot set client encoding to UTF8", backend: .postgres)
        }
    }

    func close() {
        if let handle { PQfinish(handle) }
        handle = nil
    }

    deinit { close() }

    private static func trim(_ message: String) -> String {
        var message = Substring(message)
        while let last = message.last, last.isWhitespace { message.removeLast() }
        return String(message)
    }

    /// Re-establishes a connection the server dropped (restart, idle timeout). Called at the
    /// start of each job, never inside a transaction.
    func ensureConnected() throws {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .postgres) }
        if PQstatus(handle) == CONNECTION_OK { return }
        PQreset(handle)
        guard PQstatus(handle) == CONNECTION_OK else {
            throw DatabaseError(.connection, "connection lost: \(Self.trim(String(cString: PQerrorMessage(handle))))",
                                backend: .postgres)
        }
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
    }

    /// The `?` placeholders of `sql` renumbered `$1...$n`, skipping string literals,
    /// quoted identifiers and comments.
    static func translatePlaceholders(_ sql: String) -> String {
        let bytes = Array(sql.utf8)
        guard bytes.contains(UInt8(ascii: "?")) else { return sql }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + 16)
        var number = 0
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "?"):
                number += 1
                output.append(contentsOf: "$\(number)".utf8)
                i += 1
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                // A doubled quote inside reads as two adjacent literals here: same output.
                var end = i + 1
                while end < bytes.count && bytes[end] != c { end += 1 }
                end = min(end + 1, bytes.count)
                output.append(contentsOf: bytes[i..<end])
                i = end
            case UInt8(ascii: "-") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "-"):
                var end = i + 2
                while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
                output.append(contentsOf: bytes[i..<end])
                i = end
            case UInt8(ascii: "/") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "*"):
                var end = i + 2
                while end + 1 < bytes.count && !(bytes[end] == UInt8(ascii: "*") && bytes[end + 1] == UInt8(ascii: "/")) {
                    end += 1
                }
                end = min(end + 2, bytes.count)
                output.append(contentsOf: bytes[i..<end])
                i = end
            default:
                output.append(c)
                i += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    private func error(_ result: OpaquePointer?, _ sql: String?) -> DatabaseError {
        let message: String
        var code: String? = nil
        if let result {
            message = Self.trim(String(cString: PQresultErrorMessage(result)))
            // PG_DIAG_SQLSTATE is the character 'C'.
            if let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))) {
                code = String(cString: state)
            }
        } else {
            message = handle.map { Self.trim(String(cString: PQerrorMessage($0))) } ?? "connection closed"
        }
        let kind: DatabaseError.Kind
        if let handle, PQstatus(handle) != CONNECTION_OK {
            kind = .connection
        } else if code == "23505" {
            kind = .uniqueViolation
        } else if code?.hasPrefix("23") == true {
            kind = .constraintViolation
        } else if code?.hasPrefix("08") == true {
            kind = .connection
        } else {
            kind = .statement
        }
        return DatabaseError(kind, message, backend: .postgres, code: code, sql: sql)
    }

    private static func text(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "Infinity" : "-Infinity" }
        return String(value)
    }

    /// Runs one statement; the caller clears the result.
    private func run(_ sql: String, _ bindings: [SQLValue]) throws -> OpaquePointer {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .postgres, sql: sql) }
        let statement: String
        if let cached = translated[sql] {
            statement = cached
        } else {
            statement = Self.translatePlaceholders(sql)
            if translated.count > 1024 { translated.removeAll() }
            translated[sql] = statement
        }
        // Text parameters, except blobs which go in binary (raw bytes, no escaping). The
        // server infers each parameter's type from its context.
        var buffers: [UnsafeMutablePointer<CChar>?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        buffers.reserveCapacity(bindings.count)
        defer { for buffer in buffers { free(buffer) } }
        for value in bindings {
            switch value {
            case .null:
                buffers.append(nil); lengths.append(0); formats.append(0)
            case .int(let v):
                buffers.append(strdup(String(v))); lengths.append(0); formats.append(0)
            case .double(let v):
                buffers.append(strdup(Self.text(v))); lengths.append(0); formats.append(0)
            case .text(let v):
                if v.utf8.contains(0) {
                    throw DatabaseError(.statement, "text values cannot contain NUL on PostgreSQL",
                                        backend: .postgres, sql: sql)
                }
                buffers.append(strdup(v)); lengths.append(0); formats.append(0)
            case .blob(let v):
                let buffer = malloc(max(v.count, 1))!.assumingMemoryBound(to: CChar.self)
                v.withUnsafeBytes { bytes in
                    if let base = bytes.baseAddress { memcpy(buffer, base, bytes.count) }
                }
                buffers.append(buffer); lengths.append(Int32(v.count)); formats.append(1)
            }
        }
        let result: OpaquePointer? = buffers.withUnsafeBufferPointer { values in
            values.withMemoryRebound(to: UnsafePointer<CChar>?.self) { values in
                PQexecParams(handle, statement, Int32(bindings.count), nil,
                             values.baseAddress, lengths, formats, 0)
            }
        }
        guard let result else { throw error(nil, sql) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let error = self.error(result, sql)
            PQclear(result)
            throw error
        }
        return result
    }

    func query(_ sql: String, _ bindings: [SQLValue]) throws -> [SQLRow] {
        let result = try run(sql, bindings)
        defer { PQclear(result) }
        let rowCount = Int(PQntuples(result))
        let fieldCount = Int(PQnfields(result))
        let columns = (0..<fieldCount).map { String(cString: PQfname(result, Int32($0))) }
        let types = (0..<fieldCount).map { PQftype(result, Int32($0)) }
        var rows: [SQLRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [SQLValue] = []
            values.reserveCapacity(fieldCount)
            for field in 0..<Int32(fieldCount) {
                if PQgetisnull(result, row, field) != 0 {
                    values.append(.null)
                    continue
                }
                let pointer = PQgetvalue(result, row, field)!
                let length = Int(PQgetlength(result, row, field))
                let bytes = UnsafeRawBufferPointer(start: pointer, count: length)
                let text = String(decoding: bytes, as: UTF8.self)
                switch types[Int(field)] {
                case 16: // bool
                    values.append(.int(text == "t" ? 1 : 0))
                case 20, 21, 23, 26: // int8, int2, int4, oid
                    values.append(Int64(text).map { .int($0) } ?? .text(text))
                case 700, 701: // float4, float8
                    values.append(Double(text).map { .double($0) } ?? .text(text))
                case 17: // bytea, hex output format: \x0123...
                    values.append(Self.decodeHexBytea(bytes).map { .blob($0) } ?? .text(text))
                default:
                    values.append(.text(text))
                }
            }
            rows.append(SQLRow(columns: columns, values: values))
        }
        return rows
    }

    private static func decodeHexBytea(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "\\"), bytes[1] == UInt8(ascii: "x"),
              bytes.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count - 2) / 2)
        var i = 2
        while i < bytes.count {
            guard let high = nibble(bytes[i]), let low = nibble(bytes[i + 1]) else { return nil }
            output.append(high << 4 | low)
            i += 2
        }
        return output
    }

    @discardableResult
    func execute(_ sql: String, _ bindings: [SQLValue]) throws -> Int {
        let result = try run(sql, bindings)
        defer { PQclear(result) }
        return Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    func executeScript(_ sql: String) throws {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .postgres, sql: sql) }
        guard let result = PQexec(handle, sql) else { throw error(nil, sql) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            throw error(result, sql)
        }
    }

    func abortedTransactionError() -> DatabaseError? {
        guard let handle, PQtransactionStatus(handle) == PQTRANS_INERROR else { return nil }
        return DatabaseError(.statement, "the transaction was aborted by an earlier failed statement; rolled back",
                             backend: .postgres)
    }

    /// Whether the connection is inside a transaction block (idle, active or failed).
    var inTransaction: Bool {
        guard let handle else { return false }
        return PQtransactionStatus(handle) != PQTRANS_IDLE
    }
}
