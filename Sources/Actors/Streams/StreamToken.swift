import Matrix

/// The streams a client syncs, each with its own monotonically increasing position
/// (ARCHITECTURE.md, "Streams and sync tokens"). The raw value is the field's index in a
/// serialized `StreamToken`: append new streams at the end, never reorder.
public enum SyncStream: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// The global ordering of room events (`stream_ordering`).
    case roomEvents = 0
    case accountData = 1
    case receipts = 2
    /// In memory only; restarts from zero with the process.
    case typing = 3
    case presence = 4
    /// Per device; the token carries the position of the syncing device's inbox.
    case toDevice = 5
    case deviceLists = 6

    public var description: String {
        switch self {
        case .roomEvents: "room_events"
        case .accountData: "account_data"
        case .receipts: "receipts"
        case .typing: "typing"
        case .presence: "presence"
        case .toDevice: "to_device"
        case .deviceLists: "device_lists"
        }
    }
}

/// A sync token (`next_batch`, `since`): one position per `SyncStream`. Opaque to clients;
/// serialized like Synapse's as `s` followed by the positions joined by `_`
/// (`s12_4_0_0_3_0_1`). Parsing accepts a token with fewer fields than there are streams
/// (missing ones are 0), so tokens issued before a stream was added stay valid; anything
/// else malformed is `M_INVALID_PARAM`. Built by sync from the streams' visible positions,
/// compared by the notifier.
public struct StreamToken: Sendable, Hashable, CustomStringConvertible {
    /// One position per stream, inline (no heap array: sync copies tokens on every request
    /// and every waiting long-poll holds several).
    private var positions: Positions

    /// Seven inline positions indexed like an array (`SyncStream.rawValue`).
    struct Positions: Hashable, Sendable {
        var p0: Int64 = 0, p1: Int64 = 0, p2: Int64 = 0, p3: Int64 = 0, p4: Int64 = 0, p5: Int64 = 0, p6: Int64 = 0
        static let count = 7
        var indices: Range<Int> { 0..<Self.count }

        subscript(index: Int) -> Int64 {
            get {
                switch index {
                case 0: p0
                case 1: p1
                case 2: p2
                case 3: p3
                case 4: p4
                case 5: p5
                default: p6
                }
            }
            set {
                switch index {
                case 0: p0 = newValue
                case 1: p1 = newValue
                case 2: p2 = newValue
                case 3: p3 = newValue
                case 4: p4 = newValue
                case 5: p5 = newValue
                default: p6 = newValue
                }
            }
        }
    }

    /// Every stream at position 0 (an initial sync).
    public static let zero = StreamToken()

    public init() {
        positions = Positions()
        assert(SyncStream.allCases.count == Positions.count, "StreamToken.Positions must hold every stream")
    }

    public init(_ positions: [SyncStream: Int64]) {
        self.init()
        for (stream, position) in positions { self[stream] = position }
    }

    public subscript(stream: SyncStream) -> Int64 {
        get { positions[stream.rawValue] }
        set {
            precondition(newValue >= 0, "stream positions are non-negative")
            positions[stream.rawValue] = newValue
        }
    }

    /// The token with `stream` advanced to `position` if that is ahead (never moves back).
    public func advanced(_ stream: SyncStream, to position: Int64) -> StreamToken {
        var copy = self
        if position > copy[stream] { copy[stream] = position }
        return copy
    }

    /// Each stream at the higher of the two positions.
    public func union(_ other: StreamToken) -> StreamToken {
        var copy = self
        for index in copy.positions.indices { copy.positions[index] = max(copy.positions[index], other.positions[index]) }
        return copy
    }

    /// True if any stream of `self` is ahead of the same stream in `other`.
    public func isAhead(of other: StreamToken) -> Bool {
        positions.indices.contains { positions[$0] > other.positions[$0] }
    }

    /// The serialized, opaque form.
    public var serialized: String {
        "s" + positions.indices.map { String(positions[$0]) }.joined(separator: "_")
    }

    public var description: String { serialized }

    /// The highest position a parsed token may carry: 2^53, far above any position a
    /// stream reaches, so that arithmetic on positions from clients cannot overflow.
    public static let maxPosition: Int64 = 1 << 53

    /// Longest accepted token; a field is at most 19 digits (Int64).
    private static let maxLength = 1 + SyncStream.allCases.count * 20

    /// Parses a token from a client; malformed input is `M_INVALID_PARAM`.
    public init(parsing text: String) throws {
        self.init()
        var utf8 = text
        try utf8.withUTF8 { bytes in
            guard bytes.count <= Self.maxLength, bytes.count >= 2, bytes[0] == UInt8(ascii: "s") else { throw Self.invalid }
            var index = 0
            var value: Int64 = 0
            var digits = 0
            for byte in bytes[1...] {
                if byte == UInt8(ascii: "_") {
                    guard digits > 0, index < Positions.count - 1 else { throw Self.invalid }
                    positions[index] = value
                    index += 1
                    value = 0
                    digits = 0
                    continue
                }
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"), digits < 19 else { throw Self.invalid }
                let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
                guard !overflow1 && !overflow2 else { throw Self.invalid }
                value = sum
                digits += 1
            }
            guard digits > 0 else { throw Self.invalid }
            positions[index] = value
        }
        guard positions.indices.allSatisfy({ positions[$0] <= Self.maxPosition }) else { throw Self.invalid }
    }

    private static var invalid: MatrixError { MatrixError(.invalidParam, "Invalid stream token") }
}
