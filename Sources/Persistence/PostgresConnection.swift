#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPostgres

/// One libpq connection (`PGconn*`), used with libpq's blocking API through the wrappers of
/// CPostgres (`myelin_pq_exec_params` is `PQexecParams`), which load libpq on first use.
///
/// Created, used and closed on exactly one `ConnectionThread`: libpq connections are not
/// thread-safe, and the blocking calls (`PQconnectdb`, `PQexecParams`) are why the thread
/// exists. See `Database` for why threads rather than libpq's non-blocking API on libuv.
final class PostgresConnection: SQLTransaction {
    let dialect = SQLDialect.postgres
    private var handle: OpaquePointer?
    private var translated: [String: String] = [:]

    init(conninfo: String) throws {
        // libpq is opened on the first connection, not linked (see CPostgres.h).
        if myelin_pq_load() != 0 {
            let reason = myelin_pq_load_error().map { String(cString: $0) } ?? "unknown error"
            throw DatabaseError(.connection, "cannot load libpq.so.5 (install libpq5): \(reason)", backend: .postgres)
        }
        let conn = myelin_pq_connectdb(conninfo)
        guard let conn, myelin_pq_status(conn) == CONNECTION_OK else {
            let message = conn.map { String(cString: myelin_pq_error_message($0)) } ?? "out of memory"
            myelin_pq_finish(conn)
            throw DatabaseError(.connection, "cannot connect: \(Self.trim(message))", backend: .postgres)
        }
        handle = conn
        // NOTICEs (e.g. "relation already exists, skipping") would otherwise go to stderr.
        myelin_pq_set_notice_processor(conn, { _, _ in }, nil)
        if myelin_pq_set_client_encoding(conn, "UTF8") != 0 {
            close()
            throw DatabaseError(.connection, "cannot set client encoding to UTF8", backend: .postgres)
        }
    }

    func close() {
        if let handle { myelin_pq_finish(handle) }
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
        if myelin_pq_status(handle) == CONNECTION_OK { return }
        myelin_pq_reset(handle)
        guard myelin_pq_status(handle) == CONNECTION_OK else {
            throw DatabaseError(.connection, "connection lost: \(Self.trim(String(cString: myelin_pq_error_message(handle))))",
                                backend: .postgres)
        }
        myelin_pq_set_notice_processor(handle, { _, _ in }, nil)
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
            message = Self.trim(String(cString: myelin_pq_result_error_message(result)))
            // PG_DIAG_SQLSTATE is the character 'C'.
            if let state = myelin_pq_result_error_field(result, Int32(UInt8(ascii: "C"))) {
                code = String(cString: state)
            }
        } else {
            message = handle.map { Self.trim(String(cString: myelin_pq_error_message($0))) } ?? "connection closed"
        }
        let kind: DatabaseError.Kind
        if let handle, myelin_pq_status(handle) != CONNECTION_OK {
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
                myelin_pq_exec_params(handle, statement, Int32(bindings.count), nil,
                             values.baseAddress, lengths, formats, 0)
            }
        }
        guard let result else { throw error(nil, sql) }
        let status = myelin_pq_result_status(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let error = self.error(result, sql)
            myelin_pq_clear(result)
            throw error
        }
        return result
    }

    func query(_ sql: String, _ bindings: [SQLValue]) throws -> [SQLRow] {
        let result = try run(sql, bindings)
        defer { myelin_pq_clear(result) }
        let rowCount = Int(myelin_pq_ntuples(result))
        let fieldCount = Int(myelin_pq_nfields(result))
        let columns = (0..<fieldCount).map { String(cString: myelin_pq_fname(result, Int32($0))) }
        let types = (0..<fieldCount).map { myelin_pq_ftype(result, Int32($0)) }
        var rows: [SQLRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [SQLValue] = []
            values.reserveCapacity(fieldCount)
            for field in 0..<Int32(fieldCount) {
                if myelin_pq_getisnull(result, row, field) != 0 {
                    values.append(.null)
                    continue
                }
                let pointer = myelin_pq_getvalue(result, row, field)!
                let length = Int(myelin_pq_getlength(result, row, field))
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
        defer { myelin_pq_clear(result) }
        return Int(String(cString: myelin_pq_cmd_tuples(result))) ?? 0
    }

    func executeScript(_ sql: String) throws {
        guard let handle else { throw DatabaseError(.closed, "connection closed", backend: .postgres, sql: sql) }
        guard let result = myelin_pq_exec(handle, sql) else { throw error(nil, sql) }
        defer { myelin_pq_clear(result) }
        let status = myelin_pq_result_status(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            throw error(result, sql)
        }
    }

    func abortedTransactionError() -> DatabaseError? {
        guard let handle, myelin_pq_transaction_status(handle) == PQTRANS_INERROR else { return nil }
        return DatabaseError(.statement, "the transaction was aborted by an earlier failed statement; rolled back",
                             backend: .postgres)
    }

    /// Whether the connection is inside a transaction block (idle, active or failed).
    var inTransaction: Bool {
        guard let handle else { return false }
        return myelin_pq_transaction_status(handle) != PQTRANS_IDLE
    }
}
