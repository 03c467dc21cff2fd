/// `IN (...)` lists: long lists are queried in chunks of 500 values, below every backend's
/// limit on bound parameters (SQLite's default is 32766, PostgreSQL's 65535).
func sqlChunks<T>(_ values: [T]) -> [ArraySlice<T>] {
    stride(from: 0, to: values.count, by: 500).map { values[$0..<min($0 + 500, values.count)] }
}

/// `?, ?, ...` for `count` values.
func sqlPlaceholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }
