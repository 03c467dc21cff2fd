import Matrix
import Transport

/// Writes a JSON object whose members may be already-encoded bytes (stored events), so
/// sync and `/messages` assemble responses by concatenation instead of decoding and
/// re-encoding every event (ARCHITECTURE.md, "Events are federation-ready").
struct RawJSONObject {
    private var writer: JSONStreamWriter
    private var members = 0

    init(capacity: Int = 256) {
        writer = JSONStreamWriter(capacity: capacity)
        writer.beginObject()
    }

    var isEmpty: Bool { members == 0 }

    /// A member whose value is encoded JSON bytes.
    mutating func raw(_ name: String, _ value: [UInt8]) {
        members += 1
        writer.raw(name, value)
    }

    mutating func value(_ name: String, _ value: JSON) {
        members += 1
        writer.value(name, value)
    }

    mutating func object(_ name: String, _ object: RawJSONObject) {
        raw(name, object.finish())
    }

    func finish() -> [UInt8] {
        var done = writer
        done.endObject()
        return done.bytes
    }

    /// A JSON array of encoded elements.
    static func array(_ elements: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(elements.reduce(2) { $0 + $1.count + 1 })
        for (index, element) in elements.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out += element
        }
        out.append(UInt8(ascii: "]"))
        return out
    }
}

extension HTTPResponse {
    /// A JSON response from encoded bytes.
    static func rawJSON(_ bytes: [UInt8], status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", bytes: bytes)
    }
}

/// Writes nested JSON into one buffer, members in the order given, with encoded bytes
/// spliced in as values: the sync response is assembled in a single allocation.
struct JSONStreamWriter {
    private(set) var bytes: [UInt8] = []
    /// Per open container: whether it has a member yet.
    private var nonEmpty: [Bool] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    private mutating func separator() {
        if nonEmpty.last == true { bytes.append(UInt8(ascii: ",")) }
        if !nonEmpty.isEmpty { nonEmpty[nonEmpty.count - 1] = true }
    }

    private mutating func key(_ name: String) {
        separator()
        JSON.string(name).encode(into: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func beginObject(_ name: String? = nil) {
        if let name { key(name) } else { separator() }
        bytes.append(UInt8(ascii: "{"))
        nonEmpty.append(false)
    }

    mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        nonEmpty.removeLast()
    }

    mutating func raw(_ name: String, _ value: [UInt8]) {
        key(name)
        bytes += value
    }

    mutating func value(_ name: String, _ value: JSON) {
        key(name)
        value.encode(into: &bytes)
    }

    /// `"name":[e1,e2,…]` from encoded elements.
    mutating func rawArray(_ name: String, _ elements: some Sequence<[UInt8]>) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        var first = true
        for element in elements {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            bytes += element
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// `"name":{"events":[…]}`, the shape of most sync sections.
    mutating func events(_ name: String, _ elements: some Sequence<[UInt8]>) {
        beginObject(name)
        rawArray("events", elements)
        endObject()
    }
}
