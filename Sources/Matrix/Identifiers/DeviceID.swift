/// A device ID: an opaque string chosen by the client or the server, unique per user. We accept
/// 1–255 bytes without control characters (Synapse is no stricter); generated ones are 10
/// upper-case letters.
public struct DeviceID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init(parsing text: some StringProtocol) throws(MatrixError) {
        let s = String(text)
        guard !s.isEmpty, s.utf8.count <= 255, s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw MatrixError(.invalidParam, "Invalid device ID")
        }
        self.rawValue = s
    }

    /// A fresh random device ID (10 letters A–Z).
    public static func generate() -> DeviceID {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        return DeviceID(rawValue: String(decoding: Sodium.randomBytes(10).map { letters[Int($0) % 26] }, as: UTF8.self))
    }

    init(rawValue: String) { self.rawValue = rawValue }

    /// A device id read back from storage, which only ever holds ids that were validated
    /// on the way in: no second check on every row (for `Persistence`).
    package init(unchecked rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }
    public static func < (a: DeviceID, b: DeviceID) -> Bool { a.rawValue < b.rawValue }
}
