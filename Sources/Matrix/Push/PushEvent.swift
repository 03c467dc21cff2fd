/// An event as push rules see it: its properties flattened by dot-separated path (appendix
/// "Dot-separated property paths": `content.m\.mentions.user_ids`), string values lowercased
/// once for glob matches. Built once per event and shared by the evaluations of all its
/// recipients.
public struct PushEvent: Sendable {
    /// Non-compound values and arrays by path.
    public let properties: [String: JSON]
    /// Lowercased string values by path.
    let lowercased: [String: String]
    /// The same two, as parallel arrays: an event has a handful of properties, and comparing
    /// short keys beats hashing them (the rules look properties up once per recipient); the
    /// keys' UTF-8 lengths come first, so most keys are passed over by one integer compare.
    /// Empty when the event has too many properties; the dictionaries serve then.
    private let keyLengths: [Int]
    private let keys: [String]
    private let values: [JSON]
    private let lowercasedValues: [String?]
    /// The lowercased `content.body` as scalars (word matches).
    let body: [Unicode.Scalar]
    /// The lowercased `type` (rules that require a type compare it first).
    let lowercasedType: String?
    /// The event has `content.m.mentions` (an object): the legacy mention rules stand aside
    /// (MSC3952, "Intentional mentions").
    public let hasMentions: Bool

    /// From the event's JSON (client or federation form: only `type`, `sender`, `state_key`,
    /// `content` and the other top-level keys are read).
    public init(_ event: JSON) {
        var properties: [String: JSON] = [:]
        var lowercased: [String: String] = [:]
        func flatten(_ value: JSON, _ path: String) {
            switch value {
            case .object(let object):
                for (key, child) in object {
                    let escaped = key.contains(where: { $0 == "." || $0 == "\\" })
                        ? key.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ".", with: "\\.") : key
                    flatten(child, path.isEmpty ? escaped : path + "." + escaped)
                }
            case .string(let string):
                properties[path] = value
                lowercased[path] = string.lowercased()
            default:
                properties[path] = value
            }
        }
        // `unsigned` is the server's, not the sender's: rules never look at it.
        if case .object(var object) = event {
            object["unsigned"] = nil
            flatten(.object(object), "")
        }
        self.properties = properties
        self.lowercased = lowercased
        if properties.count <= Self.maxPairs {
            // Shorter keys first: the rules' keys are mostly short (`type`, `content.body`).
            let sorted = properties.sorted { ($0.key.utf8.count, $0.key) < ($1.key.utf8.count, $1.key) }
            keyLengths = sorted.map { $0.key.utf8.count }
            keys = sorted.map(\.key)
            values = sorted.map(\.value)
            lowercasedValues = sorted.map { lowercased[$0.key] }
        } else {
            keyLengths = []
            keys = []
            values = []
            lowercasedValues = []
        }
        body = Array((lowercased["content.body"] ?? "").unicodeScalars)
        lowercasedType = lowercased["type"]
        hasMentions = event["content"]?["m.mentions"]?.objectValue != nil
    }
}

extension PushEvent {
    static let maxPairs = 24

    /// Where `path` is in the arrays.
    @inline(__always)
    private func index(of path: String) -> Int? {
        let length = path.utf8.count
        return keyLengths.withUnsafeBufferPointer { lengths in
            for index in 0..<lengths.count where lengths[index] == length && keys[index] == path { return index }
            return nil
        }
    }

    /// The property at `path`.
    func property(_ path: String) -> JSON? {
        if keys.isEmpty { return properties[path] }
        return index(of: path).map { values[$0] }
    }

    /// The lowercased string at `path`.
    func lowercasedString(_ path: String) -> String? {
        if keys.isEmpty { return lowercased[path] }
        return index(of: path).flatMap { lowercasedValues[$0] }
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    fileprivate func range(of target: String) -> Range<Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) { return index..<self.index(index, offsetBy: target.count) }
            index = self.index(after: index)
        }
        return nil
    }
}
