/// Reads the harness's messages out of a sync response without building the whole document:
/// a JSON scanner that walks `rooms.join.*.timeline` (its `limited` flag and each event's
/// `sender` and `content.bench_*` fields) and skips every other value byte by byte. Foundation's
/// JSONSerialization cost the harness about as much CPU per delivery as the server spent
/// making it; this keeps the harness out of the way of what it measures.
struct DeliveryScanner {
    struct Delivery: Equatable {
        var sender: String
        var run: String
        var id: Int64
        var t0: UInt64
    }

    struct Result: Equatable {
        var deliveries: [Delivery] = []
        var limitedTimelines = 0
    }

    enum Failure: Error { case malformed }

    private let bytes: [UInt8]
    private var i = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func scan(_ body: [UInt8]) -> Result? {
        var scanner = DeliveryScanner(body)
        var result = Result()
        do {
            try scanner.object { scanner, key in
                if key == "rooms" {
                    try scanner.object { scanner, key in
                        if key == "join" {
                            try scanner.object { scanner, _ in try scanner.room(&result) }
                        } else { try scanner.skipValue() }
                    }
                } else { try scanner.skipValue() }
            }
        } catch {
            return nil
        }
        return result
    }

    private mutating func room(_ result: inout Result) throws {
        try object { scanner, key in
            guard key == "timeline" else { return try scanner.skipValue() }
            try scanner.object { scanner, key in
                switch key {
                case "limited":
                    if try scanner.bool() { result.limitedTimelines += 1 }
                case "events":
                    try scanner.array { scanner in
                        if let delivery = try scanner.event() { result.deliveries.append(delivery) }
                    }
                default:
                    try scanner.skipValue()
                }
            }
        }
    }

    private mutating func event() throws -> Delivery? {
        var sender: String?
        var run: String?
        var id: Int64?
        var t0: UInt64?
        try object { scanner, key in
            switch key {
            case "sender": sender = try scanner.string()
            case "content":
                try scanner.object { scanner, key in
                    switch key {
                    case "bench_run": run = try scanner.string()
                    case "bench_id": id = try scanner.integer()
                    case "bench_t0": t0 = UInt64(exactly: try scanner.integer())
                    default: try scanner.skipValue()
                    }
                }
            default: try scanner.skipValue()
            }
        }
        guard let sender, let run, let id, let t0 else { return nil }
        return Delivery(sender: sender, run: run, id: id, t0: t0)
    }

    // MARK: tokens

    private mutating func space() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws {
        space()
        guard i < bytes.count, bytes[i] == byte else { throw Failure.malformed }
        i += 1
    }

    private mutating func peek() throws -> UInt8 {
        space()
        guard i < bytes.count else { throw Failure.malformed }
        return bytes[i]
    }

    /// Calls `member` for each key of an object, positioned at its value (which it must read).
    private mutating func object(_ member: (inout DeliveryScanner, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if try peek() == UInt8(ascii: "}") { i += 1; return }
        while true {
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            let next = try peek()
            i += 1
            if next == UInt8(ascii: "}") { return }
            guard next == UInt8(ascii: ",") else { throw Failure.malformed }
        }
    }

    private mutating func array(_ element: (inout DeliveryScanner) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        if try peek() == UInt8(ascii: "]") { i += 1; return }
        while true {
            try element(&self)
            let next = try peek()
            i += 1
            if next == UInt8(ascii: "]") { return }
            guard next == UInt8(ascii: ",") else { throw Failure.malformed }
        }
    }

    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        let start = i
        var escaped = false
        while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
            if bytes[i] == UInt8(ascii: "\\") { escaped = true; i += 1 }
            i += 1
        }
        guard i < bytes.count else { throw Failure.malformed }
        let raw = bytes[start..<i]
        i += 1
        return escaped ? Self.unescape(raw) : String(decoding: raw, as: UTF8.self)
    }

    /// Escapes other than `\uXXXX` surrogate pairs (not used in the fields read here).
    private static func unescape(_ raw: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        var j = raw.startIndex
        while j < raw.endIndex {
            let b = raw[j]
            guard b == UInt8(ascii: "\\"), j + 1 < raw.endIndex else { out.append(b); j += 1; continue }
            let e = raw[j + 1]
            j += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard j + 4 <= raw.endIndex, let code = UInt32(String(decoding: raw[j..<j + 4], as: UTF8.self), radix: 16),
                      let scalar = Unicode.Scalar(code) else { j = raw.endIndex; continue }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
                j += 4
            default: out.append(e)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func integer() throws -> Int64 {
        space()
        var negative = false
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var value: Int64 = 0
        let start = i
        while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 {
            value = value &* 10 &+ Int64(bytes[i] - 0x30)
            i += 1
        }
        guard i > start else { throw Failure.malformed }
        // A fraction or exponent is not one of our integers: the caller falls back to a full parse.
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            throw Failure.malformed
        }
        return negative ? -value : value
    }

    private mutating func bool() throws -> Bool {
        let b = try peek()
        if b == UInt8(ascii: "t") { try literal("true"); return true }
        if b == UInt8(ascii: "f") { try literal("false"); return false }
        try skipValue()
        return false
    }

    private mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard i + count <= bytes.count else { throw Failure.malformed }
        for k in 0..<count where bytes[i + k] != word.utf8Start[k] { throw Failure.malformed }
        i += count
    }

    /// Skips one value of any kind, nested containers included.
    private mutating func skipValue() throws {
        switch try peek() {
        case UInt8(ascii: "\""):
            i += 1
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                if bytes[i] == UInt8(ascii: "\\") { i += 1 }
                i += 1
            }
            guard i < bytes.count else { throw Failure.malformed }
            i += 1
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                        if bytes[i] == UInt8(ascii: "\\") { i += 1 }
                        i += 1
                    }
                } else if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                    depth += 1
                } else if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { i += 1; return }
                }
                i += 1
            }
            throw Failure.malformed
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default:
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            let start = i
            skipNumberTailUnchecked()
            guard i > start else { throw Failure.malformed }
        }
    }

    private mutating func skipNumberTailUnchecked() {
        while i < bytes.count, (bytes[i] >= 0x30 && bytes[i] <= 0x39) || bytes[i] == UInt8(ascii: ".")
            || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") || bytes[i] == UInt8(ascii: "+")
            || bytes[i] == UInt8(ascii: "-") { i += 1 }
    }
}
